import { version } from './version.ts';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import { readFileSync } from 'node:fs';
import { BcryptPool } from './auth/bcrypt-pool.ts';
import { Htpasswd } from './auth/htpasswd.ts';
import { LoginThrottle } from './auth/login-throttle.ts';
import { TokenVerifier } from './auth/token-verifier.ts';
import type { DescriptorCache } from './cache/descriptor-cache.ts';
import { MemoryDescriptorCache } from './cache/memory-descriptor-cache.ts';
import { RedisDescriptorCache } from './cache/redis-descriptor-cache.ts';
import { storageProblem } from './config/check-storage.ts';
import { ConfigError } from './config/load.ts';
import type { Config } from './config/schema.ts';
import { EvictionPreviewer } from './browse/eviction-preview.ts';
import { storeCapacity } from './browse/store-capacity.ts';
import { StoreBrowser } from './browse/store-browser.ts';
import { AccessRecorder, usedItemKey } from './eviction/access-recorder.ts';
import type { AccessClock } from './eviction/access-clock.ts';
import { openAccessClock, passLockFor } from './eviction/access-clock-setup.ts';
import type { PassLock } from './eviction/pass-lock.ts';
import type { StoreReader } from './eviction/inventory.ts';
import { EvictionScheduler } from './eviction/scheduler.ts';
import { STALE_UPLOAD_MS, sweep, sweepSettings } from './eviction/sweeper.ts';
import { BlobHolders } from './fleet/blob-holders.ts';
import { LocalFillCoordinator, type FillCoordinator } from './fleet/fill-coordinator.ts';
import { FleetTraffic } from './fleet/fleet-traffic.ts';
import { FleetHeartbeat } from './fleet/heartbeat.ts';
import { PeerAuth } from './fleet/peer-auth.ts';
import { PeerClient } from './fleet/peer-client.ts';
import { PeerDirectory } from './fleet/peer-directory.ts';
import { RedisFillCoordinator } from './fleet/redis-fill-coordinator.ts';
import { CachedCheck, fileAbsentProbe, Readiness, storeReadableProbe, storeWritableProbe, upstreamReachableProbe } from './health/checks.ts';
import { watchUpstreamCredentials } from './health/credentials.ts';
import type { BrowseContext, EvictionStatus } from './http/browse-router.ts';
import type { RegistryContext } from './http/context.ts';
import { authentication, unauthorized, type TokenAuthOptions } from './http/middleware/auth.ts';
import { errorHandler } from './http/middleware/error-handler.ts';
import { requestContext } from './http/middleware/request-context.ts';
import { requestMetrics } from './http/middleware/request-metrics.ts';
import { clientConfigRouter } from './http/client-config-router.ts';
import { debugRouter, opsRouter, type OpsContext } from './http/ops-router.ts';
import { peerApp } from './http/peer-router.ts';
import { statusPageAssets } from './http/status-page/assets.ts';
import { registryRouter } from './http/registry-router.ts';
import type { Logger } from './logging/logger.ts';
import { bindSources, bindStoreLimits, collectProcessMetrics } from './metrics/metrics.ts';
import { TrafficRecorder } from './metrics/traffic.ts';
import { BlobDownloads } from './proxy/blob-downloads.ts';
import { PrivateAccess } from './proxy/private-access.ts';
import type { FleetStores } from './proxy/peer-copies.ts';
import { ProxyBlobStore } from './proxy/proxy-blob-store.ts';
import { ProxyManifestStore } from './proxy/proxy-manifest-store.ts';
import { ProxyReferrers } from './proxy/proxy-referrers.ts';
import { fillSource } from './proxy/shared-fill.ts';
import { RepositoryPrivacy } from './proxy/repository-privacy.ts';
import { SmallBlobReader } from './proxy/small-blob.ts';
import { StoreAdmission } from './proxy/store-admission.ts';
import type { RedisConnection } from './redis/redis-connection.ts';
import { parseDigest } from './registry/digest.ts';
import { manifestReferences } from './registry/manifest-references.ts';
import { MediaType } from './registry/media-types.ts';
import { RegistryError } from './registry/errors.ts';
import { SignatureGate, type SignatureLookup } from './signatures/signature-gate.ts';
import { BlobStore } from './storage/blob-store.ts';
import { createStorageDriver } from './storage/driver/create-driver.ts';
import type { StorageDriver } from './storage/driver/storage-driver.ts';
import { ManifestStore } from './storage/manifest-store.ts';
import { StorePaths } from './storage/paths.ts';
import { findStoreId, renewStoreId, requireStoreId, storeId } from './storage/store-id.ts';
import { StoreProbe } from './storage/store-probe.ts';
import { LiveStoreFigures } from './storage/store-stats.ts';
import { TempArea } from './storage/temp-area.ts';
import { Remotes } from './upstream/remotes.ts';
import type { UpstreamRegistry } from './upstream/upstream-registry.ts';

