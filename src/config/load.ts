import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ignoredKeyWarnings } from './ignored-keys.ts';
import { configSchema, SECRET_KEYS, type Config } from './schema.ts';
import { namesKey, takesStructure } from './schema-paths.ts';
import { resolveSecretFiles } from './secret-files.ts';
import { arrayField, fields, stringField } from '../util/untrusted-json.ts';

/** Thrown for any bad configuration; its message names the offending key, and never a URL's user:password. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(redactUserinfo(message));
    this.name = 'ConfigError';
  }
}

const ENV_PREFIX = 'REGISTRY_';

export interface LoadOptions {
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Receives what does not stop start-up but should be said: stray variables, ignored keys. */
  warnings?: string[];
  /**
   * false: password files (proxy.passwordfile) are not read, for a command that contacts no
   * upstream (client-config: a node's DaemonSet has the config, not the mirror's Secret).
   */
  secrets?: boolean;
}

/**
 * Loads the configuration: the schema's defaults, then the YAML file if one is given, then
 * REGISTRY_* environment variables the distribution way (REGISTRY_PROXY_REMOTEURL sets
 * proxy.remoteurl). An env value that is YAML for a mapping or a list sets a whole section.
 *
 * A variable that names no key (Kubernetes' REGISTRY_PORT and REGISTRY_SERVICE_HOST for a
 * Service called registry, podman's REGISTRY_AUTH_FILE) is not ours: it is named in a warning
 * and ignored. An unknown key in the file still stops start-up, and every error a variable
 * caused names the variable.
 */
export function loadConfig(options: LoadOptions = {}): Config {
  const warnings = options.warnings ?? [];
  const env = options.env ?? process.env;
  let raw: Record<string, unknown> = {};
  if (options.file) {
    let text: string;
    try {
      text = readFileSync(options.file, 'utf8');
    } catch (error) {
      throw new ConfigError(`cannot read config file ${options.file}: ${(error as Error).message}`);
    }
    try {
      raw = (parseYaml(text) as Record<string, unknown> | null) ?? {};
    } catch (error) {
      throw new ConfigError(`config file ${options.file} is not valid YAML: ${(error as Error).message}`);
    }
    if (typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError(`config file ${options.file} must hold a mapping`);
  }
  const fromEnv = new Map<string, string>();
  for (const [name, value] of Object.entries(env)) {
    if (!name.startsWith(ENV_PREFIX) || value === undefined) continue;
    const path = name.slice(ENV_PREFIX.length).toLowerCase().split('_');
    if (!namesKey(path)) {
      warnings.push(`${name} names no configuration key; ignored`);
      continue;
    }
    setPath(raw, path, takesStructure(path) ? envValue(value) : value);
    fromEnv.set(path.join('.'), name);
  }
  // The usual REDIS_URL of container platforms, unless the distribution-style name is set.
  if (env.REDIS_URL && env.REGISTRY_REDIS_URL === undefined) {
    setPath(raw, ['redis', 'url'], env.REDIS_URL);
    fromEnv.set('redis.url', 'REDIS_URL');
  }
  const storageRaw = raw.storage as Record<string, unknown> | undefined;
  if (storageRaw?.filesystem != null && storageRaw.s3 != null) {
    const source = (key: string) => {
      const variable = sourceOf(key, fromEnv);
      return variable ? ` (from ${variable})` : '';
    };
    throw new ConfigError(`invalid configuration:\n  storage.s3${source('storage.s3')}: one storage driver at a time: storage.filesystem${source('storage.filesystem')} is set too`);
  }
  const config = validate(raw, fromEnv);
  const namespaceWarning = unstatedNamespaceWarning(raw, config);
  if (namespaceWarning) warnings.push(namespaceWarning);
  warnings.push(...ignoredKeyWarnings(raw));
  // distribution redirects from any driver with URLs; the filesystem store has none to give.
  if (!config.storage.redirect.disable && !config.storage.s3) warnings.push('storage.redirect.disable is false, but the filesystem store has no URL a client could fetch from: pullmirror serves every blob itself');
  if (options.secrets === false) return config;
  return resolveSecretFiles(config, (message) => new ConfigError(withSource(message, fromEnv)));
}

/**
 * A remoteurl that is not Docker Hub, without proxy.namespace, is served as the registry its
 * host names. That is right for ghcr.io, and a trap for a company's Docker Hub proxy
 * (`alpine` is no library/alpine, containerd's ?ns=docker.io finds nothing): said at every
 * start and by config check, until the namespace is written down either way.
 */
function unstatedNamespaceWarning(raw: Record<string, unknown>, config: Config): string | undefined {
  const proxy = raw.proxy as Record<string, unknown> | undefined;
  if (proxy?.namespace !== undefined || config.proxy.namespace === 'docker.io') return undefined;
  const ns = config.proxy.namespace;
  return (
    `proxy.remoteurl ${new URL(config.proxy.remoteurl).origin} is not Docker Hub and proxy.namespace is not set: ` +
    `it is served as the registry ${ns} (containerd's ?ns=${ns}; "alpine" is not library/alpine). ` +
    `If it is a Docker Hub proxy, set proxy.namespace: docker.io (REGISTRY_PROXY_NAMESPACE=docker.io); if it is ${ns} itself, set proxy.namespace: ${ns}`
  );
}

/** `proxy.passwordfile: …` → `proxy.passwordfile (from REGISTRY_PROXY_PASSWORDFILE): …` when a variable set it. */
function withSource(message: string, fromEnv: Map<string, string>): string {
  const key = /^([a-z0-9.]+):/.exec(message)?.[1];
  const source = key ? sourceOf(key, fromEnv) : undefined;
  return source ? `${key} (from ${source})${message.slice(key!.length)}` : message;
}

/**
 * The variables behind a key: the one that set it, or set a section holding it
 * (REGISTRY_PROXY_WARM={…} for proxy.warm.schedule), or set something inside it.
 */
function sourceOf(key: string, fromEnv: Map<string, string>): string | undefined {
  const exact = fromEnv.get(key);
  if (exact) return exact;
  const names = [...fromEnv].filter(([path]) => key.startsWith(`${path}.`) || (key !== '' && path.startsWith(`${key}.`))).map(([, name]) => name);
  return names.length > 0 ? names.join(', ') : undefined;
}

/** A variable's value for a key that takes a section or a list: YAML for one, else the text. */
function envValue(value: string): unknown {
  // Scalars stay strings (the schema converts numbers and booleans).
  try {
    const parsed: unknown = parseYaml(value);
    if (parsed !== null && typeof parsed === 'object') return parsed;
  } catch {
    // not YAML: a plain string
  }
  return value;
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (next === null || typeof next !== 'object' || Array.isArray(next)) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]] = value;
}

