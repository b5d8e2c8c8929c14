/**
 * Starts the real pullmirror process (src/main.ts under this Node) with a generated config,
 * on a port the kernel picks, and reads the address back from its "listening" log line.
 */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { cleanEnv, startProcess, tempDir, type StartedProcess } from './processes.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const MAIN = path.join(ROOT, 'src/main.ts');
/** The built bundle, as `npm start` runs it (npm test builds it first). */
export const BUNDLE = path.join(ROOT, 'dist/pullmirror.mjs');
const run = promisify(execFile);

export interface CommandRun {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * One `pullmirror ARGS` command (src/main.ts, or `entry`, e.g. BUNDLE), whatever its exit
 * status, in an environment without REGISTRY_* and PULLMIRROR_* variables but `env`; killed
 * after 30 s so a hung command fails its test instead of the suite.
 */
export async function runPullmirror(args: string[], options: { env?: NodeJS.ProcessEnv; node?: string; entry?: string } = {}): Promise<CommandRun> {
  try {
    const { stdout, stderr } = await run(options.node ?? process.execPath, [options.entry ?? MAIN, ...args], {
      env: { ...cleanEnv(['REGISTRY_', 'PULLMIRROR_']), ...options.env },
      timeout: 30_000,
      maxBuffer: 16 * 1024 * 1024,
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

/**
 * What `npm start` runs: the built bundle with its Node flags and environment (`env K=V node
 * FLAGS dist/pullmirror.mjs`), read from package.json so the benchmark and the bundle test
 * start the mirror exactly as users do.
 */
export function startCommand(): { args: string[]; env: Record<string, string> } {
  const start: string = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).scripts.start;
  const words = start.trim().split(/\s+/);
  const env: Record<string, string> = {};
  if (words[0] === 'env') {
    words.shift();
    while (words[0]?.includes('=')) {
      const [key, ...value] = words.shift()!.split('=');
      env[key] = value.join('=');
    }
  }
  const [node, ...args] = words;
  if (node !== 'node') throw new Error(`unexpected start script: ${start}`);
  const bundle = args.at(-1)!;
  if (!existsSync(path.join(ROOT, bundle))) throw new Error(`${bundle} is missing: run npm run build`);
  return { args: [...args.slice(0, -1), path.join(ROOT, bundle)], env };
}

export interface MirrorOptions {
  remoteurl: string;
  username?: string;
  password?: string;
  /** Store root; a fresh temp dir when absent (pass the same one to restart on a store). */
  root?: string;
  /** Extra config merged deeply over the generated one. */
  config?: Record<string, any>;
  env?: NodeJS.ProcessEnv;
  /** Run the built bundle as `npm start` does, instead of src/main.ts. */
  bundle?: boolean;
  /** Node flags before the script, for those NODE_OPTIONS refuses (`--trace-gc`; profiling only). */
  nodeArgs?: string[];
}

export interface RunningMirror {
  url: string;
  port: number;
  root: string;
  configFile: string;
  /** The peer listener's URL (redis.fleet.peers.addr, as bound), when it has one. */
  peerUrl?: string;
  process: StartedProcess;
  /** Every JSON log line the mirror wrote so far. */
  logLines(): Record<string, any>[];
  stop(): Promise<void>;
}

export async function startMirror(options: MirrorOptions): Promise<RunningMirror> {
  const dir = tempDir('pullmirror-mirror');
  const root = options.root ?? path.join(dir.path, 'store');
  const config: Record<string, any> = {
    version: '0.1',
    log: { level: 'info', formatter: 'json' },
    // One storage driver at a time: a test's storage.s3 replaces the store directory.
    storage: options.config?.storage?.s3 ? {} : { filesystem: { rootdirectory: root } },
    http: { addr: '127.0.0.1:0' },
    proxy: { remoteurl: options.remoteurl, ...(options.username ? { username: options.username, password: options.password } : {}) },
  };
  mergeInto(config, options.config ?? {});
  const configFile = path.join(dir.path, 'config.yml');
  writeFileSync(configFile, stringify(config));
  const shipped = options.bundle ? startCommand() : undefined;
  const child = startProcess(process.execPath, [...(options.nodeArgs ?? []), ...(shipped ? shipped.args : [MAIN]), configFile], {
    env: { ...cleanEnv(['REGISTRY_']), ...shipped?.env, ...options.env },
    logFile: path.join(dir.path, 'mirror.log'),
  });
  const logLines = () =>
    readFileSync(child.logFile, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, any>);
  const deadline = performance.now() + 15_000;
  for (;;) {
    const listening = logLines().find((line) => line.message === 'listening');
    if (listening) {
      const port = Number(String(listening.addr).split(':').pop());
      // The address it listens on, when that is one address (a test may bind a non-loopback one).
      const bound = String(listening.addr).slice(0, String(listening.addr).lastIndexOf(':'));
      const host = /^\d+\.\d+\.\d+\.\d+$/.test(bound) && bound !== '0.0.0.0' ? bound : '127.0.0.1';
      // Logged before 'listening', when the config has a peer listener.
      const peers = logLines().find((line) => line.message === 'peers listening');
      return {
        peerUrl: peers ? `http://127.0.0.1:${String(peers.addr).split(':').pop()}` : undefined,
        url: `${listening.tls ? 'https' : 'http'}://${host}:${port}`,
        port,
        root,
        configFile,
        process: child,
        logLines,
        stop: () => child.stop(),
      };
    }
    if (child.hasExited() || performance.now() > deadline) {
      await child.stop();
      throw new Error(`pullmirror did not start:\n${child.readLog()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Plain config objects merged deeply, later ones winning (a test's config over a base). */
export function mergeConfig(...objects: Record<string, any>[]): Record<string, any> {
  const out: Record<string, any> = {};
  for (const object of objects) mergeInto(out, object);
  return out;
}

function mergeInto(target: Record<string, any>, extra: Record<string, any>): void {
  for (const [key, value] of Object.entries(extra)) {
    const isObject = typeof value === 'object' && value !== null && !Array.isArray(value);
    if (isObject && typeof target[key] === 'object' && target[key] !== null) mergeInto(target[key], value);
    else target[key] = isObject ? structuredClone(value) : value;
  }
}

/** Files (not the per-instance directories) under a store's temporary area. */
export function tempFiles(root: string): string[] {
  const tmp = path.join(root, '_tmp');
  if (!existsSync(tmp)) return [];
  return readdirSync(tmp, { recursive: true, withFileTypes: true })
    .filter((entry) => entry.isFile())
    .map((entry) => entry.name);
}
