import type { MirrorUrl } from './mirror-url.ts';
import type { ClientConfig } from './client-config.ts';
import { tomlString } from './client-config.ts';
import type { ServedRegistry } from './registries.ts';

/** Where podman, skopeo and buildah read their configuration: `--out DIR` stands for it. */
const CONTAINERS_DIR = '/etc/containers';
/** A drop-in read beside /etc/containers/registries.conf. */
const REGISTRIES_CONF = 'registries.conf.d/pullmirror.conf';

/**
 * registries.conf: a `[[registry]]` per registry (its prefix, its own location) with the mirror
 * as its `[[registry.mirror]]`. containers/image prepends the mirror location's path to the
 * repository, so the default remote's mirror is the bare host (`/v2/<name>` routes there) and
 * every other registry's is `host/<namespace>` (`/v2/<namespace>/<name>`).
 *
 * registries.d: `use-sigstore-attachments` for the mirror's host. containers/image looks a
 * registry's registries.d entry up by the host it actually pulls from, which through a mirror is
 * the mirror, not the registry the image is named by: without this entry a client gets no
 * signatures (`sha256-<hex>.sig`) through the mirror, whatever it set for the registry.
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
  const registriesD = `registries.d/${mirror.host}.yaml`;
  // A JSON string is a YAML double-quoted scalar; the quotes keep the port's colon from reading as a key's end.
  const attachments = ['docker:', `  ${JSON.stringify(mirror.host)}:`, '    use-sigstore-attachments: true', ''].join('\n');
  return {
    files: [
      { path: `${CONTAINERS_DIR}/${REGISTRIES_CONF}`, relative: REGISTRIES_CONF, content: blocks.join('\n') },
      { path: `${CONTAINERS_DIR}/${registriesD}`, relative: registriesD, content: attachments },
    ],
    notes: [],
  };
}
