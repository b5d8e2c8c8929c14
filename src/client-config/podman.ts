import type { MirrorUrl } from './mirror-url.ts';
import type { ClientConfig } from './client-config.ts';
import { tomlString } from './client-config.ts';
import type { ServedRegistry } from './registries.ts';

/** A drop-in podman, skopeo and buildah read beside /etc/containers/registries.conf. */
const PODMAN_CONFIG_FILE = '/etc/containers/registries.conf.d/pullmirror.conf';

/**
 * registries.conf: a `[[registry]]` per registry (its prefix, its own location) with the mirror
 * as its `[[registry.mirror]]`. containers/image prepends the mirror location's path to the
 * repository, so the default remote's mirror is the bare host (`/v2/<name>` routes there) and
 * every other registry's is `host/<namespace>` (`/v2/<namespace>/<name>`).
 */
export function podmanConfig(registries: ServedRegistry[], mirror: MirrorUrl): ClientConfig {
  const blocks = registries.map((registry) => {
    const location = registry.isDefault ? mirror.host : `${mirror.host}/${registry.namespace}`;
    return [
      '[[registry]]',
      `prefix = ${tomlString(registry.namespace)}`,
      `location = ${tomlString(new URL(registry.server).host)}`,
      ...(registry.server.startsWith('http:') ? ['insecure = true'] : []),
      '',
      '[[registry.mirror]]',
      `location = ${tomlString(location)}`,
      ...(mirror.insecure ? ['insecure = true'] : []),
      '',
    ].join('\n');
  });
  const relative = PODMAN_CONFIG_FILE.split('/').pop()!;
  return { files: [{ path: PODMAN_CONFIG_FILE, relative, content: blocks.join('\n') }], notes: [] };
}
