/**
 * The README's command lines, run exactly as printed, the way a user runs them after its two
 * set-up commands (`npm ci && npm start`, `npm test`): from the checkout, in a shell whose PATH
 * has the machine's own Node first (Debian's /usr/bin/node, older than pullmirror needs), with
 * PULLMIRROR_CONFIG naming a config on a temp store. Then the same lines without `npx`, through
 * the container image's `pullmirror` command (deploy/bin/pullmirror) on that PATH.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { nodeVersionProblem } from '../../src/node-version.ts';
import { BUNDLE } from '../support/mirror.ts';
import { cleanEnv, tempDir } from '../support/processes.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const SYSTEM_NODE = '/usr/bin/node';
const run = promisify(execFile);

/** Every line of the README's ```sh blocks that runs pullmirror. */
function readmeCommandLines(): string[] {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const lines: string[] = [];
  for (const [, body] of readme.matchAll(/^```sh\n([\s\S]*?)^```$/gm)) {
    for (const line of body.split('\n')) if (/^(npx )?pullmirror\b/.test(line.trim())) lines.push(line.trim());
  }
  return lines;
}

/** Why a line cannot run here, or undefined: it needs a mirror at the address it names, or root. */
function cannotRun(line: string): string | undefined {
  if (/\bwarm\b/.test(line)) return 'warm needs a mirror at the address it names';
  if (/\s\/etc\//.test(line.replace(/#.*$/, ''))) return 'writes under /etc';
  return undefined;
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

async function shell(line: string, env: NodeJS.ProcessEnv): Promise<Ran> {
  try {
    const { stdout, stderr } = await run('/bin/sh', ['-c', line], { cwd: ROOT, env, timeout: 60_000, maxBuffer: 4 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

/** What each runnable line must print, besides exiting 0 with no npm warning. */
function expectOutput(line: string, result: Ran): void {
  const what = `${line}\n${result.stdout}${result.stderr}`;
  if (/ --help\b/.test(line)) assert.match(result.stdout, /^usage: pullmirror /, what);
  if (/ config check /.test(line)) assert.match(result.stderr, /configuration .* is valid/, what);
  if (/ stats\b/.test(line)) assert.match(result.stdout, /^blobs\s+\d+/m, what);
  if (/ gc --dry-run/.test(line)) assert.match(result.stdout, /^dry run: \d+ tags?[ ,]/m, what);
  if (/ client-config containerd/.test(line)) assert.match(result.stdout, /hosts\.toml/, what);
}

describe("the README's command lines, as printed, after the set-up", () => {
  const work = tempDir('pullmirror-readme');
  let env: NodeJS.ProcessEnv;
  let skip: string | undefined;

  before(async () => {
    let version: string;
    try {
      version = (await run(SYSTEM_NODE, ['-p', 'process.versions.node'])).stdout.trim();
    } catch {
      skip = `no ${SYSTEM_NODE}: the machine's own Node is what this is about`;
      return;
    }
    if (nodeVersionProblem(version, SYSTEM_NODE) === undefined) console.log(`note: ${SYSTEM_NODE} is Node ${version}, new enough; the hand-over is not exercised`);
    assert.ok(existsSync(BUNDLE), 'dist/pullmirror.mjs is built (npm start and npm test build it)');
    const config = path.join(work.path, 'config.yml');
    writeFileSync(config, `storage:\n  filesystem:\n    rootdirectory: ${path.join(work.path, 'store')}\n`);
    // The image's command, as its Dockerfile installs it, on PATH before the machine's Node.
    const bin = path.join(work.path, 'bin');
    mkdirSync(bin);
    copyFileSync(path.join(ROOT, 'deploy/bin/pullmirror'), path.join(bin, 'pullmirror'));
    env = {
      ...cleanEnv(['REGISTRY_', 'PULLMIRROR_', 'npm_']),
      PATH: `${bin}:/usr/bin:/bin`,
      PULLMIRROR_CONFIG: config,
      PULLMIRROR_HOME: ROOT,
      // npm's own log files go to the test's temp dir, not the user's ~/.npm.
      npm_config_cache: path.join(work.path, 'npm-cache'),
    };
  });

  after(() => work.cleanup());

  it('the lines that need no mirror and no root all run with Node 20 first on PATH: npx pullmirror, and pullmirror as the image has it', async (t) => {
    if (skip) return t.skip(skip);
    const lines = readmeCommandLines();
    const runnable = lines.filter((line) => cannotRun(line) === undefined);
    for (const needed of ['--help', 'config check', 'gc --dry-run', 'stats', 'client-config']) {
      assert.ok(runnable.some((line) => line.includes(` ${needed}`)), `the README shows a runnable "pullmirror ${needed}" line: ${JSON.stringify(lines)}`);
    }
    const node = (await shell('node --version', env)).stdout.trim();
    for (const line of runnable) {
      assert.match(line, /^npx pullmirror /, 'after the set-up, the checkout runs pullmirror through npx');
      for (const variant of [line, line.replace(/^npx /, '')]) {
        const result = await shell(variant, env);
        assert.equal(result.code, 0, `${variant} (node on PATH: ${node}): exit ${result.code}\n${result.stderr}`);
        assert.doesNotMatch(result.stderr, /npm warn|EBADENGINE|needs Node\.js/i, variant);
        expectOutput(variant, result);
      }
    }
    t.diagnostic(`ran ${runnable.length} of ${lines.length} lines twice with ${node} first on PATH; not run: ${lines.filter(cannotRun).map((line) => `${line.split('#')[0].trim()} (${cannotRun(line)})`).join('; ')}`);
  });
});