/** Everything a running mirror is made of; serve.ts listens with `app` and closes the rest. */
export interface Mirror {
  app: Express;
  /** distribution's debug server (metrics, /debug/health), when http.debug.addr is set. */
  debugApp?: Express;
  /** The peer listener's application (other instances fetch blobs there), when redis.fleet.peers.addr is set. */
  peerApp?: Express;
  upstream: UpstreamRegistry;
  /**
   * Tells the mirror the address it listens on, and where its peers reach it (the advertised
   * peer address, with the peer listener): the fleet heartbeat starts with them.
   */
  announce(address: string, peerAddress?: string): void;
  /** Resolves once every blob download in flight has finished (graceful stop). */
  drain(): Promise<void>;
  close(): Promise<void>;
}

/** The composition root: config → storage → caches → upstream → stores → eviction → HTTP. */
export async function createMirror(config: Config, logger: Logger): Promise<Mirror> {
  const storage = await buildStorage(config, logger);
  const caches = await buildCaches(config, logger, storage);
  const remotes = new Remotes(config, logger.child({ component: 'upstream' }));
  const upstream = remotes.default.upstream;
  // Which registry each upstream stands for, so a Docker Hub proxy taken for its own host shows at once.
  for (const remote of remotes.all) {
    logger.info('serving registry', { namespace: remote.namespace, upstream: remote.upstream.url.origin, default: remote.isDefault, ...(remote.prefix ? { prefix: remote.prefix } : {}) });
  }
  const peerClient = buildPeerClient(config, storage, caches);
  const fleetStores = buildFleetStores(config, logger, storage, caches);
  const stores = buildStores(config, logger, storage, caches, remotes, peerClient, fleetStores);
  const eviction = buildEviction(config, logger, storage, stores, caches, fleetStores?.holders);
  const ops = buildOps(config, storage, remotes, stores.downloads);
  ops.signatures = stores.signatures;
  const heartbeat = new FleetHeartbeat({
    // Named as its download leases name it: a lease's holder is found by its heartbeat (PeerDirectory).
    id: storage.tempArea.id,
    // The fleet's (redis.fleet.name: every store's instances); its store id tells peers where its blobs land.
    redis: caches.fleetRedis,
    storeId: caches.storeId,
    logger: logger.child({ component: 'fleet' }),
    version: ops.version,
    fillsInFlight: ops.fillsInFlight,
    traffic: () => {
      const t = ops.traffic.totals();
      return { pulls: t.pulls, hits: t.hits + t.stale, misses: t.misses, bytesFromCache: t.bytesFromCache, bytesFromUpstream: t.bytesFromUpstream };
    },
  });
  // The fleet panels show downloads and traffic as they change, not at the next beat.
  stores.downloads.watchInFlight(() => heartbeat.nudge());
  ops.traffic.addSink({ response: () => heartbeat.nudge(), pull: () => heartbeat.nudge() });
  if (caches.fleetRedis) {
    // With a Redis, the overview shows the fleet's traffic (every instance on this store, or of the named fleet).
    ops.fleetTraffic = new FleetTraffic({ redis: caches.fleetRedis, logger: logger.child({ component: 'fleet' }), address: () => heartbeat.listenAddress });
    ops.traffic.addSink(ops.fleetTraffic);
  }
  ops.browse = buildBrowse(config, logger, { driver: storage.driver, paths: storage.paths, clock: caches.clock }, remotes, eviction.scheduler, heartbeat);
  ops.capacity = (bytes) => storeCapacity(config, storage.driver, bytes);
  ops.pageAssets = await statusPageAssets();
  for (const remote of remotes.all) watchUpstreamCredentials(remote, ops.readiness, config, logger);
  const { app, debugApp } = buildHttpApp(config, logger, {
    blobs: stores.blobs,
    manifests: stores.manifests,
    referrers: stores.referrers,
    usage: eviction.usage,
    access: buildPrivateAccess(config, logger, storage.manifestStore, remotes),
    remotes,
    logger,
    sendTimeoutMs: config.http.sendtimeout,
  }, ops);
  const peerApp = buildPeerApp(config, logger, storage, caches, stores);
  return {
    app,
    debugApp,
    peerApp,
    upstream,
    announce: (address, peerAddress) => {
      heartbeat.start(address, peerAddress);
      ops.fleetTraffic?.start();
    },
    drain: () => stores.downloads.drain(),
    async close() {
      // First, so that the fleet panels show this instance gone while it drains the rest.
      await ops.fleetTraffic?.stop();
      await heartbeat.stop();
      await eviction.scheduler?.stop();
      storage.figures.stop();
      await remotes.close();
      await peerClient?.close();
      await caches.fleet.close();
      await caches.descriptors.close();
      await caches.clock.close();
      caches.probe?.stop();
      if (caches.fleetRedis !== caches.redis) await caches.fleetRedis?.close();
      await caches.redis?.close();
      await storage.tempArea.stop().catch(() => {});
      await storage.driver.close().catch(() => {});
    },
  };
}

