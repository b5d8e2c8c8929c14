/**
 * The README's fleet of plain processes, run as a user pastes it: the one-host block is taken
 * from README.md ("A fleet of plain processes") and run by bash in the repository, with only the
 * values the README says are yours to choose replaced (ports, the store directory, the upstream
 * URL: this test's registry instead of Docker Hub). Then two clients pull one image at once, one
 * through each instance: every blob and the manifest cost one upstream GET between them. The
 * several-host environment file passes `pullmirror config check deploy/config.yml`.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { parse } from 'yaml';
import { pushImage, randomLayer } from '../support/images.ts';
import { BUNDLE } from '../support/mirror.ts';
import { cleanEnv, freePort, requireBinary, tempDir } from '../support/processes.ts';
import { readDirImage, skopeoCopy } from '../support/skopeo.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8');
const run = promisify(execFile);

/** The README's section on a fleet of plain processes, up to the next heading. */
function recipeSection(): string {
  const start = README.indexOf('### A fleet of plain processes');
  assert.ok(start >= 0, 'README.md has the section "A fleet of plain processes"');
  const end = README.indexOf('\n#', start + 1);
  return README.slice(start, end < 0 ? undefined : end);
}

/** The first ```sh block after `marker` in the section, and the prose between them. */
function blockAfter(section: string, marker: string): { prose: string; code: string } {
  const at = section.indexOf(marker);
  assert.ok(at >= 0, `the section says "${marker}"`);
  const match = /```sh\n([\s\S]*?)```/.exec(section.slice(at));
  assert.ok(match, `a sh block after "${marker}"`);
  return { prose: section.slice(at, at + match.index), code: match[1] };
}

