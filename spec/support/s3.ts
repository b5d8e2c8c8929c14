/**
 * A real S3 server for tests: Ceph's RADOS Gateway on a one-node cluster (one mon, one OSD on
 * memstore, radosgw), started by the project's own script (spec/support/s3-ceph.sh, which CI
 * runs too) on free ports with its state in a temp dir, and stopped by the pids the script
 * recorded. One cluster per test file; `createBucket()` gives each suite a fresh bucket.
 *
 * Why the script and not startProcess: three daemons must start in order (the mon with its
 * keyring and pools, then the OSD, then radosgw and its S3 user); the script does that in about
 * 2–4 s and is what an operator or CI runs by hand too. The daemons run in their own session,
 * so besides `close()` an exit hook SIGKILLs exactly the recorded pids if the test process
 * ends without its after() hooks.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CreateBucketCommand, GetObjectCommand, ListMultipartUploadsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { freePort, skipUnlessBinaries, tempDir } from './processes.ts';

const run = promisify(execFile);
const SCRIPT = path.join(path.dirname(fileURLToPath(import.meta.url)), 's3-ceph.sh');

/** The binaries the script needs: for `describe(…, { skip: skipUnlessS3() })` (a failure in CI). */
export function skipUnlessS3(): string | false {
  return skipUnlessBinaries(['radosgw', 'radosgw-admin', 'ceph-mon', 'ceph-osd', 'ceph', 'ceph-authtool', 'monmaptool', 'curl', 'setsid']);
}

export interface S3Server {
  /** http://127.0.0.1:<port> */
  endpoint: string;
  port: number;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** What `s3-ceph.sh env` prints (S3_ENDPOINT, AWS_ACCESS_KEY_ID, …), for a child process. */
  env: Record<string, string>;
  /** A client with the settings RGW needs (path style, checksums only when required). */
  client(): S3Client;
  /** A new bucket with a unique name starting with `prefix`. */
  createBucket(prefix?: string): Promise<string>;
  /** The radosgw pid (SIGSTOP it to play a hung server; SIGCONT after). */
  rgwPid(): number;
  /** The OSD's pid: its RSS is what the memstore holds (bench -- scale sizes it). */
  osdPid(): number | undefined;
  /**
   * The requests radosgw answered so far, from its access log (the beast frontend logs one line
   * each): a witness of what a client sent that does not ask the client.
   */
  requestLog(): { method: string; path: string; status: number }[];
  /** How long `start` took, in ms (the report's figure). */
  startMs: number;
  close(): Promise<void>;
}