interface Storage {
  /** The bytes at keys: the blob, manifest and tag semantics above go through it. */
  driver: StorageDriver;
  /** The store as files (the filesystem driver's layout), for what still walks its directories. */
  paths: StorePaths;
  tempArea: TempArea;
  blobStore: BlobStore;
  manifestStore: ManifestStore;
  readOnly: boolean;
  /** The store's figures, walked once in the background and kept current as blobs come and go. */
  figures: LiveStoreFigures;
}

/**
 * The store's driver, chosen by config (src/storage/driver/create-driver.ts): the filesystem
 * driver's temp files (putContent's) go to this instance's spool, as a fill's do, so a commit
 * is a rename; the s3 driver is loaded only when storage.s3 is set.
 */
function buildDriver(config: Config, tempDir: string, logger: Logger): Promise<StorageDriver> {
  return createStorageDriver(config, { tempDir, readCache: { logger } });
}

/** The store over its driver, and this instance's spool (temporary area) in it. */
async function buildStorage(config: Config, logger: Logger): Promise<Storage> {
  const paths = new StorePaths(config.storage.filesystem.rootdirectory);
  // The spool: `_tmp/` inside the store's root on the filesystem, so a commit is a rename (and
  // a fleet on a shared volume follows downloads from it). A store elsewhere (storage.s3) spools
  // to a local directory of its own (its spooldirectory): the second seam of create-driver.ts.
  const tempArea = new TempArea(config.storage.s3 ? config.storage.s3.spooldirectory : paths.tmpDir(), logger.child({ component: 'storage' }));
  const readOnly = config.storage.maintenance.readonly.enabled;
  if (readOnly) logger.warn('read-only maintenance mode: serving stored content, passing the rest through, evicting nothing');
  try {
    if (!readOnly) await tempArea.start();
  } catch (error) {
    // An unwritable store must not keep the mirror down: it serves from upstream meanwhile.
    logger.error('store not writable at start; blobs will pass through uncached', { error: (error as Error).message, code: (error as NodeJS.ErrnoException).code });
  }
  const driver = await buildDriver(config, tempArea.dir, logger.child({ component: 'storage' }));
  // A bucket that cannot be used says so once, naming the key to fix, as `config check` does.
  // The mirror starts all the same and passes blobs through from upstream meanwhile (readiness
  // says it is not ready); not awaited, so a hung endpoint does not hold the start.
  if (config.storage.s3) void driver.probe().catch(async (error: unknown) => logger.error(await storageProblem(config, error), { component: 'storage' }));
  // The filesystem driver on a volume other instances may share: their spools are readable
  // where they write them (a fleet follows a download from its file).
  const blobStore = new BlobStore({ driver, tempDir: tempArea.dir, volume: driver.kind === 'filesystem' ? paths : undefined, redirects: !config.storage.redirect.disable });
  const manifestStore = new ManifestStore(blobStore);
  manifestStore.links.writable = !readOnly;
  const figures = new LiveStoreFigures({ driver, paths, spool: tempArea.root });
  blobStore.listener = figures;
  manifestStore.listener = figures;
  figures.start();
  return { driver, paths, tempArea, blobStore, manifestStore, readOnly, figures };
}

interface Caches {
  /** The store's keys (`pullmirror:<store id>:`): descriptors, access clock, eviction lock, store probe. */
  redis?: RedisConnection;
  /**
   * The fleet's keys: download leases, lookups, heartbeats, traffic, who holds what. The store's
   * connection itself, unless redis.fleet.name names a fleet (`pullmirror:fleet:<name>:`).
   */
  fleetRedis?: RedisConnection;
  /** This store's id, when it has one (the heartbeat publishes it; the record of who holds what names stores by it). */
  storeId?: string;
  descriptors: DescriptorCache;
  fleet: FillCoordinator;
  /** Renews this store's probe while the instance runs (with Redis). */
  probe?: StoreProbe;
  /** When each stored item was last used (eviction/access-clock.ts), and one eviction pass at a time. */
  clock: AccessClock;
  passLock: PassLock;
}

