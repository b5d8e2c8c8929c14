import type { Config } from '../config/schema.ts';
import type { ClientConfig } from './client-config.ts';
import { containerdConfig } from './containerd.ts';
import { dockerConfig } from './docker.ts';
import type { MirrorUrl } from './mirror-url.ts';
import { podmanConfig } from './podman.ts';
import { servedRegistries } from './registries.ts';

/** The client kinds there are generators for, in the order help texts and errors list them. */
export const CLIENT_KINDS = ['docker', 'containerd', 'podman'] as const;
export type ClientKind = (typeof CLIENT_KINDS)[number];

export function isClientKind(kind: string): kind is ClientKind {
  return (CLIENT_KINDS as readonly string[]).includes(kind);
}

interface GenerateOptions {
  /** containerd's config_path, named in each file's header (default /etc/containerd/certs.d). */
  containerdConfigPath?: string;
}

/**
 * What a client of `kind` needs to pull every registry `config` serves through the mirror at
 * `mirror`: a pure function of the two, so the CLI and the HTTP endpoint say the same.
 */
export function generateClientConfig(kind: ClientKind, config: Config, mirror: MirrorUrl, options: GenerateOptions = {}): ClientConfig {
  const registries = servedRegistries(config);
  switch (kind) {
    case 'docker':
      return dockerConfig(registries, mirror);
    case 'containerd':
      return containerdConfig(registries, mirror, options.containerdConfigPath);
    case 'podman':
      return podmanConfig(registries, mirror);
  }
}
