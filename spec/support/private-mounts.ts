/**
 * Run a client or daemon as root in its own mount namespace, with host directories it insists
 * on writing to replaced by directories inside the test's temp dir.
 *
 * Why: some tools have hard-wired paths for root that no flag or environment variable moves
 * (skopeo's blob info cache in /var/lib/containers/cache; dockerd 20.10's plugin sockets in
 * /run/docker/plugins and its containerd's /opt/containerd). A test must leave nothing behind
 * on the machine, so those writes go to a bind mount that only this process tree sees and that
 * disappears with it (`unshare --mount` makes the new mounts private: the host never sees them,
 * and mounts the daemon makes itself stay inside too). Without root nothing is wrapped: those
 * tools then write under HOME/XDG_* paths, which the callers point into their temp dir.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { findBinary } from './processes.ts';

export interface BindOver {
  /** A host directory (it must exist: it is the mount point). */
  over: string;
  /** The directory inside the test's temp dir that the process sees there instead (created). */
  from: string;
}

function shellQuote(value: string): string {
  return `'${value.replaceAll("'", `'\\''`)}'`;
}

let probed: string | undefined | null = null;

/**
 * `unshare` if this root may make a mount namespace and bind mounts in it, else undefined (with
 * one warning: root without CAP_SYS_ADMIN, e.g. an unprivileged container, still runs the
 * suite, the tools then write where they always do). Probed once per test process.
 */
function unshareBinary(): string | undefined {
  if (probed !== null) return probed;
  probed = undefined;
  const unshare = findBinary('unshare');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pullmirror-unshare-probe-'));
  try {
    const probe = unshare && spawnSync(unshare, ['--mount', '--propagation', 'private', '--', 'mount', '--bind', dir, dir], { stdio: 'ignore' });
    if (probe && probe.status === 0) probed = unshare;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  if (!probed) process.emitWarning('no private mount namespace (unshare --mount failed or util-linux missing): skopeo and dockerd will write their root state paths on this machine');
  return probed;
}

/**
 * `[cmd, args]` that run `cmd args` with each `over` directory replaced by `from`. As root this
 * is `unshare --mount --propagation private -- sh -c 'mount --bind …; exec cmd args'` (unshare
 * execs without forking, so the pid the caller gets is the tool's own and signals reach it);
 * otherwise the command unchanged.
 */
export function privateMounts(cmd: string, args: string[], binds: BindOver[]): [string, string[]] {
  if (process.getuid?.() !== 0 || binds.length === 0) return [cmd, args];
  const unshare = unshareBinary();
  if (!unshare) return [cmd, args];
  const mounts = binds.map(({ over, from }) => {
    if (!existsSync(over)) throw new Error(`privateMounts: mount point ${over} does not exist`);
    mkdirSync(from, { recursive: true });
    return `mount --bind ${shellQuote(from)} ${shellQuote(over)}`;
  });
  const script = `set -e; ${mounts.join('; ')}; exec "$@"`;
  return [unshare, ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', cmd, ...args]];
}