/** The descriptor cache and fleet coordination: in-process, or through one Redis connection. */
async function buildCaches(config: Config, logger: Logger, { driver, paths, tempArea, readOnly }: Storage): Promise<Caches> {
  // ioredis is loaded only when a Redis is configured: a mirror without one does not carry it.
  const redisWanted = Boolean(config.redis.url || config.redis.addr || config.redis.addrs?.length) || config.storage.cache.blobdescriptor === 'redis';
  const connected = redisWanted ? await connectForStore(config, logger, driver, paths.root) : undefined;
  const redis = connected?.redis;
  const fleetRedis = redis && config.redis.fleet.name ? await connectForFleet(config, logger, config.redis.fleet.name) : redis;
  if (redis && !config.redis.fleet.name && config.redis.fleet.peers.addr !== undefined && config.storage.s3 === undefined) {
    // A peer listener on a filesystem store may be a disk of its own: without a name it joins no one on another store.
    logger.info('redis.fleet.peers without redis.fleet.name: this instance coordinates only with instances on its own store', { component: 'fleet', storeId: connected?.storeId ?? null });
  }
  const descriptors: DescriptorCache =
    redis && config.storage.cache.blobdescriptor === 'redis' ? new RedisDescriptorCache(redis) : new MemoryDescriptorCache(config.storage.cache.blobdescriptorsize);
  const fleet: FillCoordinator =
    redis && config.redis.fleet.enabled
      ? new RedisFillCoordinator({ redis: fleetRedis ?? redis, leaseMs: config.redis.fleet.lease, logger: logger.child({ component: 'fleet' }), instance: tempArea.id })
      : new LocalFillCoordinator();
  // A read-only store is not written, not even its id: the clock then only looks for one.
  const clock = openAccessClock({ redis, config, logger, storeId: () => (readOnly ? findStoreId(driver) : requireStoreId(driver)) });
  return { redis, fleetRedis, storeId: connected?.storeId, descriptors, fleet, probe: connected?.probe, clock, passLock: passLockFor(redis, tempArea.id) };
}

/** The named fleet's connection (redis.fleet.name), beside the store's: see createFleetConnection. */
async function connectForFleet(config: Config, logger: Logger, name: string): Promise<RedisConnection> {
  const { createFleetConnection } = await import('./redis/redis-connection.ts');
  // Its own circuit breaker: an outage is logged by each connection, this one's lines saying whose.
  const redis = createFleetConnection(config.redis, logger.child({ component: 'redis', keys: 'fleet' }), name);
  await redis.whenReady(Math.min(config.redis.dialtimeout, 2_000));
  return redis;
}

/**
 * The Redis connection under this store's id, once the store is known to be the one the id
 * stands for: a store copied with its `_store-id` (a cloned volume) is told from the original
 * by a probe (storage/store-probe.ts), said in the log, and given an id of its own, so its
 * instances never wait for files only the original holds.
 */
async function connectForStore(config: Config, logger: Logger, driver: StorageDriver, root: string): Promise<{ redis: RedisConnection; probe?: StoreProbe; storeId?: string }> {
  const { createRedisConnection } = await import('./redis/redis-connection.ts');
  const redisLogger = logger.child({ component: 'redis' });
  const id = await storeId(driver);
  const redis = createRedisConnection(config.redis, redisLogger, id);
  // A read-only store is not written, not even a probe; a store without an id shares no keys.
  if (!id || config.storage.maintenance.readonly.enabled) return { redis, storeId: id };
  const probeLogger = logger.child({ component: 'store' });
  const probe = new StoreProbe({ driver, redis, logger: probeLogger });
  // Redis that is down at start does not hold start-up longer: the renewals look again.
  const ready = await redis.whenReady(Math.min(config.redis.dialtimeout, 2_000));
  const result = ready ? await probe.probe() : ({ kind: 'unknown', reason: 'redis not ready' } as const);
  if (result.kind !== 'copy') {
    if (result.kind === 'unknown') probeLogger.debug('store probe: no answer yet', { reason: result.reason });
    probe.start(() => void onCopyFound(driver, root, id, probeLogger));
    return { redis, probe, storeId: id };
  }
  const renewed = await renewStoreId(driver, id);
  probeLogger.warn(STORE_COPY_MESSAGE, { root, copiedStoreId: id, storeId: renewed ?? null });
  if (!renewed) return { redis, storeId: id };
  await redis.close();
  const own = createRedisConnection(config.redis, redisLogger, renewed);
  const ownProbe = new StoreProbe({ driver, redis: own, logger: probeLogger });
  if (await own.whenReady(Math.min(config.redis.dialtimeout, 2_000))) await ownProbe.probe();
  ownProbe.start(() => void onCopyFound(driver, root, renewed, probeLogger));
  return { redis: own, probe: ownProbe, storeId: renewed };
}

const STORE_COPY_MESSAGE =
  'this store is a copy of another one (a cloned volume?): same _store-id, but the files instances write under that id are not here; ' +
  'it takes an id of its own, so its instances and those of the original do not wait for each other\'s files';

/** A copy found while running: the new id is written now and taken at the next start. */
async function onCopyFound(driver: StorageDriver, root: string, id: string, logger: Logger): Promise<void> {
  const renewed = await renewStoreId(driver, id);
  logger.error(`${STORE_COPY_MESSAGE}; restart this instance to use it (until then it shares Redis keys with the original's instances)`, {
    root,
    copiedStoreId: id,
    storeId: renewed ?? null,
  });
}

