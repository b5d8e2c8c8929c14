/**
 * A node:test reporter for the last lines of `npm test`: how many tests were skipped, and why
 * (a missing docker-registry, dockerd, chromium …), grouped by reason, with what installs them.
 * A plain `npm test` on a machine without the e2e servers thus says what it did not test
 * instead of passing quietly. Runs beside the spec reporter (package.json's test script).
 */
import type { TestEvent } from 'node:test/reporters';

interface Skip {
  name: string;
  file?: string;
  reason: string;
}

export default async function* skipSummary(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const skips: Skip[] = [];
  let passed = 0;
  for await (const event of source) {
    if (event.type !== 'test:pass' && event.type !== 'test:fail') continue;
    const data = event.data as { name: string; file?: string; skip?: string | boolean; details?: { type?: string } };
    if (data.skip !== undefined && data.skip !== false) {
      skips.push({ name: data.name, file: data.file, reason: typeof data.skip === 'string' ? data.skip : 'skipped' });
    } else if (event.type === 'test:pass' && data.details?.type !== 'suite') {
      passed++;
    }
  }
  if (skips.length === 0) {
    yield `\nskipped: none (${passed} tests ran)\n`;
    return;
  }
  const byReason = new Map<string, Skip[]>();
  for (const skip of skips) byReason.set(skip.reason, [...(byReason.get(skip.reason) ?? []), skip]);
  const lines = [`\nskipped ${skips.length} test(s) or suite(s), ${passed} tests ran; why:`];
  for (const [reason, items] of byReason) {
    const files = [...new Set(items.map((item) => item.file?.replace(/^.*?(spec\/)/, '$1')).filter(Boolean))];
    lines.push(`  ${items.length} × ${reason}${files.length ? ` (${files.join(', ')})` : ''}`);
  }
  if ([...byReason.keys()].some((reason) => reason.includes('not found on PATH'))) {
    lines.push('  install the missing servers and run every test: .ci/run (see README, "Set-up")');
  }
  yield `${lines.join('\n')}\n`;
}