describe("the README's fleet of plain processes, run as printed", { skip: missingBinaries }, () => {
  let world: World;
  let shell: ChildProcess | undefined;
  const work = tempDir('pullmirror-fleet-recipe');

  before(async () => {
    world = await startWorld();
  });
  after(async () => {
    // Redis, npm and both instances are in the shell's process group: all of them go.
    if (shell?.pid !== undefined && shell.exitCode === null) {
      try {
        process.kill(-shell.pid, 'SIGTERM');
        await eventually(() => shell!.exitCode !== null || shell!.signalCode !== null, 10_000, 100);
        process.kill(-shell.pid, 'SIGKILL');
      } catch {
        // the group is gone already
      }
    }
    await world?.close();
    await work.cleanup();
  });

  it('one host: Redis and two instances on one store; a blob pulled through both at once is fetched once', async (t) => {
    if (!requireBinary('redis-server', t) || !requireBinary('npm', t)) return;
    const { prose, code } = blockAfter(recipeSection(), '**On one host**');
    const [redisPort, portA, portB] = [await freePort(), await freePort(), await freePort()];
    const store = path.join(work.path, 'store');
    // What the README leaves to the reader, each named as such in the prose before the block.
    const chosen: [string, string][] = [
      ['6379', String(redisPort)],
      ['5001', String(portA)],
      ['5002', String(portB)],
      ['/srv/pullmirror', store],
      ['https://registry-1.docker.io', world.proxy.url],
    ];
    assert.match(prose, /the ports 6379, 5001 and 5002, the directory `\/srv\/pullmirror` and the\s+upstream URL are yours to choose/);
    let script = code;
    for (const [printed, ours] of chosen) {
      assert.ok(script.includes(printed), `the block uses ${printed}`);
      script = script.split(printed).join(ours);
    }
    const log = path.join(work.path, 'recipe.log');
    const fd = openSync(log, 'a');
    try {
      // As pasted into a shell, which then waits for its jobs (so they stay one process group).
      shell = spawn('bash', ['-c', `${script}\nwait\n`], {
        cwd: ROOT,
        env: cleanEnv(['REGISTRY_', 'PULLMIRROR_', 'REDIS_']),
        detached: true,
        stdio: ['ignore', fd, fd],
      });
    } finally {
      closeSync(fd);
    }
    const answers = async (port: number) => {
      try {
        const response = await fetch(`http://127.0.0.1:${port}/v2/`);
        await response.arrayBuffer();
        return response.status === 200;
      } catch {
        return false;
      }
    };
    const tail = () => readFileSync(log, 'utf8').slice(-4000);
    assert.ok(await eventually(async () => (await answers(portA)) && (await answers(portB)), 60_000, 200), `both instances answer:\n${tail()}`);
    const fleet = await eventually(async () => {
      const answer = (await (await fetch(`http://127.0.0.1:${portA}/api/fleet`)).json()) as { instances: { state: string }[] };
      return answer.instances.filter((instance) => instance.state === 'alive').length === 2;
    }, 15_000, 250);
    assert.ok(fleet, `the instances see each other through Redis:\n${tail()}`);

    const image = await pushImage(world.registry.url, PUSHER, {
      name: 'team/recipe',
      tag: '1',
      layers: [randomLayer('recipe-big', 4 * 1024 * 1024), randomLayer('recipe-small', 8 * 1024)],
      format: 'docker',
    });
    world.proxy.reset();
    // Slow enough that both pulls want each blob while its one download runs.
    world.proxy.setFault({ kind: 'throttle', bytesPerSecond: 2 * 1024 * 1024, match: (method, p) => method === 'GET' && p.includes('/blobs/') });
    try {
      const pulls = [portA, portB].map(async (port) => {
        const dest = path.join(work.path, `pull-${port}`);
        await skopeoCopy(`docker://127.0.0.1:${port}/team/recipe:1`, `dir:${dest}`);
        return readDirImage(dest);
      });
      for (const pulled of await Promise.all(pulls)) assert.equal(pulled.manifest.digest, image.manifestDigest);
    } finally {
      world.proxy.setFault(undefined);
    }
    for (const digest of [image.configDigest, ...image.layerDigests]) {
      assert.equal(world.proxy.count('GET', new RegExp(`/blobs/${digest}$`)), 1, `one upstream GET of ${digest} between the two instances`);
    }
    assert.equal(world.proxy.count('GET', /\/manifests\//), 1, 'one upstream manifest GET');
  });

  it("several hosts: the environment file's lines pass config check over deploy/config.yml, with the drain file off the shared store", async () => {
    const { code } = blockAfter(recipeSection(), 'With the systemd unit on each host');
    const env: Record<string, string> = {};
    for (const line of code.split('\n').filter((l) => l.trim() && !l.startsWith('#'))) {
      // systemd's EnvironmentFile: KEY=VALUE, one pair of quotes around the value removed.
      const [, key, value] = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line) ?? [];
      assert.ok(key, `a KEY=VALUE line: ${line}`);
      env[key] = value.replace(/^'(.*)'$|^"(.*)"$/, '$1$2');
    }
    let result: { stdout: string; stderr: string };
    try {
      result = await run(process.execPath, [BUNDLE, 'config', 'check', path.join(ROOT, 'deploy/config.yml')], { env: { ...cleanEnv(['REGISTRY_', 'PULLMIRROR_', 'REDIS_']), ...env } });
    } catch (error) {
      assert.fail(`config check: ${(error as { stderr?: string }).stderr}`);
    }
    assert.deepEqual(result.stderr.split('\n').filter((line) => /^pullmirror: warning:/.test(line)), [], 'no warning');
    const effective = parse(result.stdout);
    assert.equal(effective.storage.cache.blobdescriptor, 'redis');
    assert.equal(effective.redis.addr, env.REGISTRY_REDIS_ADDR);
    assert.equal(effective.http.addr, env.REGISTRY_HTTP_ADDR);
    const root: string = effective.storage.filesystem.rootdirectory;
    assert.equal(root, '/var/lib/pullmirror', "the unit's ReadWritePaths, where the README mounts the shared store");
    assert.ok(effective.health.file.length > 0, 'a drain file');
    for (const { file } of effective.health.file) assert.ok(!file.startsWith(`${root}/`), `the drain file ${file} is this host's, not in the shared store`);
  });
});

