import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { cleanEnv, tempDir } from '../support/processes.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const run = promisify(execFile);
const work = tempDir('pullmirror-skips');
after(() => work.cleanup());

/** The node --test arguments of package.json's test script (the reporters among them). */
function testScriptFlags(): string[] {
  const script: string = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.test;
  const command = script.split('&&').map((part) => part.trim()).find((part) => part.startsWith('node --test'));
  assert.ok(command, script);
  return command.split(/\s+/).slice(1).filter((word) => word.startsWith('--'));
}

describe('npm test', () => {
  it('says in its last lines how many tests were skipped and why', async () => {
    const fixture = path.join(work.path, 'fixture.test.ts');
    writeFileSync(
      fixture,
      [
        "import { describe, it } from 'node:test';",
        "it('runs', () => {});",
        "it('needs dockerd', { skip: 'required binaries not found on PATH: dockerd' }, () => {});",
        "it('needs dockerd too', (t) => t.skip('required binaries not found on PATH: dockerd'));",
        "describe('browser', { skip: 'required binaries not found on PATH: chromium' }, () => { it('a', () => {}); });",
      ].join('\n'),
    );
    const flags = testScriptFlags().map((flag) => flag.replace('./spec/', `${ROOT}/spec/`));
    assert.ok(flags.some((flag) => flag.includes('skip-summary')), 'the test script uses the skip summary reporter');
    // CI unset (locally a missing binary skips; in CI it fails); NODE_TEST_CONTEXT unset, or the child reports to this runner.
    const { stdout } = await run(process.execPath, [...flags, fixture], { cwd: work.path, env: cleanEnv(['CI', 'NODE_TEST_CONTEXT']) });
    const last = stdout.trimEnd().split('\n').slice(-4).join('\n');
    assert.match(last, /^skipped 3 test\(s\) or suite\(s\), 1 tests ran; why:$/m);
    assert.match(last, /^ {2}2 × required binaries not found on PATH: dockerd/m);
    assert.match(last, /^ {2}1 × required binaries not found on PATH: chromium/m);
    assert.match(last, /\.ci\/run/);
  });
});
