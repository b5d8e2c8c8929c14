/**
 * A private dockerd for the one check that matters most: `docker pull` through the mirror, as
 * a fleet does it (`--registry-mirror`). Everything is its own: data root, exec root, pid
 * file, unix socket, daemon.json and trust key (`--config-file`, whose `deprecated-key-path`
 * moves /etc/docker/key.json); no iptables, no bridge, the vfs storage driver (works on any
 * filesystem). Its proxy is a loopback port nobody listens on, so even on a machine with
 * internet it can reach nothing but the mirror: a pull that succeeds came through the mirror.
 *
 * Two paths no flag moves in dockerd 20.10: plugin sockets in /run/docker/plugins and the
 * containerd it starts creating /opt/containerd/{bin,lib}. So it runs in its own mount
 * namespace with /run and /opt replaced by directories in its temp dir (private-mounts.ts);
 * hiding /run also keeps it off a system containerd (/run/containerd/containerd.sock), and
 * the mounts it makes itself (its data root) stay out of the host's mount table.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { privateMounts } from './private-mounts.ts';
import { findBinary, freePort, startProcess, tempDir, type StartedProcess, type TempDir } from './processes.ts';

const run = promisify(execFile);

export interface Dockerd {
  socket: string;
  process: StartedProcess;
  /** Runs the docker CLI against this daemon. */
  docker(args: string[], timeoutMs?: number): Promise<{ stdout: string; stderr: string }>;
  stop(): Promise<void>;
}

/** Proxy settings that send every non-loopback request of dockerd to a closed loopback port. */
async function noWayOut(): Promise<Record<string, string>> {
  const closed = `http://127.0.0.1:${await freePort()}`;
  const loopback = '127.0.0.1,localhost,::1';
  return { HTTP_PROXY: closed, HTTPS_PROXY: closed, http_proxy: closed, https_proxy: closed, NO_PROXY: loopback, no_proxy: loopback };
}

/**
 * `registryMirror`: the mirror as `--registry-mirror`. `daemonJson`: instead, the text of a
 * daemon.json given to dockerd as it is (`--config-file`), so a test runs a generated one
 * unchanged; the trust key dockerd keeps in /etc/docker then lands in a private /etc/docker.
 */
export async function startDockerd(options: { registryMirror: string } | { daemonJson: string }): Promise<Dockerd> {
  const dockerd = findBinary('dockerd');
  const cli = findBinary('docker');
  if (!dockerd || !cli) throw new Error('dockerd/docker not found (Debian package docker.io)');
  const dir: TempDir = tempDir('pullmirror-dockerd');
  const socket = path.join(dir.path, 'docker.sock');
  const configFile = path.join(dir.path, 'daemon.json');
  const keyPath = { 'deprecated-key-path': path.join(dir.path, 'key.json') };
  // A given daemon.json is used as written while /etc/docker can be replaced (the trust key's
  // default place); where it cannot, the key's path is added to it rather than write there.
  const privateEtc = 'daemonJson' in options && existsSync('/etc/docker');
  writeFileSync(
    configFile,
    'daemonJson' in options ? (privateEtc ? options.daemonJson : JSON.stringify({ ...JSON.parse(options.daemonJson), ...keyPath })) : JSON.stringify(keyPath),
  );
  const [cmd, args] = privateMounts(
    dockerd,
    [
      `--config-file=${configFile}`,
      ...('registryMirror' in options ? [`--registry-mirror=${options.registryMirror}`] : []),
      '--storage-driver=vfs',
      '--iptables=false',
      '--ip6tables=false',
      '--bridge=none',
      `--data-root=${path.join(dir.path, 'data')}`,
      `--exec-root=${path.join(dir.path, 'exec')}`,
      `--pidfile=${path.join(dir.path, 'docker.pid')}`,
      `-H`,
      `unix://${socket}`,
    ],
    [
      { over: '/run', from: path.join(dir.path, 'run') },
      { over: '/opt', from: path.join(dir.path, 'opt') },
      ...(privateEtc ? [{ over: '/etc/docker', from: path.join(dir.path, 'etc-docker') }] : []),
    ],
  );
  // TMPDIR: the containerd it starts inherits it (goroutine dumps go to os.TempDir()).
  mkdirSync(path.join(dir.path, 'tmp'));
  const env = { ...process.env, HOME: path.join(dir.path, 'home'), TMPDIR: path.join(dir.path, 'tmp'), ...(await noWayOut()) };
  const child = startProcess(cmd, args, { logFile: path.join(dir.path, 'dockerd.log'), env });
  const docker = async (args: string[], timeoutMs = 120_000) => {
    const { stdout, stderr } = await run(cli, ['-H', `unix://${socket}`, ...args], { timeout: timeoutMs, env: { ...process.env, DOCKER_CONFIG: path.join(dir.path, 'cli') } });
    return { stdout: String(stdout), stderr: String(stderr) };
  };
  const deadline = performance.now() + 30_000;
  for (;;) {
    try {
      await docker(['version', '--format', '{{.Server.Version}}'], 5000);
      break;
    } catch (error) {
      if (child.hasExited() || performance.now() > deadline) {
        await child.stop();
        throw new Error(`dockerd did not start: ${(error as Error).message}\n${child.readLog()}`, { cause: error });
      }
      await sleep(200);
    }
  }
  return {
    socket,
    process: child,
    docker,
    async stop() {
      await child.stop();
      await dir.cleanup().catch(() => {});
    },
  };
}