interface Stores {
  blobs: ProxyBlobStore;
  downloads: BlobDownloads;
  manifests: ProxyManifestStore;
  referrers: ProxyReferrers;
  /** The signature policy, when any registry has one (proxy.signatures). */
  signatures?: SignatureGate;
  /** Forgets, in every in-memory cache, what an eviction pass (here or in another process) deleted. */
  forgetManifest: (repository: string, digest: string) => void;
  forgetBlob: (digest: string) => Promise<void>;
}

/** The pull-through stores over the local ones. */
function buildStores(config: Config, logger: Logger, storage: Storage, caches: Caches, remotes: Remotes, peers: PeerClient | undefined, fleetStores: FleetStores | undefined): Stores {
  const blobLogger = logger.child({ component: 'blobs' });
  const downloads = new BlobDownloads({
    blobs: storage.blobStore,
    admission: new StoreAdmission({ blobs: storage.blobStore, readOnly: storage.readOnly, minFreeBytes: config.storage.filesystem.minfreespace, logger: blobLogger }),
    descriptors: caches.descriptors,
    logger: blobLogger,
    resume: { retries: config.proxy.resume.retries, backoffMs: config.proxy.resume.backoff },
    resumeFor: (upstream) => remotes.forUpstream(upstream)?.policy.resume,
    fleet: caches.fleet,
    fleetStallMs: config.redis.fleet.lease,
    peerFallbackMs: config.redis.fleet.peers.fallback,
    peers,
    stores: fleetStores,
  });
  const blobs = new ProxyBlobStore({ local: storage.blobStore, descriptors: caches.descriptors, downloads });
  const signatures: SignatureGate | undefined = remotes.all.some((remote) => !remote.signatures.empty) ? buildSignatureGate(logger, storage, () => manifests) : undefined;
  const manifests: ProxyManifestStore = new ProxyManifestStore({
    manifests: storage.manifestStore,
    logger: logger.child({ component: 'manifests' }),
    readOnly: storage.readOnly,
    fleet: caches.fleet,
    gate: signatures,
  });
  const referrers = new ProxyReferrers({
    manifests,
    driver: storage.driver,
    readOnly: storage.readOnly,
    logger: logger.child({ component: 'referrers' }),
  });
  return {
    blobs,
    downloads,
    manifests,
    referrers,
    signatures,
    forgetManifest: (repository, digest) => manifests.forget(repository, digest),
    forgetBlob: async (digest) => {
      manifests.forgetContent(digest);
      await blobs.forget(digest);
    },
  };
}

/** How many manifests of a repository are looked through for the index of an unsigned platform manifest. */
const MAX_INDEXES_WALKED = 1000;

/**
 * The signature policy reads a signature artifact through the manifest store it guards (an
 * attachment tag, which the policy exempts) and its payloads through the blob store, so both
 * are cached for checks while upstream is down.
 */
function buildSignatureGate(logger: Logger, storage: Storage, manifests: () => ProxyManifestStore): SignatureGate {
  const payloads = new SmallBlobReader({ blobs: storage.blobStore, readOnly: storage.readOnly, logger: logger.child({ component: 'blobs' }) });
  return new SignatureGate({
    lookup: async (remote, name, tag): Promise<SignatureLookup> => {
      try {
        const result = await manifests().byTag(remote, name, tag);
        return { found: true, digest: result.descriptor.digest, bytes: await manifests().bytesFor(remote, name, result) };
      } catch (error) {
        if (!(error instanceof RegistryError)) throw error;
        return { found: false, reason: error.code === 'MANIFEST_UNKNOWN' ? 'absent' : 'unavailable' };
      }
    },
    payload: (remote, name, digest, limit) => payloads.read(remote, name, parseDigest(digest), limit),
    parents: async (remote, name, child) => {
      const parents: { digest: string; bytes: Buffer }[] = [];
      for (const link of await storage.manifestStore.linkedManifests(remote.key(name), MAX_INDEXES_WALKED)) {
        if (link.mediaType !== MediaType.ociIndex && link.mediaType !== MediaType.dockerManifestList) continue;
        const bytes = await storage.manifestStore.read(parseDigest(link.digest));
        if (bytes && manifestReferences(bytes).manifests.includes(child)) parents.push({ digest: link.digest, bytes });
      }
      return parents;
    },
    logger: logger.child({ component: 'signatures' }),
  });
}

/**
 * Access records and the eviction schedule. As in distribution, nothing is evicted unless
 * deletes are enabled, and never in read-only mode (which records no access either).
 */
