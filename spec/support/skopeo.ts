/**
 * Drive the real `skopeo` (containers/image) as an independent registry client.
 *
 * Why: pulling through the mirror with a client we did not write (Bearer
 * flow, manifest negotiation, digest checks on every blob) proves the mirror
 * speaks the registry protocol, not just our own idea of it. The `dir:`
 * transport leaves plain files we can re-verify by digest.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { sha256Digest } from './images.ts';
import { privateMounts } from './private-mounts.ts';
import { tempDir } from './processes.ts';

export interface SkopeoCopyOptions {
  /** Copy every instance of a manifest list / index (`--all`). */
  all?: boolean;
  /** "user:password" for the source registry; without it the copy is anonymous (`--src-no-creds`). */
  srcCreds?: string;
  destCreds?: string;
  srcTlsVerify?: boolean;
  destTlsVerify?: boolean;
  /** Pick this platform from a list when not copying `--all` (defaults to the host's). */
  overrideArch?: string;
  overrideOs?: string;
  /** Kill skopeo after this long (default 120 s). */
  timeoutMs?: number;
  /** skopeo's own --retry-times (default 0: a failure must surface, not be papered over). */
  retryTimes?: number;
  extraArgs?: string[];
  /** The registries.conf skopeo reads (mirrors, say); empty when absent, so the host's cannot interfere. */
  registriesConf?: string;
  /** Files of the registries.d skopeo reads, by name (`mirror.yaml` with `use-sigstore-attachments`, say); empty when absent. */
  registriesD?: Record<string, string>;
}

export interface SkopeoResult {
  stdout: string;
  stderr: string;
  args: string[];
}

/**
 * `skopeo copy SRC DEST`; rejects with skopeo's stderr on failure. Runs with
 * `--insecure-policy` so the host's /etc/containers/policy.json cannot break
 * (or silently change) tests, and with an empty registries.conf,
 * registries.conf.d and registries.d of its own so host mirror or lookaside
 * settings cannot either.
 *
 * Nothing is written outside a temp dir of its own (removed afterwards):
 * temp files go to `--tmpdir`/TMPDIR, HOME and XDG_* point there, and the blob
 * info cache, which containers/image keeps in /var/lib/containers/cache for
 * root whatever the flags or environment say, lands in a bind mount over
 * /var/lib seen only by this skopeo (see private-mounts.ts).
 */
export async function skopeoCopy(srcRef: string, destRef: string, opts: SkopeoCopyOptions = {}): Promise<SkopeoResult> {
  const own = tempDir('pullmirror-skopeo');
  try {
    return await runSkopeoCopy(own.path, srcRef, destRef, opts);
  } finally {
    await own.cleanup();
  }
}

