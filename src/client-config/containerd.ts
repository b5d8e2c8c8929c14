import type { MirrorUrl } from './mirror-url.ts';
import type { ClientConfig } from './client-config.ts';
import { tomlString } from './client-config.ts';
import type { ServedRegistry } from './registries.ts';

/** containerd's usual `config_path` (CRI's `registry.config_path`, `ctr --hosts-dir`). */
export const CONTAINERD_CONFIG_PATH = '/etc/containerd/certs.d';

/**
 * One hosts.toml per registry (`<config_path>/<namespace>/hosts.toml`): the mirror as the only
 * host tried first, for pull and resolve, the registry itself as `server` after it. containerd
 * sends `?ns=<namespace>` to the mirror, which routes by it; a registry the mirror cannot
 * answer for gets a 404 there and the client goes on to `server`.
 */
export function containerdConfig(registries: ServedRegistry[], mirror: MirrorUrl, configPath = CONTAINERD_CONFIG_PATH): ClientConfig {
  const files = registries.map((registry) => {
    const relative = `${registry.namespace}/hosts.toml`;
    const content = [`server = ${tomlString(registry.server)}`, '', `[host.${tomlString(mirror.origin)}]`, '  capabilities = ["pull", "resolve"]', ''].join('\n');
    return { path: `${configPath.replace(/\/+$/, '')}/${relative}`, relative, content };
  });
  const notes = [
    `containerd reads these with config_path = ${tomlString(configPath)} in /etc/containerd/config.toml, under [plugins."io.containerd.grpc.v1.cri".registry] (containerd 2: [plugins."io.containerd.cri.v1.images".registry]); ctr images pull takes --hosts-dir ${configPath}`,
  ];
  return { files, notes };
}