/** Starts a fresh cluster on free ports; `memMiB` is the OSD's memstore size (objects live in its RAM). */
export async function startS3(options: { memMiB?: number } = {}): Promise<S3Server> {
  const dir = tempDir('pullmirror-s3');
  const stateDir = path.join(dir.path, 'ceph');
  const port = await freePort();
  let monPort = await freePort();
  while (monPort === port) monPort = await freePort();
  const accessKeyId = `pm${randomBytes(6).toString('hex')}`;
  const secretAccessKey = randomBytes(20).toString('hex');
  const scriptEnv = {
    ...process.env,
    S3_CEPH_PORT: String(port),
    S3_CEPH_MON_PORT: String(monPort),
    S3_CEPH_ACCESS_KEY: accessKeyId,
    S3_CEPH_SECRET_KEY: secretAccessKey,
    S3_CEPH_MEM_MIB: String(options.memMiB ?? 2048),
    S3_CEPH_TIMEOUT: '90',
  };
  const script = (command: string) => run('bash', [SCRIPT, command, stateDir], { env: scriptEnv, timeout: 120_000, maxBuffer: 1 << 20 });
  const started = performance.now();
  installExitHook(stateDir);
  try {
    await script('start');
  } catch (error) {
    const { stderr } = error as { stderr?: string };
    await script('stop').catch(() => undefined);
    liveStateDirs.delete(stateDir);
    await dir.cleanup();
    throw new Error(`s3-ceph.sh start failed:\n${stderr ?? String(error)}`, { cause: error });
  }
  const startMs = Math.round(performance.now() - started);
  const { stdout } = await script('env');
  const env = Object.fromEntries([...stdout.matchAll(/^export ([A-Z0-9_]+)=(.*)$/gm)].map((m) => [m[1], m[2]]));
  const endpoint = `http://127.0.0.1:${port}`;
  const region = 'us-east-1';
  const clients: S3Client[] = [];
  const client = () => {
    const c = new S3Client({
      endpoint,
      region,
      forcePathStyle: true,
      credentials: { accessKeyId, secretAccessKey },
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    clients.push(c);
    return c;
  };
  const admin = client();
  let closed = false;
  return {
    endpoint,
    port,
    region,
    accessKeyId,
    secretAccessKey,
    env,
    client,
    startMs,
    requestLog: () => {
      let text: string;
      try {
        text = readFileSync(path.join(stateDir, 'log', 'client.rgw.a.log'), 'utf8');
      } catch {
        return [];
      }
      return [...text.matchAll(/ beast: \S+ \S+ - \S+ \[[^\]]*\] "([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) /g)].map((m) => ({ method: m[1], path: m[2], status: Number(m[3]) }));
    },
    rgwPid: () => recordedPids(stateDir).find((p) => p.name === 'rgw')!.pid,
    osdPid: () => recordedPids(stateDir).find((p) => p.name.startsWith('osd'))?.pid,
    async createBucket(prefix = 'test') {
      const bucket = `${prefix}-${randomBytes(4).toString('hex')}`;
      await admin.send(new CreateBucketCommand({ Bucket: bucket }));
      return bucket;
    },
    async close() {
      if (closed) return;
      closed = true;
      for (const c of clients) c.destroy();
      // A paused radosgw would not stop on SIGTERM.
      for (const { pid } of recordedPids(stateDir)) signal(pid, 'SIGCONT');
      await script('stop').catch(() => undefined);
      liveStateDirs.delete(stateDir);
      await dir.cleanup();
    },
  };
}

/** A blob's key in the store's layout: …/blobs/sha256/ab/abcdef… (src/storage/paths.ts). */
const BLOB_KEY = /(?:^|\/)blobs\/sha256\/[0-9a-f]{2}\/([0-9a-f]{64})$/;

/**
 * What a bucket holds that it must not: every blob object is read whole and hashed against the
 * digest its key names (a partial or unverified object shows here). `objects`: how many blobs.
 */
export async function bucketProblems(s3: S3Server, bucket: string): Promise<{ objects: number; bad: string[] }> {
  const client = s3.client();
  const bad: string[] = [];
  let objects = 0;
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, ContinuationToken: token }));
    for (const { Key } of page.Contents ?? []) {
      const hex = BLOB_KEY.exec(Key ?? '')?.[1];
      if (!hex) continue;
      objects++;
      const body = (await client.send(new GetObjectCommand({ Bucket: bucket, Key }))).Body as Readable;
      const hash = createHash('sha256');
      for await (const chunk of body) hash.update(chunk as Buffer);
      if (hash.digest('hex') !== hex) bad.push(Key!);
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token);
  return { objects, bad };
}

/** Multipart uploads begun in the bucket and neither completed nor aborted (ListMultipartUploads). */
export async function uploadsLeft(s3: S3Server, bucket: string): Promise<number> {
  const page = await s3.client().send(new ListMultipartUploadsCommand({ Bucket: bucket }));
  return page.Uploads?.length ?? 0;
}

interface RecordedPid {
  name: string;
  pid: number;
  /** /proc/<pid>/stat's start time when the script recorded it: a reused pid is never signalled. */
  start: string;
}

/** The daemons the script recorded in `stateDir/pids` that still run as those processes. */
function recordedPids(stateDir: string): RecordedPid[] {
  let names: string[];
  try {
    names = readdirSync(path.join(stateDir, 'pids'));
  } catch {
    return [];
  }
  const pids: RecordedPid[] = [];
  for (const file of names) {
    try {
      const [pid, start] = readFileSync(path.join(stateDir, 'pids', file), 'utf8').trim().split(/\s+/);
      if (!/^\d+$/.test(pid) || startTime(Number(pid)) !== start) continue;
      pids.push({ name: file.replace(/\.pid$/, ''), pid: Number(pid), start });
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function startTime(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch {
    // already gone
  }
}

const liveStateDirs = new Set<string>();
let hookInstalled = false;
function installExitHook(stateDir: string): void {
  liveStateDirs.add(stateDir);
  if (hookInstalled) return;
  hookInstalled = true;
  process.on('exit', () => {
    for (const dir of liveStateDirs) for (const { pid } of recordedPids(dir)) signal(pid, 'SIGKILL');
  });
}