function runSkopeoCopy(own: string, srcRef: string, destRef: string, opts: SkopeoCopyOptions): Promise<SkopeoResult> {
  const registriesConf = path.join(own, 'registries.conf');
  writeFileSync(registriesConf, opts.registriesConf ?? '');
  const env = {
    ...process.env,
    TMPDIR: path.join(own, 'tmp'),
    HOME: path.join(own, 'home'),
    XDG_CONFIG_HOME: path.join(own, 'config'),
    XDG_DATA_HOME: path.join(own, 'data'),
    XDG_RUNTIME_DIR: path.join(own, 'run'),
  };
  const registriesD = path.join(own, 'registries.d');
  for (const dir of [env.TMPDIR, registriesD]) mkdirSync(dir);
  for (const [file, content] of Object.entries(opts.registriesD ?? {})) writeFileSync(path.join(registriesD, path.basename(file)), content);
  // --registries-conf is hidden in skopeo 1.9 but works; CONTAINERS_REGISTRIES_CONF is ignored there.
  const args = ['--insecure-policy', '--registries-conf', registriesConf, '--registries.d', registriesD, '--tmpdir', env.TMPDIR];
  if (opts.overrideArch) args.push('--override-arch', opts.overrideArch);
  if (opts.overrideOs) args.push('--override-os', opts.overrideOs);
  args.push('copy', '--retry-times', String(opts.retryTimes ?? 0));
  if (opts.all) args.push('--all');
  if (srcRef.startsWith('docker://')) {
    args.push(`--src-tls-verify=${opts.srcTlsVerify ?? false}`);
    args.push(...(opts.srcCreds !== undefined ? ['--src-creds', opts.srcCreds] : ['--src-no-creds']));
  }
  if (destRef.startsWith('docker://')) {
    args.push(`--dest-tls-verify=${opts.destTlsVerify ?? false}`);
    args.push(...(opts.destCreds !== undefined ? ['--dest-creds', opts.destCreds] : ['--dest-no-creds']));
  }
  args.push(...(opts.extraArgs ?? []), srcRef, destRef);
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const binds = [{ over: '/var/lib', from: path.join(own, 'var-lib') }];
  // The registries.conf.d drop-ins are read from here whatever --registries-conf says.
  if (existsSync('/etc/containers')) binds.push({ over: '/etc/containers', from: path.join(own, 'etc-containers') });
  const [cmd, cmdArgs] = privateMounts('skopeo', args, binds);
  return new Promise((resolve, reject) => {
    execFile(cmd, cmdArgs, { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const why = err.killed ? `timed out after ${timeoutMs} ms` : `exit ${String(err.code)}`;
        reject(new Error(`skopeo ${args.join(' ')} failed (${why}):\n${stderr || stdout}`));
        return;
      }
      resolve({ stdout, stderr, args });
    });
  });
}

export interface DirManifest {
  bytes: Buffer;
  digest: string;
  mediaType?: string;
}

export interface DirImage {
  /** `manifest.json`: the image manifest, or the list/index when copied with --all. */
  manifest: DirManifest;
  /** Per-instance manifests from an --all copy (`<hex>.manifest.json`), keyed by digest. */
  instances: Map<string, DirManifest>;
  /** Blob files (named by hex digest), verified: digest → size. */
  blobs: Map<string, number>;
}

async function fileSha256(file: string): Promise<{ hex: string; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of createReadStream(file)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { hex: hash.digest('hex'), size };
}

function asManifest(bytes: Buffer): DirManifest {
  let mediaType: string | undefined;
  try {
    mediaType = (JSON.parse(bytes.toString('utf8')) as { mediaType?: string }).mediaType;
  } catch {
    // not JSON; leave undefined
  }
  return { bytes, digest: sha256Digest(bytes), mediaType };
}

/**
 * Read skopeo's `dir:` output. Layout (containers/image dir transport 1.1):
 *   version                       "Directory Transport Version: 1.1"
 *   manifest.json                 top-level manifest (list/index with --all)
 *   <hex>.manifest.json           instance manifests (only with --all), hex = digest without "sha256:"
 *   <hex>                         config and layer blobs, named by sha256 hex
 *   signature-N / <hex>.signature-N   signatures, if any
 * Throws if a blob's or instance manifest's content does not match its name.
 */
export async function readDirImage(dir: string): Promise<DirImage> {
  const manifest = asManifest(await readFile(path.join(dir, 'manifest.json')));
  const instances = new Map<string, DirManifest>();
  const blobs = new Map<string, number>();
  for (const entry of await readdir(dir)) {
    const inst = /^([a-f0-9]{64})\.manifest\.json$/.exec(entry);
    if (inst) {
      const m = asManifest(await readFile(path.join(dir, entry)));
      if (m.digest !== `sha256:${inst[1]}`) throw new Error(`dir image ${dir}: ${entry} has digest ${m.digest}`);
      instances.set(m.digest, m);
      continue;
    }
    if (/^[a-f0-9]{64}$/.test(entry)) {
      const { hex, size } = await fileSha256(path.join(dir, entry));
      if (hex !== entry) throw new Error(`dir image ${dir}: blob ${entry} has sha256 ${hex}`);
      blobs.set(`sha256:${entry}`, size);
    }
  }
  return { manifest, instances, blobs };
}