function validate(raw: unknown, fromEnv: Map<string, string>): Config {
  const result = configSchema.safeParse(raw, { reportInput: true });
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => describeIssue(issue, fromEnv));
  throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
}

function describeIssue(issue: z.core.$ZodIssue, fromEnv: Map<string, string>): string {
  const keys = issue.code === 'unrecognized_keys' ? issue.keys.map((key) => [...issue.path, key].join('.')) : [issue.path.join('.')];
  return keys
    .map((key) => {
      const variable = sourceOf(key, fromEnv);
      const source = variable ? ` (from ${variable})` : '';
      const what = issue.code === 'unrecognized_keys' ? 'unknown key' : describeValueIssue(key, issue);
      return `${key || '(root)'}${source}: ${what}`;
    })
    .join('\n  ');
}

/** The issue's message with the value it was given (`expected boolean, got "maybe"`); a secret's value is never shown. */
function describeValueIssue(key: string, issue: z.core.$ZodIssue): string {
  const input = (issue as { input?: unknown }).input;
  const secret = SECRET_KEYS.some((name) => secretPattern(name).test(key));
  // Scalars only: a section (storage.s3 with its secretkey) may hold secrets of its own.
  const scalar = typeof input === 'string' || typeof input === 'number' || typeof input === 'boolean';
  // Redacted before it is cut short, so no cut leaves a password without its "@".
  const json = !scalar || secret ? undefined : redactUserinfo(JSON.stringify(input));
  if (json === undefined) return issue.message;
  const text = json.length > 80 ? `${json.slice(0, 77)}...` : json;
  if (issue.code === 'invalid_type') return `expected ${issue.expected}, got ${text}`;
  if (issue.message.includes(String(input))) return issue.message;
  return `${issue.message}, got ${text}`;
}

/**
 * `scheme://user:password@host` → `scheme://***@host`, wherever a URL is quoted: a rejected
 * remoteurl (a typo in the scheme, a space) still carries the upstream account's password.
 * Everything from `://` to the last `@` before a space or quote goes, so a password holding
 * `@` or `/` goes whole.
 */
export function redactUserinfo(text: string): string {
  return text.replace(/([a-z][a-z0-9+.-]*:\/\/)[^\s"'`]*@/gi, '$1***@');
}

/** A SECRET_KEYS entry as a pattern of key paths: `*` is any one component (a list index), and keys below it count. */
function secretPattern(name: string): RegExp {
  return new RegExp(`^${name.split('.').map((part) => (part === '*' ? '[^.]+' : part)).join('\\.')}(\\.|$)`);
}

/** A copy of the config fit for printing: every secret replaced by "*****". */
export function maskSecrets(config: Config): unknown {
  const copy = structuredClone(config) as Record<string, unknown>;
  const mask = (node: unknown, path: string[]): void => {
    if (node === null || typeof node !== 'object') return;
    const record = node as Record<string, unknown>;
    const [part, ...rest] = path;
    const children = part === '*' ? Object.keys(record) : [part];
    for (const child of children) {
      if (rest.length > 0) mask(record[child], rest);
      else if (record[child] !== undefined) record[child] = '*****';
    }
  };
  for (const key of SECRET_KEYS) mask(copy, key.split('.'));
  // A password written into an upstream URL (https://user:secret@host) is a secret too.
  const proxy = fields(copy.proxy);
  for (const upstream of [proxy, ...(arrayField(proxy, 'remotes') ?? []).map(fields)]) {
    const remote = stringField(upstream, 'remoteurl');
    if (upstream && remote !== undefined && URL.canParse(remote)) {
      const url = new URL(remote);
      if (url.password) {
        url.password = '*****';
        (upstream as Record<string, unknown>).remoteurl = url.toString();
      }
    }
  }
  return copy;
}