function buildEviction(config: Config, logger: Logger, storage: Storage, stores: Stores, caches: Caches, holders: BlobHolders | undefined): { usage?: AccessRecorder; scheduler?: EvictionScheduler } {
  if (storage.readOnly) return {};
  const evictionLogger = logger.child({ component: 'eviction' });
  const ttls = [config.proxy, ...config.proxy.remotes].map((remote) => remote.ttl).filter((ttl) => ttl > 0);
  const store: StoreReader = { driver: storage.driver, paths: storage.paths, clock: caches.clock };
  const usage = new AccessRecorder({
    clock: caches.clock,
    present: async (item) => (await storage.driver.stat(usedItemKey(storage.paths, item))) !== undefined,
    // The shortest TTL of any registry: debouncing must not make a used item look expired anywhere.
    ttlMs: ttls.length > 0 ? Math.min(...ttls) : 0,
    logger: evictionLogger,
    // A `pullmirror gc` in another process removed what this one still knew: store it anew next time.
    gone: { manifest: stores.forgetManifest, blob: (digest) => void stores.forgetBlob(digest) },
  });
  if (!config.storage.delete.enabled) return { usage };
  const scheduler = new EvictionScheduler({
    schedule: config.storage.eviction.schedule,
    logger: evictionLogger,
    // After a pass the repository and tag counts are walked again (blobs were counted as they went).
    pass: () =>
      sweep({
        ...sweepSettings(config),
        store,
        lock: caches.passLock,
        cleanupOlderThanMs: STALE_UPLOAD_MS,
        logger: evictionLogger,
        graceReport: false,
        sharesLoop: true,
        hooks: {
          // Filling here, or under a fill lease of another instance (or Redis cannot tell: kept).
          isBusy: async (digest) => stores.downloads.isFilling(digest) || (await caches.fleet.blobHolder(digest)).kind !== 'free',
          manifestRemoved: stores.forgetManifest,
          blobRemoved: (digest, size) => {
            storage.figures.blobRemoved(digest, size);
            // Off the record of who holds what: peers no longer ask this store for it.
            void holders?.removed(digest);
            return stores.forgetBlob(digest);
          },
        },
      }).finally(() => storage.figures.changed()),
  });
  scheduler.start();
  return { usage, scheduler };
}

/** proxy.privaterepos.protect (each registry's): what keeps private upstream content from anonymous clients. */
function buildPrivateAccess(config: Config, logger: Logger, manifestStore: ManifestStore, remotes: Remotes): PrivateAccess | undefined {
  const protecting = remotes.all.filter((remote) => remote.policy.privateRepos.protect);
  if (protecting.length === 0) return undefined;
  const accessLogger = logger.child({ component: 'access' });
  const privacy = new RepositoryPrivacy({ links: manifestStore.links, logger: accessLogger });
  if (protecting.some((remote) => remote.upstream.hasCredentials) && !config.auth?.htpasswd && !config.auth?.token && !config.http.tls?.clientcas?.length) {
    accessLogger.info('no client authentication configured: repositories private upstream will be refused to every client');
  }
  return new PrivateAccess({ privacy, links: manifestStore.links, logger: accessLogger });
}

/** The Express apps: the main one (ops routes, auth, /v2) and the debug one when configured. */
function buildHttpApp(config: Config, logger: Logger, context: RegistryContext, ops: OpsContext): { app: Express; debugApp?: Express } {
  const htpasswd = loadHtpasswd(config, logger);
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(requestContext(logger, { accessLog: !config.log.accesslog.disabled, format: config.log.accesslog.format, trustedProxies: config.http.trustedproxies }));
  app.use(requestMetrics(ops.traffic));
  const extraHeaders = Object.entries(config.http.headers);
  app.use((_req: Request, res: Response, next: NextFunction) => {
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    for (const [name, values] of extraHeaders) res.setHeader(name, values);
    next();
  });
  const metricsPath = config.http.debug.prometheus.enabled ? config.http.debug.prometheus.path : undefined;
  const debugAddr = config.http.debug.addr;
  const realm = config.auth?.htpasswd?.realm ?? '';
  const token = loadTokenAuth(config, logger, context.remotes);
  const authenticate = authentication({ htpasswd, token, realm, anonymousPull: config.auth?.htpasswd?.anonymouspull ?? false });
  // With auth, the status page (and the client configs) are for authenticated clients only, anonymous pulls or not.
  const protect =
    htpasswd || token
      ? (req: Request, res: Response, next: (error?: unknown) => void) =>
          authenticate(req, res, (error?: unknown) => next(error ?? (res.locals.user ? undefined : (res.locals.refuseAnonymous?.('authentication required') ?? unauthorized(realm)))))
      : undefined;
  const opsRoutes = opsRouter(ops, { metricsPath: debugAddr ? undefined : metricsPath, protect });
  const clientConfigs = clientConfigRouter(config, { protect });
  // Registry requests skip the ops routes with one string test (the warm blob path is
  // benchmarked); the ops routes answer GET and HEAD only, anything else is the 404 below.
  // The client configs are one more ops route, behind the same test.
  app.use((req: Request, res: Response, next: NextFunction) =>
    req.url.startsWith('/v2/') || (req.method !== 'GET' && req.method !== 'HEAD') ? next() : opsRoutes(req, res, (error?: unknown) => (error ? next(error) : clientConfigs(req, res, next))),
  );
  app.use(authenticate);
  app.use('/v2', registryRouter(context));
  app.use(() => {
    throw new RegistryError('NOT_FOUND', 'no such endpoint');
  });
  app.use(errorHandler(logger));
  if (!debugAddr) return { app };
  const debugApp = express();
  debugApp.disable('x-powered-by');
  debugApp.use(debugRouter(ops, { metricsPath }));
  debugApp.use(errorHandler(logger));
  return { app, debugApp };
}

