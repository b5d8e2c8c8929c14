import { z } from 'zod';
import { formatGoDuration } from './duration.ts';
import { maskSecrets } from './load.ts';
import { configSchema, type Config } from './schema.ts';
import { def, variants, type Node } from './schema-paths.ts';

/*
 * The effective config as `config check` prints it: what the file would say to mean exactly
 * this config. The schema turns durations into milliseconds and sizes into bytes for the code;
 * printed that way they would not read back (a bare number is no duration), so each leaf the
 * schema marks as a duration or a size is written in the syntax the schema accepts. Secrets are
 * masked.
 */

type Format = 'duration' | 'size';

const formatMeta = (node: Node): Format | undefined => (z.globalRegistry.get(node as z.ZodType) as { format?: Format } | undefined)?.format;

const SIZE_UNITS: [string, number][] = [['TiB', 2 ** 40], ['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 2 ** 10]];

/** Bytes in the largest binary unit that divides them (`256MiB`), else the bare number. */
export function formatSize(bytes: number): string | number {
  for (const [unit, size] of SIZE_UNITS) if (bytes > 0 && bytes % size === 0) return `${bytes / size}${unit}`;
  return bytes;
}

function render(node: Node, value: unknown): unknown {
  if (value === undefined || value === null) return value;
  const all = variants(node);
  const format = all.map(formatMeta).find((f) => f !== undefined);
  if (format === 'duration' && typeof value === 'number') return formatGoDuration(value);
  if (format === 'size' && typeof value === 'number') return formatSize(value);
  if (Array.isArray(value)) {
    const list = all.find((n) => def(n).type === 'array');
    return list ? value.map((item) => render(def(list).element, item)) : value;
  }
  if (typeof value === 'object') {
    const object = all.find((n) => def(n).type === 'object');
    const record = all.find((n) => def(n).type === 'record');
    const out: Record<string, unknown> = {};
    for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
      const childNode: Node | undefined = object ? def(object).shape[key] : record ? def(record).valueType : undefined;
      out[key] = childNode ? render(childNode, child) : child;
    }
    return out;
  }
  return value;
}

/** The config to print: secrets masked, durations and sizes as a config file writes them. */
export function printableConfig(config: Config): unknown {
  type Upstream = { password?: unknown; passwordfile?: unknown };
  const masked = maskSecrets(config) as {
    proxy: Upstream & { remotes: Upstream[] };
    storage: { filesystem?: unknown; s3?: { secretkey?: unknown; secretkeyfile?: unknown } };
    http: { secret?: unknown; secretfile?: unknown };
  };
  // A password read from passwordfile is not written beside it: the file says where it comes from.
  for (const upstream of [masked.proxy, ...masked.proxy.remotes]) {
    if (upstream.passwordfile !== undefined) delete upstream.password;
  }
  if (masked.storage.s3?.secretkeyfile !== undefined) delete masked.storage.s3.secretkey;
  if (masked.http.secretfile !== undefined) delete masked.http.secret;
  // The store is the bucket: the filesystem section's defaults are not in use, and one driver is set at a time.
  if (masked.storage.s3 !== undefined) delete masked.storage.filesystem;
  return render(configSchema, masked);
}
