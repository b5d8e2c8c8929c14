/**
 * Drive the real `podman` (4.3, containers/image and containers/storage) as a client: `podman
 * pull` into an image store of its own (vfs, no daemon, no network), reading only the
 * registries.conf and registries.d it is given.
 *
 * Why podman beside skopeo: it stores what it pulled, signatures included, in
 * containers/storage, which is what a podman host keeps. Debian's podman has sigstore
 * verification patched out and cannot copy a pulled image out with its signatures (the layers
 * it stores uncompressed would have to change, "Would invalidate signatures"), so the stored
 * signatures are read from the store's own record: `images.json` (each image's
 * `signature-sizes`) and the image's `signatures` file, the blobs one after another.
 *
 * As root, podman runs in a mount namespace of its own (private-mounts.ts) with /var/lib and
 * /etc/containers replaced by directories of the temp dir, so neither the host's configuration
 * nor its image store is read or written.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { privateMounts } from './private-mounts.ts';
import { tempDir, type TempDir } from './processes.ts';

export interface PodmanOptions {
  /** registries.conf (a mirror, say); empty when absent. */
  registriesConf?: string;
  /** registries.d files by name (read from HOME/.config/containers/registries.d); none when absent. */
  registriesD?: Record<string, string>;
}

export interface PulledImage {
  /** The image's ID in the store (its config digest's hex). */
  id: string;
  /** The manifest digest podman recorded for it. */
  digest: string;
  /** The signatures stored with it, each as containers/image serializes one (skopeo's signature-N bytes). */
  signatures: Buffer[];
}

export interface Podman {
  /** `podman pull REF` over plain HTTP with an accept-anything policy; rejects with podman's stderr. */
  pull(ref: string, timeoutMs?: number): Promise<PulledImage>;
  /** Removes the store and everything else podman wrote. */
  cleanup(): Promise<void>;
}

export function startPodman(options: PodmanOptions = {}): Podman {
  const own: TempDir = tempDir('pullmirror-podman');
  const dir = (...parts: string[]) => path.join(own.path, ...parts);
  const registriesD = dir('home', '.config', 'containers', 'registries.d');
  for (const made of [registriesD, dir('root'), dir('runroot'), dir('tmp')]) mkdirSync(made, { recursive: true });
  for (const [file, content] of Object.entries(options.registriesD ?? {})) writeFileSync(path.join(registriesD, path.basename(file)), content);
  writeFileSync(dir('registries.conf'), options.registriesConf ?? '');
  writeFileSync(dir('policy.json'), JSON.stringify({ default: [{ type: 'insecureAcceptAnything' }] }));
  writeFileSync(dir('storage.conf'), `[storage]\ndriver = "vfs"\nrunroot = ${JSON.stringify(dir('runroot'))}\ngraphroot = ${JSON.stringify(dir('root'))}\n`);
  const env = {
    ...process.env,
    HOME: dir('home'),
    TMPDIR: dir('tmp'),
    XDG_RUNTIME_DIR: dir('runroot'),
    XDG_CONFIG_HOME: dir('home', '.config'),
    CONTAINERS_REGISTRIES_CONF: dir('registries.conf'),
    CONTAINERS_STORAGE_CONF: dir('storage.conf'),
    CONTAINERS_CONF: dir('containers.conf'),
  };
  writeFileSync(env.CONTAINERS_CONF, '');
  const global = ['--root', dir('root'), '--runroot', dir('runroot'), '--storage-driver', 'vfs', '--tmpdir', dir('tmp'), '--events-backend', 'none', '--cgroup-manager', 'cgroupfs'];
  const binds = [
    { over: '/var/lib', from: dir('var-lib') },
    { over: '/etc/containers', from: dir('etc-containers') },
  ];

  const run = (args: string[], timeoutMs: number) => {
    const [cmd, cmdArgs] = privateMounts('podman', [...global, ...args], binds);
    return new Promise<string>((resolve, reject) => {
      execFile(cmd, cmdArgs, { env, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) => {
        if (error) reject(new Error(`podman ${args.join(' ')} failed (${error.killed ? `timed out after ${timeoutMs} ms` : `exit ${String(error.code)}`}):\n${stderr || stdout}`));
        else resolve(stdout);
      });
    });
  };

  return {
    async pull(ref, timeoutMs = 120_000) {
      const id = (await run(['pull', '--quiet', '--tls-verify=false', '--signature-policy', dir('policy.json'), ref], timeoutMs)).trim();
      const images = JSON.parse(readFileSync(dir('root', 'vfs-images', 'images.json'), 'utf8')) as { id: string; digest: string; metadata?: string }[];
      const image = images.find((entry) => entry.id === id);
      if (!image) throw new Error(`podman pull ${ref}: image ${id} not in the store's images.json`);
      const sizes = (JSON.parse(image.metadata ?? '{}') as { 'signature-sizes'?: number[] })['signature-sizes'] ?? [];
      const blob = sizes.length > 0 ? readFileSync(dir('root', 'vfs-images', id, 'signatures')) : Buffer.alloc(0);
      const signatures: Buffer[] = [];
      let offset = 0;
      for (const size of sizes) {
        signatures.push(blob.subarray(offset, offset + size));
        offset += size;
      }
      return { id, digest: image.digest, signatures };
    },
    cleanup: () => own.cleanup(),
  };
}
