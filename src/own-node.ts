import { spawn } from 'node:child_process';
import { accessSync, constants, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/*
 * `npm ci` installs Node 24 next to the dependencies (node_modules/.bin/node, the `node`
 * package). A machine whose own `node` is older (Debian 12's 18, an LTS 20) runs
 * `node dist/pullmirror.mjs` or the `pullmirror` bin with that one: instead of refusing, the
 * process hands over to the project's Node, so every command works as the README prints it
 * whatever node is first on PATH. Written for old Nodes: no newer syntax or APIs.
 */

/** Set in the child, so a Node that is still too old never hands over in a loop. */
const HANDED_OVER = 'PULLMIRROR_OWN_NODE';

/**
 * The Node `npm ci` installed for the checkout holding `moduleUrl` (dist/pullmirror.mjs or
 * src/main.ts, both one level below the root), when it exists and is not the one running.
 */
export function projectNode(moduleUrl: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env[HANDED_OVER]) return undefined;
  const candidate = fileURLToPath(new URL('../node_modules/.bin/node', moduleUrl));
  try {
    accessSync(candidate, constants.X_OK);
    if (realpathSync(candidate) === realpathSync(process.execPath)) return undefined;
    return candidate;
  } catch {
    return undefined;
  }
}

/**
 * Runs this same command (Node flags, script, arguments) under `node` and exits as it exits.
 * Signals are passed on, so SIGTERM still drains a serving mirror, and the child's exit status
 * (or the signal that ended it) is this process's.
 */
export function handOver(node: string): Promise<never> {
  return new Promise<never>(() => {
    const child = spawn(node, [...process.execArgv, ...process.argv.slice(1)], {
      stdio: 'inherit',
      env: { ...process.env, [HANDED_OVER]: '1' },
    });
    const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT'];
    for (const signal of signals) process.on(signal, () => child.kill(signal));
    child.on('error', (error) => {
      process.stderr.write(`pullmirror: cannot run ${node}: ${error.message}\n`);
      process.exit(1);
    });
    child.on('exit', (code, signal) => {
      if (signal) {
        for (const name of signals) process.removeAllListeners(name);
        process.kill(process.pid, signal);
      }
      process.exit(code ?? 1);
    });
  });
}