/**
 * The peer listener (redis.fleet.peers): other instances read this one's blobs there, and its
 * own downloads in flight as they land, each request signed with http.secret. Without
 * redis.fleet.peers.addr: none.
 */
function buildPeerApp(config: Config, logger: Logger, storage: Storage, caches: Caches, stores: Stores): Express | undefined {
  const settings = config.redis.fleet.peers;
  // The schema refused a listener without a secret; this is for the type checker.
  if (settings.addr === undefined || config.http.secret === undefined) return undefined;
  const peerLogger = logger.child({ component: 'peers' });
  if (!caches.redis) peerLogger.warn('redis.fleet.peers without a Redis: no other instance can find this one (its address is published in the fleet heartbeat)');
  return peerApp({
    auth: new PeerAuth(config.http.secret),
    logger: peerLogger,
    accessLog: !config.log.accesslog.disabled,
    sendTimeoutMs: settings.timeout,
    // This instance's own download first: once it ends the blob is stored, so asking in this
    // order never misses a blob that was committed in between.
    openBlob: async (digest) => {
      const fill = stores.downloads.ownFill(digest.value);
      if (fill) return fillSource(digest.value, fill);
      return storage.blobStore.open({ digest });
    },
  });
}

/**
 * The peer client (redis.fleet.peers): where spools are private (a bucket), a follower streams
 * the holder's download from its peer listener instead of waiting for the commit. Needs the
 * listener's settings (the secret) and a Redis (the heartbeats that say where peers are).
 */
function buildPeerClient(config: Config, storage: Storage, caches: Caches): PeerClient | undefined {
  const settings = config.redis.fleet.peers;
  if (settings.addr === undefined || config.http.secret === undefined || !caches.fleetRedis || !config.redis.fleet.enabled) return undefined;
  const directory = new PeerDirectory({ redis: caches.fleetRedis, self: storage.tempArea.id });
  return new PeerClient({ auth: new PeerAuth(config.http.secret), directory, timeoutMs: settings.timeout });
}

/**
 * A named fleet (redis.fleet.name) whose instances may each serve a store of their own: which
 * store a download's holder serves (a holder elsewhere is copied from, not waited for), and the
 * record of who holds which blob. None without a name (instances on one store are one fleet) or
 * without this store's id.
 */
function buildFleetStores(config: Config, logger: Logger, storage: Storage, caches: Caches): FleetStores | undefined {
  if (!config.redis.fleet.name || !config.redis.fleet.enabled || !caches.fleetRedis || !caches.storeId) return undefined;
  const directory = new PeerDirectory({ redis: caches.fleetRedis, self: storage.tempArea.id });
  const holders = new BlobHolders({ redis: caches.fleetRedis, storeId: caches.storeId, directory, logger: logger.child({ component: 'fleet' }) });
  return { own: caches.storeId, storeOf: (instance) => directory.storeOf(instance), holders };
}

/** auth.htpasswd: a file that cannot be read stops start-up, naming the key (never its content). */
function loadHtpasswd(config: Config, logger: Logger): Htpasswd | undefined {
  const settings = config.auth?.htpasswd;
  if (!settings) return undefined;
  try {
    const authLogger = logger.child({ component: 'auth' });
    const htpasswd = new Htpasswd(settings.path, authLogger, {
      pool: new BcryptPool({ threads: settings.workers, queue: settings.queue, logger: authLogger }),
      throttle: new LoginThrottle({ failures: settings.throttle.failures, windowMs: settings.throttle.window, logger: authLogger }),
    });
    if (!config.http.tls) logger.warn('auth.htpasswd without http.tls: passwords cross the network in clear text');
    if (htpasswd.userCount === 0) logger.warn('htpasswd holds no usable user: every request will be refused', { path: settings.path });
    return htpasswd;
  } catch (error) {
    throw new ConfigError(`auth.htpasswd.path: cannot read ${settings.path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

/** auth.token: a bundle or JWKS that cannot be read or parsed stops start-up, naming the key. */
function loadTokenAuth(config: Config, logger: Logger, remotes: Remotes): TokenAuthOptions | undefined {
  const settings = config.auth?.token;
  if (!settings) return undefined;
  const read = (key: 'rootcertbundle' | 'jwks') => {
    const file = settings[key];
    if (file === undefined) return undefined;
    try {
      return readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError(`auth.token.${key}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
    }
  };
  const rootCertBundle = read('rootcertbundle');
  const jwks = read('jwks');
  let verifier: TokenVerifier;
  try {
    verifier = new TokenVerifier({ issuer: settings.issuer, service: settings.service, rootCertBundle, jwks, algorithms: settings.signingalgorithms });
  } catch (error) {
    throw new ConfigError(`auth.token: ${(error as Error).message}`);
  }
  if (!config.http.tls) logger.warn('auth.token without http.tls: tokens cross the network in clear text');
  return { verifier, realm: settings.realm, service: settings.service, scopeName: (ns, name) => remotes.scopeName(ns, name) };
}


