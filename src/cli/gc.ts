import { parseDuration } from '../config/duration.ts';
import { sweep, sweepSettings, type SweepResult } from '../eviction/sweeper.ts';
import { createLogger } from '../logging/logger.ts';
import { StorePaths } from '../storage/paths.ts';
import { readStoreId } from '../storage/store-id.ts';
import { RedisDescriptorCache } from '../cache/redis-descriptor-cache.ts';
import { createRedisConnection } from '../redis/redis-connection.ts';
import { formatBytes } from '../util/format-bytes.ts';
import { parseCommand, usageError, type CommandSpec } from './args.ts';
import { loadConfigOrExit } from './config-arg.ts';

export const GC: CommandSpec = {
  name: 'gc',
  synopsis: '[options] [config.yml]',
  description: `
One eviction pass over the store, the one the scheduler runs (storage.delete.enabled need not be
set): tags and manifests unused for proxy.ttl, least recently used images past the size cap, then
every blob no remaining manifest references. Prints each item it removes, or would remove, with
sizes, and how many items the grace period (storage.eviction.grace) holds back and until when.
Safe beside a running mirror on the same store. The config is the file given, else
PULLMIRROR_CONFIG, else the defaults, with REGISTRY_* variables over it.`,
  options: {
    'dry-run': { type: 'boolean', short: 'n', help: 'list what would be removed; remove nothing' },
    now: {
      type: 'string',
      value: 'TIME',
      help: 'measure the TTL from this moment: an ISO date, epoch milliseconds, or +DURATION from now (+200h)',
      defaultText: 'now',
    },
  },
  examples: ['pullmirror gc --dry-run /etc/pullmirror/config.yml', 'pullmirror gc --dry-run --now +200h   # what a pass in 200 hours would take'],
  maxPositionals: 1,
};

/**
 * `pullmirror gc [--dry-run] [--now TIME] [config.yml]`: one eviction pass over the store by
 * hand, the same pass the scheduler runs (TTL from last access, size cap, then unreferenced
 * blobs), printing every tag, manifest and blob it removes, or would remove with --dry-run.
 *
 * Safe beside a running mirror on the same store: fills in flight live in the mirror's own
 * temporary directory until verified, and anything written or used within the grace period
 * (storage.eviction.grace) stays. --now (an ISO date, epoch milliseconds, or +DURATION from now)
 * moves the clock the TTL is measured with, to preview what a later pass would take.
 */
export async function gc(args: string[]): Promise<void> {
  const { values, positionals } = parseCommand(GC, args);
  const dryRun = values['dry-run'] === true;
  const now = typeof values.now === 'string' ? parseNow(values.now) : undefined;
  const file = positionals[0];
  const config = loadConfigOrExit(file);
  if (config.storage.maintenance.readonly.enabled) {
    process.stdout.write('storage.maintenance.readonly is enabled: the store is not changed, nothing evicted\n');
    return;
  }
  const logger = createLogger({ ...config.log, level: 'error' });
  const paths = new StorePaths(config.storage.filesystem.rootdirectory);
  // Running mirrors share their descriptors in Redis: a removed blob must leave none behind.
  const redis = config.storage.cache.blobdescriptor === 'redis' && !dryRun ? createRedisConnection(config.redis, logger, await readStoreId(paths)) : undefined;
  const descriptors = redis && (await redis.whenReady(config.redis.dialtimeout)) ? new RedisDescriptorCache(redis) : undefined;
  try {
    const result = await sweep({ ...sweepSettings(config), paths, logger, now, dryRun, hooks: { blobRemoved: (digest) => descriptors?.delete(digest) } });
    process.stdout.write(report(result));
  } finally {
    await redis?.close();
  }
}

function parseNow(value: string): number {
  if (!value) fail('--now needs a time');
  if (value.startsWith('+')) {
    try {
      return Date.now() + parseDuration(value.slice(1));
    } catch (error) {
      fail(`--now: ${(error as Error).message}`);
    }
  }
  const time = /^\d+$/.test(value) ? Number(value) : Date.parse(value);
  if (!Number.isFinite(time)) fail(`--now: not a time: "${value}" (ISO date, epoch ms, or +DURATION)`);
  return time;
}

function fail(message: string): never {
  return usageError(GC, message);
}

const size = (n: number) => formatBytes(n, 2);

/** One line per item, then a summary; "would remove" on a dry run. */
export function report(result: SweepResult): string {
  const verb = result.dryRun ? 'would remove' : 'removed';
  const lines: string[] = [];
  for (const tag of result.tags) lines.push(`${verb} tag ${tag.repository}:${tag.tag} (${tag.reason})`);
  for (const link of result.links) {
    lines.push(`${verb} manifest ${link.repository}@${link.digest} (${link.reason}, last used ${new Date(link.lastAccess).toISOString()})`);
  }
  for (const blob of result.blobs) lines.push(`${verb} blob ${blob.digest} ${size(blob.size)}`);
  lines.push(
    `${result.dryRun ? 'dry run: ' : ''}${result.tags.length} tags, ${result.links.length} manifests, ${result.blobs.length} blobs, ` +
      `${size(result.freed)} ${result.dryRun ? 'to free' : 'freed'}; store ${size(result.sizeBefore)} -> ${size(result.sizeAfter)}` +
      `${result.kept ? `; ${result.kept} kept (used during the pass)` : ''}${result.capUnreached ? '; size cap not reached (recent content is protected)' : ''}` +
      ` in ${(result.durationMs / 1000).toFixed(2)} s`,
  );
  lines.push(graceLine(result));
  if (result.pinned.tags + result.pinned.manifests > 0) lines.push(`storage.eviction.keep holds ${result.pinned.tags} tags and ${result.pinned.manifests} manifests`);
  return `${lines.join('\n')}\n`;
}

/** How much the grace period holds back from this pass, and until when (wall clock, UTC). */
function graceLine(result: SweepResult): string {
  const held = result.graceHeld;
  const grace = `grace period (storage.eviction.grace ${formatDuration(result.graceMs)})`;
  if (held.until === undefined) return `${grace} holds nothing back`;
  const items = `${held.tags} tags, ${held.links} manifests, ${held.blobs} blobs (${size(held.bytes)})`;
  const when = held.from === held.until ? `until ${iso(held.until)}` : `released between ${iso(held.from!)} and ${iso(held.until)}`;
  return `${grace} holds back ${items}: ${when}`;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  return `${ms / 1000}s`;
}
