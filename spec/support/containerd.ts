/**
 * A private containerd for pulls with `ctr images pull --hosts-dir`, the way a Kubernetes node
 * configured with hosts.toml pulls through a mirror (`?ns=<registry>` on every request).
 *
 * Everything is its own, in the test's temp dir: root, state, the gRPC and ttrpc sockets, the
 * `opt` plugin's directory; the CRI plugin (CNI, a kubelet's concerns) is disabled, and images
 * unpack with the `native` snapshotter (copies, works on any filesystem). As dockerd's tests do,
 * it runs in its own mount namespace with /run and /opt replaced by temp directories
 * (private-mounts.ts), so it can neither write there nor reach a system containerd. ctr, which
 * fetches the content itself, gets proxy settings pointing at a closed loopback port: a pull that
 * succeeds came through the mirror.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { privateMounts } from './private-mounts.ts';
import { findBinary, freePort, startProcess, tempDir, type StartedProcess } from './processes.ts';

const run = promisify(execFile);

export interface Containerd {
  process: StartedProcess;
  /** Runs `ctr` against this daemon (namespace `pullmirror-test`). */
  ctr(args: string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  /**
   * `ctr images pull --hosts-dir` of `ref` with a hosts.toml for each registry (its `server` the
   * real one, the mirror the only host tried before it); answers the pulled image's digest.
   */
  pull(ref: string, hosts: Record<string, string>): Promise<string>;
  /** `ctr images pull --hosts-dir hostsDir ref` with a hosts tree as given; answers the pulled image's digest. */
  pullWithHostsDir(ref: string, hostsDir: string): Promise<string>;
  stop(): Promise<void>;
}

export async function startContainerd(): Promise<Containerd> {
  const containerd = findBinary('containerd');
  const ctrBinary = findBinary('ctr');
  if (!containerd || !ctrBinary) throw new Error('containerd/ctr not found (Debian package containerd)');
  const dir = tempDir('pullmirror-containerd');
  const socket = path.join(dir.path, 'containerd.sock');
  const configFile = path.join(dir.path, 'config.toml');
  writeFileSync(
    configFile,
    [
      'version = 2',
      `root = ${JSON.stringify(path.join(dir.path, 'root'))}`,
      `state = ${JSON.stringify(path.join(dir.path, 'state'))}`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = ${JSON.stringify(socket)}`,
      '[ttrpc]',
      `  address = ${JSON.stringify(`${socket}.ttrpc`)}`,
      '[plugins."io.containerd.internal.v1.opt"]',
      `  path = ${JSON.stringify(path.join(dir.path, 'opt'))}`,
      '',
    ].join('\n'),
  );
  const [cmd, args] = privateMounts(containerd, ['--config', configFile], [
    { over: '/run', from: path.join(dir.path, 'run') },
    { over: '/opt', from: path.join(dir.path, 'opt-host') },
  ]);
  mkdirSync(path.join(dir.path, 'tmp'));
  const child = startProcess(cmd, args, { logFile: path.join(dir.path, 'containerd.log'), env: { ...process.env, TMPDIR: path.join(dir.path, 'tmp') } });
  const closed = `http://127.0.0.1:${await freePort()}`;
  const loopback = '127.0.0.1,localhost,::1';
  const ctrEnv = { ...process.env, HTTP_PROXY: closed, HTTPS_PROXY: closed, http_proxy: closed, https_proxy: closed, NO_PROXY: loopback, no_proxy: loopback, TMPDIR: path.join(dir.path, 'tmp') };
  const ctr = async (ctrArgs: string[], timeoutMs = 120_000) => {
    const { stdout, stderr } = await run(ctrBinary, ['--address', socket, '--namespace', 'pullmirror-test', ...ctrArgs], { timeout: timeoutMs, env: ctrEnv });
    return { stdout: String(stdout), stderr: String(stderr) };
  };
  const deadline = performance.now() + 30_000;
  for (;;) {
    try {
      await ctr(['version'], 5000);
      break;
    } catch (error) {
      if (child.hasExited() || performance.now() > deadline) {
        await child.stop();
        await dir.cleanup().catch(() => {});
        throw new Error(`containerd did not start: ${(error as Error).message}\n${child.readLog()}`, { cause: error });
      }
      await sleep(100);
    }
  }
  let pulls = 0;
  const pullWithHostsDir = async (ref: string, hostsDir: string) => {
    await ctr(['images', 'pull', '--snapshotter', 'native', '--hosts-dir', hostsDir, ref]);
    const { stdout } = await ctr(['images', 'ls']);
    const line = stdout.split('\n').find((row) => row.split(/\s+/)[0] === ref);
    const digest = line?.split(/\s+/).find((field) => field.startsWith('sha256:'));
    if (!digest) throw new Error(`ctr images ls has no ${ref}:\n${stdout}`);
    return digest;
  };
  return {
    process: child,
    ctr,
    async pull(ref, hosts) {
      const hostsDir = path.join(dir.path, `hosts-${pulls++}`);
      for (const [registry, mirror] of Object.entries(hosts)) {
        mkdirSync(path.join(hostsDir, registry), { recursive: true });
        const server = registry === 'docker.io' ? 'https://registry-1.docker.io' : `https://${registry}`;
        writeFileSync(path.join(hostsDir, registry, 'hosts.toml'), `server = "${server}"\n\n[host."${mirror}"]\n  capabilities = ["pull", "resolve"]\n`);
      }
      return pullWithHostsDir(ref, hostsDir);
    },
    pullWithHostsDir,
    async stop() {
      await child.stop();
      await dir.cleanup().catch(() => {});
    },
  };
}