/** The status page's store browser, eviction view and fleet panel (see http/browse-router.ts). */
function buildBrowse(config: Config, logger: Logger, store: StoreReader, remotes: Remotes, scheduler: EvictionScheduler | undefined, fleet: FleetHeartbeat): BrowseContext {
  const settings = sweepSettings(config);
  const browser = new StoreBrowser({
    store,
    remotes,
    rules: { ttlFor: settings.ttlFor, graceMs: settings.graceMs, keep: settings.keep },
  });
  // A preview waits for a scheduled pass in flight: never two walks of the whole store at once.
  const previewer = new EvictionPreviewer({ config, store, logger: logger.child({ component: 'eviction-preview' }), passDone: () => scheduler?.whenIdle() });
  const schedule = config.storage.eviction.schedule;
  const eviction = (): EvictionStatus =>
    scheduler
      ? { scheduled: true, schedule, nextRun: scheduler.nextRun()?.getTime() ?? null, running: scheduler.busy, passes: scheduler.history() }
      : {
          scheduled: false,
          schedule,
          reason: config.storage.maintenance.readonly.enabled
            ? 'no scheduled eviction (storage.maintenance.readonly is enabled)'
            : 'no scheduled eviction (storage.delete.enabled is false)',
          nextRun: null,
          running: false,
          passes: [],
        };
  return { browser, previewer, remotes, eviction, fleet };
}

/** Metrics, readiness checks and status figures of one mirror (see http/ops-router.ts). */
function buildOps(config: Config, storage: Storage, remotes: Remotes, downloads: BlobDownloads): OpsContext {
  const { paths, figures: storeStats } = storage;
  const upstream = remotes.default.upstream;
  const checks: CachedCheck[] = [];
  const { storagedriver, upstream: upstreamCheck } = config.health;
  if (storagedriver.enabled) {
    const settings = { intervalMs: storagedriver.interval, threshold: storagedriver.threshold };
    // Serving needs a readable store; a store that takes no write still serves what it holds
    // (new blobs pass through), so the write (to the spool, where every fill starts) is
    // advisory, and never tried in read-only mode.
    // The filesystem's own probe names the errno (ENOTDIR, EACCES); any other driver probes its medium (a bucket).
    const readable = storage.driver.kind === 'filesystem' ? storeReadableProbe(paths.root) : () => storage.driver.probe();
    checks.push(new CachedCheck('storage', readable, settings));
    if (!storage.readOnly) checks.push(new CachedCheck('storage-writable', storeWritableProbe(storage.tempArea.root), { ...settings, advisory: true }));
  }
  if (upstreamCheck.enabled) {
    // One per remote, each advisory: an outage leaves cached images servable, and every other
    // instance would be as cut off. Probed with readiness so the gauge and /health stay current.
    for (const remote of remotes.all) {
      checks.push(
        new CachedCheck(remote.isDefault ? 'upstream' : `upstream:${remote.namespace}`, upstreamReachableProbe(remote.upstream, upstreamCheck.timeout), {
          intervalMs: upstreamCheck.interval,
          threshold: upstreamCheck.threshold,
          // The probe's own deadline names the upstream; this one is a backstop.
          timeoutMs: upstreamCheck.timeout + 1_000,
          advisory: true,
        }),
      );
    }
  }
  for (const { file, interval } of config.health.file) {
    checks.push(new CachedCheck(`file:${file}`, fileAbsentProbe(file), { intervalMs: interval, threshold: 1 }));
  }
  bindStoreLimits(config.storage.eviction);
  collectProcessMetrics();
  const fillsInFlight = (): number => downloads.inFlight;
  bindSources({ fillsInFlight, rateLimit: () => upstream.rateLimit, store: () => storeStats.current() });
  return { readiness: new Readiness(checks), traffic: new TrafficRecorder(), storeStats, upstream, remotes, fillsInFlight, version: version() };
}
