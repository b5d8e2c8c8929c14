/** What a generator makes for one client kind: the files to install and what to tell the user. */
export interface ClientConfig {
  files: ConfigFile[];
  /**
   * What the files cannot say (daemon.json allows no comments, and dockerd refuses unknown
   * keys): where other registries are reached, what else to set. stderr of the CLI, `notes`
   * of the JSON answer.
   */
  notes: string[];
}

interface ConfigFile {
  /** Where the client reads it: `/etc/containerd/certs.d/ghcr.io/hosts.toml`. */
  path: string;
  /** The same path below the client's config directory: `ghcr.io/hosts.toml` (what `--out DIR` writes). */
  relative: string;
  content: string;
}

/**
 * The text the CLI prints and /api/client-config answers, byte for byte the same: a lone JSON
 * file as it is (JSON has no comments), TOML files each after a comment line naming its path,
 * a blank line between them. Every file ends with a newline.
 */
export function renderClientConfig(config: ClientConfig): string {
  if (config.files.length === 1 && config.files[0].path.endsWith('.json')) return config.files[0].content;
  return config.files.map((file) => `# ${file.path}\n${file.content}`).join('\n');
}

/**
 * A TOML basic string. JSON's string syntax is a subset of TOML's for what is quoted here
 * (hosts and URLs: no control characters, no `\/`), so JSON.stringify quotes it correctly.
 */
export function tomlString(value: string): string {
  return JSON.stringify(value);
}
