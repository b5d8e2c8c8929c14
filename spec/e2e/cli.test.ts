/**
 * The command line a registry:2 user meets in the first hour: help and usage errors of every
 * command, the version, the Node check, and `config check` agreeing with `serve`. Each runs
 * the real binary (src/main.ts under this Node, the bundle under an old one).
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { nodeVersionProblem, REQUIRED_NODE } from '../../src/node-version.ts';
import { runPullmirror, startMirror } from '../support/mirror.ts';
import { cleanEnv, tempDir } from '../support/processes.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const run = promisify(execFile);

const pullmirror = runPullmirror;

const work = tempDir('pullmirror-cli');
after(() => work.cleanup());

describe('the command line', () => {
  const commands = [['serve'], ['gc'], ['warm'], ['stats'], ['config', 'check']];

  it('--help of every command: usage, options with defaults, an example; nothing read or started', async () => {
    for (const command of commands) {
      const { code, stdout, stderr } = await pullmirror([...command, '--help']);
      const name = command.join(' ');
      assert.equal(code, 0, `${name} --help exits 0: ${stderr}`);
      assert.equal(stderr, '', `${name} --help reads no config file`);
      assert.match(stdout, new RegExp(`^usage: pullmirror ${name} `), name);
      assert.match(stdout, /\noptions:\n/, name);
      assert.match(stdout, /-h, --help/, name);
      assert.match(stdout, /\nexamples?:\n {2}pullmirror /, name);
    }
    const warm = (await pullmirror(['warm', '--help'])).stdout;
    assert.match(warm, /--mirror URL .*\(default: http:\/\/127\.0\.0\.1:5000, or PULLMIRROR_URL\)/);
    assert.match(warm, /--concurrency N .*\(default: 4\)/);
    assert.match((await pullmirror(['gc', '--help'])).stdout, /--dry-run[\s\S]*--now TIME .*\(default: now\)/);
    const top = await pullmirror(['--help']);
    assert.equal(top.code, 0);
    for (const command of ['serve', 'gc', 'warm', 'stats', 'config check']) assert.ok(top.stdout.includes(`  ${command} `), command);
  });

  it('a bad flag or argument is one line on stderr and exit status 2', async () => {
    for (const args of [['gc', '--dryrun'], ['stats', '--bogus'], ['serve', '--port', '5000'], ['config', 'check', '-x'], ['warm', '--mirorr', 'http://x'], ['gc', '--now'], ['config', 'lint'], ['--verbose'], ['stats', 'a.yml', 'b.yml']]) {
      const { code, stdout, stderr } = await pullmirror(args);
      assert.equal(code, 2, `${args.join(' ')}: ${stderr}`);
      assert.equal(stdout, '');
      assert.equal(stderr.trimEnd().split('\n').length, 1, `${args.join(' ')}: one line, got:\n${stderr}`);
      assert.match(stderr, /^pullmirror/);
      assert.doesNotMatch(stderr, /\n\s+at /, 'no stack trace');
    }
  });

  it('--version prints the package version', async () => {
    const { version } = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    for (const flag of ['--version', '-v']) {
      const { code, stdout } = await pullmirror([flag]);
      assert.equal(code, 0);
      assert.match(stdout, new RegExp(`^pullmirror ${version.replaceAll('.', '\\.')} \\(Node `));
    }
  });
});

describe('the Node version', () => {
  it("is checked before anything else, naming what is needed; the Node npm ci installs is new enough, and npm is not asked to check the machine's", () => {
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
    assert.equal(pkg.engines, undefined, 'no engines: npm would warn about the machine\'s Node at every npm ci and npx, though pullmirror runs on its own');
    const bundled = /^\^?(\d+)\./.exec(pkg.devDependencies.node)?.[1];
    assert.equal(nodeVersionProblem(`${bundled}.0.0`, 'node_modules/.bin/node'), undefined, `the node devDependency (${pkg.devDependencies.node}) is new enough`);
    assert.equal(nodeVersionProblem('24.21.0', '/x/node'), undefined);
    assert.equal(nodeVersionProblem(REQUIRED_NODE, '/x/node'), undefined);
    assert.equal(nodeVersionProblem('23.0.0', '/x/node'), undefined);
    const problem = nodeVersionProblem('20.20.2', '/usr/bin/node');
    assert.match(problem ?? '', /needs Node\.js 22\.18\.0 or newer; this is Node 20\.20\.2 \(\/usr\/bin\/node\)/);
    assert.match(nodeVersionProblem('22.12.0', '/x') ?? '', /needs Node\.js 22\.18\.0/);
  });

  it("an old Node running the bundle hands over to the project's Node 24: same output, signals and exit status passed on", async (t) => {
    const bundle = path.join(ROOT, 'dist/pullmirror.mjs');
    const system = '/usr/bin/node';
    let version: string;
    try {
      version = (await run(system, ['-p', 'process.versions.node'])).stdout.trim();
    } catch {
      return t.skip(`no ${system} to try an old Node with`);
    }
    if (nodeVersionProblem(version, system) === undefined) return t.skip(`${system} is Node ${version}, new enough`);
    const versionRun = await pullmirror(['--version'], { node: system, entry: bundle });
    assert.equal(versionRun.code, 0, versionRun.stderr);
    assert.match(versionRun.stdout, /^pullmirror \S+ \(Node 2[4-9]\./, 'the Node npm ci installed ran it');
    assert.equal((await pullmirror(['gc', '--dryrun'], { node: system, entry: bundle })).code, 2, 'the exit status is passed on');
    // A serving mirror under the hand-over stops cleanly on SIGTERM sent to the process started.
    const log = path.join(work.path, 'handover.log');
    writeFileSync(log, '');
    const child = spawn(system, [bundle, 'serve'], {
      env: { ...cleanEnv(['REGISTRY_', 'PULLMIRROR_']), REGISTRY_HTTP_ADDR: '127.0.0.1:0', REGISTRY_LOG_FORMATTER: 'json', REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: path.join(work.path, 'handover-store') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = performance.now() + 20_000;
    while (!output.includes('"listening"') && performance.now() < deadline && child.exitCode === null) await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(output.includes('"listening"'), output);
    child.kill('SIGTERM');
    assert.equal(await exited, 0, output);
    assert.match(output, /"message":"stopped"/, 'the mirror itself got SIGTERM and drained');
  });

  it('an old Node running a bundle with no Node of its own beside it says what is needed instead of failing to listen', async (t) => {
    // dist/ as it ships (the bundle and the chunks it imports), with no node_modules beside it.
    const bundle = path.join(work.path, 'alone', 'dist', 'pullmirror.mjs');
    cpSync(path.join(ROOT, 'dist'), path.dirname(bundle), { recursive: true });
    const system = '/usr/bin/node';
    let version: string;
    try {
      version = (await run(system, ['-p', 'process.versions.node'])).stdout.trim();
    } catch {
      return t.skip(`no ${system} to try an old Node with`);
    }
    if (nodeVersionProblem(version, system) === undefined) return t.skip(`${system} is Node ${version}, new enough`);
    const { code, stderr } = await pullmirror(['serve'], { node: system, entry: bundle, env: { REGISTRY_HTTP_ADDR: '127.0.0.1:0' } });
    assert.equal(code, 1);
    assert.match(stderr, new RegExp(`^pullmirror needs Node\\.js ${REQUIRED_NODE.replaceAll('.', '\\.')} or newer; this is Node ${version.replaceAll('.', '\\.')}`));
    assert.doesNotMatch(stderr, /EADDRINUSE/);
  });

  // The systemd unit's ExecStart (the Node the install provides) is checked with the other
  // shipped configs in spec/e2e/deploy-configs.test.ts.
});

describe('config check and serve: one validation path', () => {
  const dir = work.path;
  const write = (name: string, config: Record<string, unknown>) => {
    const file = path.join(dir, name);
    writeFileSync(file, stringify({ storage: { filesystem: { rootdirectory: path.join(dir, 'store') } }, http: { addr: '127.0.0.1:0' }, ...config }));
    return file;
  };
  const cases: [string, string[], NodeJS.ProcessEnv, RegExp][] = [
    ['a missing htpasswd file', [write('htpasswd.yml', { auth: { htpasswd: { realm: 'r', path: path.join(dir, 'no-htpasswd') } } })], {}, /auth\.htpasswd\.path: cannot read .*no-htpasswd: ENOENT/],
    ['a missing TLS certificate', [write('tls.yml', { http: { addr: '127.0.0.1:0', tls: { certificate: path.join(dir, 'no.crt'), key: path.join(dir, 'no.key') } } })], {}, /http\.tls\.certificate: cannot read .*no\.crt: ENOENT/],
    ['an address without a port', [], { REGISTRY_HTTP_ADDR: '5384', REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY: path.join(dir, 'store') }, /http\.addr \(from REGISTRY_HTTP_ADDR\): expected host:port/],
  ];
  for (const [what, files, env, message] of cases) {
    it(`both refuse ${what}, with the same one message and no stack trace`, async () => {
      const check = await pullmirror(['config', 'check', ...files], { env });
      const serve = await pullmirror(['serve', ...files], { env });
      for (const [name, result] of [['config check', check], ['serve', serve]] as const) {
        assert.equal(result.code, 2, `${name}: ${result.stderr}`);
        assert.match(result.stderr, message, name);
        assert.doesNotMatch(result.stderr, /\n\s+at |ConfigError/, `${name}: no stack trace`);
      }
      assert.equal(check.stderr, serve.stderr, 'the same message');
    });
  }

  it('config check prints the warnings serve logs: ignored registry:2 keys and stray REGISTRY_* variables', async () => {
    const file = write('ignored.yml', { notifications: { endpoints: [{ name: 'hook', url: 'http://hooks:8080/' }] }, middleware: { registry: [{ name: 'redirect' }] } });
    const env = { REGISTRY_SERVICE_HOST: '10.96.0.12' };
    const check = await pullmirror(['config', 'check', file], { env });
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stderr, /warning: notifications is ignored by pullmirror/);
    assert.match(check.stderr, /warning: middleware is ignored by pullmirror/);
    assert.match(check.stderr, /warning: REGISTRY_SERVICE_HOST names no configuration key; ignored/);
    const mirror = await startMirror({ remoteurl: 'http://127.0.0.1:9', config: { notifications: { endpoints: [{ name: 'hook' }] } }, env });
    try {
      const warnings = mirror.logLines().filter((line) => line.message === 'configuration').map((line) => line.warning);
      assert.ok(warnings.some((warning) => /^notifications is ignored by pullmirror/.test(warning)), JSON.stringify(warnings));
      assert.ok(warnings.includes('REGISTRY_SERVICE_HOST names no configuration key; ignored'));
    } finally {
      await mirror.stop();
    }
  });

  it("config check's output is a config: read back, it passes and prints the same (durations in Go syntax, sizes with a unit)", async () => {
    const passwordFile = path.join(dir, 'ghcr-password');
    const htpasswd = path.join(dir, 'htpasswd');
    writeFileSync(passwordFile, 'ghcr-secret\n');
    writeFileSync(htpasswd, 'alice:$2y$05$AAAAAAAAAAAAAAAAAAAAAOyjUzD3BvS0BUBwE7eDnT9j3qAQ5AOgi\n');
    const first = write('roundtrip.yml', {
      log: { level: 'warning', fields: { service: 'mirror' } },
      storage: {
        filesystem: { rootdirectory: path.join(dir, 'store'), minfreespace: '2GB' },
        delete: { enabled: 'yes' },
        eviction: { maxsize: '85GiB', grace: '90s', keep: ['docker.io/library/alpine:*'] },
      },
      http: { addr: '127.0.0.1:0', sendtimeout: '1h30m', headertimeout: '1500ms', trustedproxies: '10.0.0.0/8, 127.0.0.1' },
      auth: { htpasswd: { realm: 'r', path: htpasswd, throttle: { window: '2m' } } },
      proxy: {
        remoteurl: 'https://hub:pw@hubproxy.example.com',
        namespace: 'docker.io',
        username: 'hub',
        password: 'a: b',
        ttl: '24h',
        remotes: [{ namespace: 'ghcr.io', passwordfile: passwordFile, username: 'me', ttl: '36h', prefix: 'ghcr' }],
        warm: { schedule: '0 * * * *', images: ['alpine:3.20'], password: 'warm-secret', username: 'warm' },
      },
      redis: { addr: '127.0.0.1:6379', password: 'redis-secret', fleet: { lease: '15s' } },
      notifications: { endpoints: [{ name: 'hook' }] },
    });
    const printed = await pullmirror(['config', 'check', first]);
    assert.equal(printed.code, 0, printed.stderr);
    for (const line of ['ttl: 24h', 'ttl: 36h', 'grace: 1m30s', 'sendtimeout: 1h30m', 'headertimeout: 1.5s', 'window: 2m', 'lease: 15s', 'minfreespace: 2GiB', 'maxsize: 85GiB', 'tagfreshness: 15s', 'backoff: 250ms']) {
      assert.ok(printed.stdout.includes(` ${line}\n`), `${line} in:\n${printed.stdout}`);
    }
    assert.doesNotMatch(printed.stdout, /\b(604800000|86400000|90000)\b/, 'no milliseconds');
    for (const secret of ['ghcr-secret', 'a: b', 'warm-secret', 'redis-secret', ':pw@']) assert.ok(!printed.stdout.includes(secret), `${secret} masked`);
    const second = path.join(dir, 'roundtrip-printed.yml');
    writeFileSync(second, printed.stdout);
    const again = await pullmirror(['config', 'check', second]);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(again.stdout, printed.stdout, 'the same effective config');
    assert.equal(again.stderr.replace(second, 'FILE'), printed.stderr.replace(first, 'FILE'), 'the same warnings');
  });

  it('a taken debug port is one line naming the address, exit status 1, no stack trace', async () => {
    const holder = createServer();
    await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve));
    const port = (holder.address() as { port: number }).port;
    try {
      const file = write('debug.yml', { http: { addr: '127.0.0.1:0', debug: { addr: `127.0.0.1:${port}` } }, proxy: { remoteurl: 'http://127.0.0.1:9' } });
      const { code, stderr } = await pullmirror(['serve', file]);
      assert.equal(code, 1, stderr);
      assert.match(stderr, new RegExp(`^pullmirror: cannot listen on 127\\.0\\.0\\.1:${port} \\(http\\.debug\\.addr\\): EADDRINUSE\\n$`, 'm'));
      assert.doesNotMatch(stderr, /\n\s+at /);
    } finally {
      holder.close();
    }
  });
});
