import type { MirrorUrl } from './mirror-url.ts';
import type { ClientConfig } from './client-config.ts';
import type { ServedRegistry } from './registries.ts';

const DOCKER_CONFIG_FILE = '/etc/docker/daemon.json';

/**
 * daemon.json for dockerd. dockerd applies `registry-mirrors` to docker.io images only and asks
 * the mirror with no registry in the path, so it is set only when the default remote (the
 * mirror's root) is Docker Hub: otherwise Docker Hub names would get another registry's images.
 * Every other registry is pulled from the mirror by name (`docker pull HOST/ghcr.io/owner/image`,
 * the path prefix the mirror routes by); over plain HTTP that needs `insecure-registries`,
 * which is then set for the mirror's host and nothing else. daemon.json takes no comments and
 * dockerd refuses unknown keys, so the explanation is in the notes.
 */
export function dockerConfig(registries: ServedRegistry[], mirror: MirrorUrl): ClientConfig {
  const daemon: Record<string, string[]> = {};
  const notes: string[] = [];
  const mirrored = (registry: ServedRegistry) => registry.isDefault && registry.namespace === 'docker.io';
  const others = registries.filter((registry) => !mirrored(registry));
  if (registries.some(mirrored)) {
    daemon['registry-mirrors'] = [mirror.origin];
  } else {
    const root = registries.find((registry) => registry.isDefault)!;
    notes.push(
      `no registry-mirrors: dockerd mirrors only docker.io and asks the mirror's root, which serves ${root.namespace} here (proxy.namespace); Docker Hub images would come from the wrong registry`,
    );
  }
  if (others.length > 0) {
    if (mirror.insecure) daemon['insecure-registries'] = [mirror.host];
    const how = others.map((registry) => {
      const alias = registry.prefix ? ` (or ${mirror.host}/${registry.prefix}/OWNER/IMAGE:TAG)` : '';
      return `${registry.namespace}: docker pull ${mirror.host}/${registry.namespace}/OWNER/IMAGE:TAG${alias}`;
    });
    notes.push(
      `dockerd applies registry-mirrors to docker.io only; pull the other registries through the mirror by name${mirror.insecure ? ` (plain HTTP: hence insecure-registries ${mirror.host})` : ''}:`,
      ...how.map((line) => `  ${line}`),
    );
  }
  return { files: [{ path: DOCKER_CONFIG_FILE, relative: 'daemon.json', content: `${JSON.stringify(daemon, null, 2)}\n` }], notes };
}
