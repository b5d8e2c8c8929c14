/**
 * Real distribution (registry:2) servers for e2e tests.
 *
 * Why: a hand-written fake upstream would only test the mirror against our own
 * reading of the spec. `docker-registry` (distribution 2.8) is the reference
 * implementation; with token auth from ./token-server.ts it behaves like
 * registry-1.docker.io for pulls. `startDistributionProxy` runs the same binary
 * in pull-through mode as the baseline the benchmark compares against.
 */
import { writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { cleanEnv, freePort, startProcess, tempDir, waitForHttp } from './processes.ts';
import type { StartedProcess } from './processes.ts';
import type { TokenServer } from './token-server.ts';

export interface RegistryServer {
  url: string;
  port: number;
  pid: number;
  /** Storage root (filesystem driver rootdirectory). */
  rootDir: string;
  configPath: string;
  logFile: string;
  process: StartedProcess;
  /** Where the registry keeps a blob's bytes, so tests can corrupt it in place. */
  blobDataPath(digest: string): string;
  /** Last `maxChars` of the registry's log (include it in assertion messages). */
  readLog(maxChars?: number): string;
  /** Stop the process and delete its temp storage. */
  stop(): Promise<void>;
}

type RegistryConfig = Record<string, unknown>;

async function startDistribution(label: string, makeConfig: (port: number, rootDir: string) => RegistryConfig, okStatuses: number[]): Promise<RegistryServer> {
  const dir = tempDir(`pullmirror-${label}`);
  const rootDir = path.join(dir.path, 'storage');
  mkdirSync(rootDir);
  const configPath = path.join(dir.path, 'config.yml');
  const logFile = path.join(dir.path, 'registry.log');

  // freePort() can race with other processes; retry a couple of times if the bind fails.
  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    writeFileSync(configPath, stringify(makeConfig(port, rootDir)));
    // REGISTRY_* variables override the config file in distribution; never inherit them. Nor
    // AWS_*: its s3 driver (AWS SDK v1) reads them too, and with AWS_CA_BUNDLE set it panics at
    // start ("unable to load custom CA bundle, HTTPClient's transport unsupported type").
    const proc = startProcess('docker-registry', ['serve', configPath], { env: cleanEnv(['REGISTRY_', 'AWS_']), logFile });
    const url = `http://127.0.0.1:${port}`;
    try {
      await waitForHttp(`${url}/v2/`, { okStatuses, timeoutMs: 15_000, process: proc });
    } catch (err) {
      lastErr = err;
      await proc.stop();
      if (/address already in use/.test(proc.readLog())) continue;
      await dir.cleanup();
      throw err;
    }
    return {
      url,
      port,
      pid: proc.pid,
      rootDir,
      configPath,
      logFile,
      process: proc,
      blobDataPath: (digest: string) => blobDataPath(rootDir, digest),
      readLog: (maxChars?: number) => proc.readLog(maxChars),
      stop: async () => {
        await proc.stop();
        await dir.cleanup();
      },
    };
  }
  await dir.cleanup();
  throw lastErr;
}

/** `${rootDir}/docker/registry/v2/blobs/sha256/<first2>/<hex>/data` — distribution's filesystem layout. */
export function blobDataPath(rootDir: string, digest: string): string {
  const m = /^([a-z0-9]+):([a-f0-9]+)$/.exec(digest);
  if (!m) throw new Error(`bad digest: ${digest}`);
  const [, algo, hex] = m;
  return path.join(rootDir, 'docker', 'registry', 'v2', 'blobs', algo, hex.slice(0, 2), hex, 'data');
}

function baseConfig(port: number, rootDir: string): RegistryConfig {
  return {
    version: '0.1',
    log: {
      level: 'info',
      formatter: 'text',
      accesslog: { disabled: false },
      fields: { service: 'registry' },
    },
    storage: {
      filesystem: { rootdirectory: rootDir },
      delete: { enabled: true },
      // No background upload purging/readonly surprises during a test run.
      maintenance: { uploadpurging: { enabled: false } },
    },
    http: {
      addr: `127.0.0.1:${port}`,
      headers: { 'X-Content-Type-Options': ['nosniff'] },
    },
  };
}

export interface UpstreamRegistryOptions {
  tokenServer: Pick<TokenServer, 'realm' | 'service' | 'issuer' | 'certPath'>;
}

/** A token-authenticated upstream registry (the "Docker Hub" of the tests). Ready when GET /v2/ answers 401. */
export function startUpstreamRegistry(opts: UpstreamRegistryOptions): Promise<RegistryServer> {
  const ts = opts.tokenServer;
  return startDistribution(
    'upstream',
    (port, rootDir) => ({
      ...baseConfig(port, rootDir),
      auth: {
        token: {
          realm: ts.realm,
          service: ts.service,
          issuer: ts.issuer,
          rootcertbundle: ts.certPath,
        },
      },
    }),
    [401],
  );
}

/** A registry without auth (as registry.k8s.io is): anyone may pull and push. Ready when GET /v2/ answers 200. */
export function startOpenRegistry(): Promise<RegistryServer> {
  return startDistribution('open-upstream', baseConfig, [200]);
}

export interface DistributionProxyOptions {
  remoteurl: string;
  username?: string;
  password?: string;
  /**
   * Storage driver config in place of the temp filesystem one, e.g. `{ s3: {…}, redirect: {
   * disable: true } }` (the bench's S3 case); `rootDir` then stays an empty temp dir.
   */
  storage?: RegistryConfig;
}

/** distribution in pull-through cache mode (no auth of its own), the baseline for benchmarks. Ready when GET /v2/ answers 200. */
export function startDistributionProxy(opts: DistributionProxyOptions): Promise<RegistryServer> {
  return startDistribution(
    'dist-proxy',
    (port, rootDir) => {
      const proxy: Record<string, string> = { remoteurl: opts.remoteurl };
      if (opts.username !== undefined) proxy.username = opts.username;
      if (opts.password !== undefined) proxy.password = opts.password;
      const config = baseConfig(port, rootDir);
      if (opts.storage) {
        const { filesystem: _filesystem, ...rest } = config.storage as RegistryConfig;
        config.storage = { ...rest, ...opts.storage };
      }
      return { ...config, proxy };
    },
    [200],
  );
}
