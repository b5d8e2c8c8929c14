import path from 'node:path';
import { renderClientConfig } from '../client-config/client-config.ts';
import { CONTAINERD_CONFIG_PATH } from '../client-config/containerd.ts';
import { CLIENT_KINDS, generateClientConfig, isClientKind } from '../client-config/generate.ts';
import { parseMirrorUrl } from '../client-config/mirror-url.ts';
import { writeFileAtomic } from '../storage/atomic-file.ts';
import { parseCommand, usageError, type CommandSpec } from './args.ts';
import { loadConfigOrExit } from './config-arg.ts';

export const CLIENT_CONFIG: CommandSpec = {
  name: 'client-config',
  synopsis: `${CLIENT_KINDS.join('|')} --mirror URL [options] [config.yml]`,
  description: `
Prints what a client needs to pull every registry the mirror serves (proxy and each of
proxy.remotes) through the mirror at URL, the address clients reach it by:
  docker      daemon.json: registry-mirrors (dockerd mirrors docker.io only; how to pull the
              others by name goes to stderr)
  containerd  one hosts.toml per registry for config_path, each after a line naming its path
  podman      registries.conf [[registry]] entries with the mirror as [[registry.mirror]],
              and registries.d/<mirror>.yaml with use-sigstore-attachments for the mirror's
              host, so signatures come through it (podman, skopeo, buildah)
The mirror's /api/client-config/KIND answers the same text. The config is the file given, else
PULLMIRROR_CONFIG, else the defaults, with REGISTRY_* variables over it.`,
  options: {
    mirror: { type: 'string', value: 'URL', help: "the mirror's URL as clients reach it, http or https, no path (required)" },
    out: {
      type: 'string',
      value: 'DIR',
      help: 'write the files below DIR (containerd: DIR/<registry>/hosts.toml; podman: DIR/registries.conf.d/pullmirror.conf and DIR/registries.d/<mirror>.yaml, DIR being /etc/containers), each atomically, instead of printing them',
    },
    'config-path': { type: 'string', value: 'DIR', help: "containerd's config_path, named in each file's header and in the note", defaultText: `the --out DIR, else ${CONTAINERD_CONFIG_PATH}` },
  },
  examples: [
    'pullmirror client-config containerd --mirror http://mirror.example:5000 /etc/pullmirror/config.yml',
    'pullmirror client-config containerd --mirror https://mirror.example --out /etc/containerd/certs.d',
    'pullmirror client-config docker --mirror http://mirror.example:5000 > /etc/docker/daemon.json',
    'pullmirror client-config podman --mirror http://mirror.example:5000 --out /etc/containers',
  ],
  maxPositionals: 2,
};

/** `pullmirror client-config KIND --mirror URL [config.yml]`: the text to stdout, notes to stderr; or the files under --out. */
export async function clientConfig(args: string[]): Promise<void> {
  const { values, positionals } = parseCommand(CLIENT_CONFIG, args);
  const [kind, file] = positionals;
  if (kind === undefined) usageError(CLIENT_CONFIG, `missing client kind: one of ${CLIENT_KINDS.join(', ')}`);
  if (!isClientKind(kind)) usageError(CLIENT_CONFIG, `unknown client kind "${kind}": one of ${CLIENT_KINDS.join(', ')}`);
  if (typeof values.mirror !== 'string') usageError(CLIENT_CONFIG, '--mirror URL is required (the address clients reach the mirror by, e.g. http://mirror.example:5000)');
  const mirror = parseMirrorUrl(values.mirror);
  if (!mirror.ok) usageError(CLIENT_CONFIG, `--mirror: ${mirror.error}`);
  // No upstream is contacted: the mirror's password file need not be there (a node's DaemonSet
  // mounts the config, not the Secret).
  const config = loadConfigOrExit(file, { secrets: false });
  // Files written below --out DIR are read by containerd from DIR: the header and the note name it.
  const configPath = typeof values['config-path'] === 'string' ? values['config-path'] : typeof values.out === 'string' ? path.resolve(values.out) : CONTAINERD_CONFIG_PATH;
  const generated = generateClientConfig(kind, config, mirror.url, { containerdConfigPath: configPath });
  for (const note of generated.notes) process.stderr.write(`pullmirror client-config: ${note}\n`);
  if (typeof values.out !== 'string') {
    process.stdout.write(renderClientConfig(generated));
    return;
  }
  for (const configFile of generated.files) {
    const target = path.join(values.out, configFile.relative);
    // In the target's own directory, so the rename stays on one filesystem: a client reading
    // the tree meanwhile sees each file whole, old or new.
    await writeFileAtomic(target, configFile.content, path.dirname(target));
    process.stdout.write(`${target}\n`);
  }
}
