import { parseDuration } from '../config/duration.ts';
import type { GraceHeldBack } from '../eviction/plan.ts';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { openAccessClock, passLockFor, redisConfigured } from '../eviction/access-clock-setup.ts';
import { PassHeldElsewhere } from '../eviction/pass-lock.ts';
import { STALE_UPLOAD_MS, sweep, sweepSettings, type SweepResult, type SweptItem } from '../eviction/sweeper.ts';
import { BlobHolders } from '../fleet/blob-holders.ts';
import { PeerDirectory } from '../fleet/peer-directory.ts';
import { RedisFillCoordinator } from '../fleet/redis-fill-coordinator.ts';
import { createStorageDriver } from '../storage/driver/create-driver.ts';
import { createLogger } from '../logging/logger.ts';
import { StorePaths } from '../storage/paths.ts';
import { findStoreId, readStoreId } from '../storage/store-id.ts';
import { RedisDescriptorCache } from '../cache/redis-descriptor-cache.ts';
import { createFleetConnection, createRedisConnection } from '../redis/redis-connection.ts';
import { formatBytes } from '../util/format-bytes.ts';
import { formatDuration } from '../util/format-duration.ts';
import { pluralPlain } from '../util/plural.ts';
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
      help: 'plan the pass at this moment (TTL and grace period count from it; a pass that deletes still keeps what the grace period of the real clock protects): an ISO date, epoch milliseconds, or +DURATION from now (+200h)',
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
 * moves the clock the pass is planned by, TTL and grace period alike, to preview what a later
 * pass would take; a pass that deletes still keeps what the real clock's grace period protects.
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
  // The store the config names (a directory or a bucket). gc never writes through the driver (it
  // deletes), so its temp directory is never used.
  const driver = await createStorageDriver(config, { tempDir: paths.tmpDir() });
  // With a Redis, the access clock and the fleet's eviction lock are there: no pass (not even a dry run) without them.
  const storeId = await readStoreId(driver);
  const redis = redisConfigured(config) ? createRedisConnection(config.redis, logger, storeId) : undefined;
  if (redis && !(await redis.whenReady(config.redis.dialtimeout))) {
    await redis.close();
    await driver.close();
    process.stderr.write('redis is not reachable: the access clock (when each item was last used) is kept there; nothing done\n');
    process.exitCode = 1;
    return;
  }
  // Running mirrors share their descriptors in Redis: a removed blob must leave none behind.
  const descriptors = redis && config.storage.cache.blobdescriptor === 'redis' && !dryRun ? new RedisDescriptorCache(redis) : undefined;
  // gc never makes the store's id: a store without one keeps the journal where versions before ids kept it.
  const clock = openAccessClock({ redis, config, logger, compacts: false, storeId: () => findStoreId(driver) });
  const name = `gc-${hostname().replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 40) || 'host'}-${process.pid}-${randomBytes(4).toString('hex')}`;
  // A blob another instance is filling (its fill lease in Redis) is not deleted under it.
  // A named fleet (redis.fleet.name) keeps its leases, and who holds what, under its own prefix.
  const fleetRedis = redis && config.redis.fleet.name && config.redis.fleet.enabled ? createFleetConnection(config.redis, logger, config.redis.fleet.name) : undefined;
  if (fleetRedis) await fleetRedis.whenReady(config.redis.dialtimeout);
  const fleetKeys = fleetRedis ?? redis;
  const fills = fleetKeys && config.redis.fleet.enabled ? new RedisFillCoordinator({ redis: fleetKeys, leaseMs: config.redis.fleet.lease, logger, instance: name }) : undefined;
  // A removed blob leaves the record of who holds what: peers stop asking this store for it.
  const holders =
    fleetRedis && storeId && !dryRun ? new BlobHolders({ redis: fleetRedis, storeId, directory: new PeerDirectory({ redis: fleetRedis, self: name }), logger }) : undefined;
  try {
    // Each item is printed as it goes (150 000 blobs make a report of many megabytes), then the summary.
    const verb = dryRun ? 'would remove' : 'removed';
    const out = new LineWriter(process.stdout);
    const result = await sweep({
      ...sweepSettings(config),
      store: { driver, paths, clock },
      lock: passLockFor(redis, name),
      logger,
      now,
      dryRun,
      hooks: {
        isBusy: async (digest) => fills !== undefined && (await fills.blobHolder(digest)).kind !== 'free',
        blobRemoved: async (digest) => {
          await holders?.removed(digest);
          await descriptors?.delete(digest);
        },
      },
      // What crashed writers left in the store (incomplete multipart uploads on S3), a day old at least.
      cleanupOlderThanMs: STALE_UPLOAD_MS,
      onItem: (item) => out.line(itemLine(verb, item)),
    });
    out.line(summary(result));
    await out.end();
  } catch (error) {
    if (!(error instanceof PassHeldElsewhere)) throw error;
    // Skipped, not waited for: that pass does the work; run gc again once it is over.
    process.stderr.write(`${error.message}: nothing done\n`);
    process.exitCode = 75;
  } finally {
    await fills?.close();
    await fleetRedis?.close();
    await clock.close();
    await redis?.close();
    await driver.close();
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

/** One item of the report. */
export function itemLine(verb: string, item: SweptItem): string {
  if (item.kind === 'tag') return `${verb} tag ${item.tag.repository}:${item.tag.tag} (${item.tag.reason})`;
  if (item.kind === 'manifest') return `${verb} manifest ${item.link.repository}@${item.link.digest} (${item.link.reason}, last used ${new Date(item.link.lastAccess).toISOString()})`;
  return `${verb} blob ${item.blob.digest} ${size(item.blob.size)}`;
}

/** The lines after the items: totals, what the grace period holds back, what storage.eviction.keep held. */
export function summary(result: SweepResult): string {
  const lines = [
    `${result.dryRun ? 'dry run: ' : ''}${counts(result.tags.length, result.links.length, result.blobs.length)}, ` +
      `${size(result.freed)} ${result.dryRun ? 'to free' : 'freed'}; store ${size(result.sizeBefore)} -> ${size(result.sizeAfter)}` +
      `${result.kept ? `; ${result.kept} kept (used during the pass)` : ''}${result.capUnreached ? '; size cap not reached (recent or pinned content is protected)' : ''}` +
      ` in ${(result.durationMs / 1000).toFixed(2)} s`,
  ];
  if (result.cleaned > 0) lines.push(`${pluralPlain(result.cleaned, 'incomplete upload')} left by crashed writers removed`);
  if (result.graceHeld) lines.push(graceLine(result.graceHeld, result.graceMs));
  if (result.pinned.tags + result.pinned.manifests > 0) lines.push(`storage.eviction.keep holds ${pluralPlain(result.pinned.tags, 'tag')} and ${pluralPlain(result.pinned.manifests, 'manifest')}`);
  return lines.join('\n');
}

/**
 * Lines to stdout in batches of about 64 KiB, waiting when the pipe is full: memory stays
 * bounded however long the report, and a slow reader (`| less`) slows the pass, not the heap.
 */
class LineWriter {
  private readonly stream: NodeJS.WritableStream;
  private buffer: string[] = [];
  private bytes = 0;
  private waiting?: Promise<void>;

  constructor(stream: NodeJS.WritableStream) {
    this.stream = stream;
  }

  line(text: string): void {
    this.buffer.push(text);
    this.bytes += text.length + 1;
    if (this.bytes >= 65_536) this.flush();
  }

  private flush(): void {
    if (this.buffer.length === 0) return;
    const chunk = `${this.buffer.join('\n')}\n`;
    this.buffer = [];
    this.bytes = 0;
    if (!this.stream.write(chunk)) this.waiting ??= new Promise<void>((resolve) => this.stream.once('drain', () => ((this.waiting = undefined), resolve())));
  }

  async end(): Promise<void> {
    this.flush();
    await this.waiting;
  }
}

/** How much the grace period holds back from this pass, and until when (wall clock, UTC). */
function graceLine(held: GraceHeldBack, graceMs: number): string {
  const grace = `grace period (storage.eviction.grace ${formatDuration(graceMs)})`;
  if (held.until === undefined) return `${grace} holds nothing back`;
  const items = `${counts(held.tags, held.links, held.blobs)} (${size(held.bytes)})`;
  const when = held.from === held.until ? `until ${iso(held.until)}` : `released between ${iso(held.from!)} and ${iso(held.until)}`;
  return `${grace} holds back ${items}: ${when}`;
}

/** `1 tag, 2 manifests, 3 blobs` */
function counts(tags: number, manifests: number, blobs: number): string {
  return `${pluralPlain(tags, 'tag')}, ${pluralPlain(manifests, 'manifest')}, ${pluralPlain(blobs, 'blob')}`;
}

const iso = (ms: number) => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

