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
import { existsSync, mkdirSync } from 'node:fs';
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

/** True when `privateMounts` will wrap (root), so callers know which paths their tool writes. */
export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/**
 * `[cmd, args]` that run `cmd args` with each `over` directory replaced by `from`. As root this
 * is `unshare --mount --propagation private -- sh -c 'mount --bind …; exec cmd args'` (unshare
 * execs without forking, so the pid the caller gets is the tool's own and signals reach it);
 * otherwise the command unchanged.
 */
export function privateMounts(cmd: string, args: string[], binds: BindOver[]): [string, string[]] {
  if (!isRoot() || binds.length === 0) return [cmd, args];
  const unshare = findBinary('unshare');
  if (!unshare) throw new Error('unshare not found (util-linux): needed to keep a root tool from writing outside the test dir');
  const mounts = binds.map(({ over, from }) => {
    if (!existsSync(over)) throw new Error(`privateMounts: mount point ${over} does not exist`);
    mkdirSync(from, { recursive: true });
    return `mount --bind ${shellQuote(from)} ${shellQuote(over)}`;
  });
  const script = `set -e; ${mounts.join('; ')}; exec "$@"`;
  return [unshare, ['--mount', '--propagation', 'private', '--', 'sh', '-c', script, 'sh', cmd, ...args]];
}
