import { readFileSync } from 'node:fs';
import { Cluster, Redis, type ClusterOptions, type RedisOptions } from 'ioredis';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../logging/logger.ts';

/**
 * Every key pullmirror writes starts with this, and then the store's id when there is one
 * (`pullmirror:<store id>:`), so one Redis can serve other tenants and several separate
 * mirrors without their descriptors or claims mixing.
 */
export const KEY_PREFIX = 'pullmirror:';

export type RedisClient = Redis | Cluster;

/** How soon after a failure Redis is probed again, and the longest wait between probes. */
const PROBE_FIRST_MS = 1_000;
const PROBE_MAX_MS = 10_000;

/**
 * The one Redis connection of an instance, shared by the descriptor cache and the fleet
 * coordinator, and its circuit breaker.
 *
 * Redis only ever speeds things up or saves upstream requests, so it must never hold a
 * request: commands fail at once while it is unreachable (no offline queue, no retries, a
 * command timeout), callers carry on without it, and ioredis keeps reconnecting in the
 * background. A Redis that hangs (SIGSTOP, a stuck host) keeps its connection "ready" while
 * every command waits for the timeout; so the first failure opens the circuit: `available`
 * is false and callers skip Redis altogether, until a probe (one PING, half-open) answers.
 * An outage is logged once when it starts and once when it ends.
 */
export class RedisConnection {
  readonly client: RedisClient;
  private readonly logger: Logger;
  private down = false;
  private closed = false;
  private probe?: NodeJS.Timeout;

  constructor(client: RedisClient, logger: Logger) {
    this.client = client;
    this.logger = logger;
    client.on('error', (error: Error) => this.failed(error));
    client.on('ready', () => this.recovered());
  }

  /** Whether commands may be sent now; callers skip Redis altogether when not. */
  get available(): boolean {
    return !this.closed && !this.down && this.client.status === 'ready';
  }

  /**
   * What every key of this connection starts with (KEY_PREFIX and the store's id). ioredis
   * prefixes keys, not pub/sub channels: a channel is named under it by hand, so separate
   * mirrors on one Redis do not hear each other.
   */
  get prefix(): string {
    return String(this.client.options.keyPrefix ?? '');
  }

  /**
   * A second connection with this one's options (server, Sentinel or Cluster, credentials,
   * TLS), for SUBSCRIBE: a subscribed connection takes no other command. It reconnects by
   * itself, to the new master after a failover. Its errors are not logged: this connection's
   * circuit reports an outage, once.
   */
  subscriber(): RedisClient {
    const client = this.client instanceof Cluster ? this.client.duplicate() : this.client.duplicate();
    client.on('error', () => {});
    // Closed with this connection, whoever forgot it: a duplicate left open keeps reconnecting
    // (to a server that is gone, for ever) and keeps the process alive.
    this.subscribers.add(client);
    client.once('end', () => this.subscribers.delete(client));
    return client;
  }

  private readonly subscribers = new Set<RedisClient>();

  /** Resolves true once connected, false after `timeoutMs` (for short-lived tools such as gc). */
  async whenReady(timeoutMs: number): Promise<boolean> {
    const deadline = performance.now() + timeoutMs;
    while (!this.available && performance.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    return this.available;
  }

  /** Reports a failed command or connection: opens the circuit; logged only when an outage starts. */
  failed(error: Error): void {
    if (this.closed) return;
    if (!this.down) {
      this.down = true;
      this.logger.error('redis unreachable; carrying on without it until it is back', { error: error.message });
    }
    this.scheduleProbe(PROBE_FIRST_MS);
  }

  private recovered(): void {
    if (!this.down || this.closed) return;
    this.down = false;
    clearTimeout(this.probe);
    this.probe = undefined;
    this.logger.info('redis reachable again');
  }

  /**
   * While the circuit is open, one PING at a time tells whether Redis answers again: a hung
   * server gives no 'ready' event (its connection never closed), so only a probe can close
   * the circuit. A disconnected client reconnects by itself and 'ready' closes it.
   */
  private scheduleProbe(delayMs: number): void {
    if (this.probe || this.closed) return;
    this.probe = setTimeout(() => {
      if (this.client.status !== 'ready') {
        // Reconnecting: 'ready' will tell; look again later in case it never comes.
        this.probe = undefined;
        this.scheduleProbe(Math.min(delayMs * 2, PROBE_MAX_MS));
        return;
      }
      this.client.ping().then(
        () => {
          this.probe = undefined;
          this.recovered();
        },
        () => {
          this.probe = undefined;
          if (this.down) this.scheduleProbe(Math.min(delayMs * 2, PROBE_MAX_MS));
        },
      );
    }, delayMs);
    this.probe.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.probe);
    for (const subscriber of this.subscribers) subscriber.disconnect();
    this.subscribers.clear();
    try {
      await this.client.quit();
    } catch {
      this.client.disconnect();
    }
  }
}

/** Whether the configuration names a Redis at all. */
/**
 * Builds the client the way go-redis' UniversalClient reads distribution's section:
 * `mastername` → Sentinel, several `addrs` → Cluster, else one server (`url` wins over all).
 * `poolsize` is accepted but unused: one pipelined ioredis connection does the work of a pool.
 */
export function createRedisConnection(config: Config['redis'], logger: Logger, storeId?: string): RedisConnection {
  return connect(config, logger, storeId ? `${KEY_PREFIX}${storeId}:` : KEY_PREFIX);
}

/**
 * The key prefix of a named fleet (redis.fleet.name): `pullmirror:fleet:<name>:`, shared by
 * instances whatever their stores. A store id is 16 hex digits, so no store's prefix is one.
 */
export function fleetKeyPrefix(name: string): string {
  return `${KEY_PREFIX}fleet:${name}:`;
}

/**
 * A second connection for a named fleet's keys (download leases, lookups, heartbeats, who holds
 * which blob: see src/fleet/), beside the store's own (descriptors, access clock, eviction lock,
 * store probe), which stay per store: instances on disks of their own hold different blobs.
 */
export function createFleetConnection(config: Config['redis'], logger: Logger, name: string): RedisConnection {
  return connect(config, logger, fleetKeyPrefix(name));
}

function connect(config: Config['redis'], logger: Logger, keyPrefix: string): RedisConnection {
  const timeout = Math.max(config.readtimeout, config.writetimeout);
  const common: RedisOptions = {
    keyPrefix,
    connectTimeout: config.dialtimeout,
    commandTimeout: timeout,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Reconnect forever, never more than 2 s apart, so the cache comes back by itself.
    retryStrategy: (attempt) => Math.min(100 * attempt, 2_000),
    username: config.username,
    password: config.password,
    db: config.db,
    tls: tlsOptions(config.tls),
  };
  if (config.url) {
    return new RedisConnection(new Redis(config.url, { ...common, username: undefined, password: undefined, db: undefined, tls: urlTls(config) }), logger);
  }
  const addrs = config.addrs?.length ? config.addrs : [config.addr ?? '127.0.0.1:6379'];
  const nodes = addrs.map(parseHostPort);
  if (config.mastername) {
    return new RedisConnection(
      new Redis({ ...common, sentinels: nodes, name: config.mastername, sentinelTLS: common.tls, enableTLSForSentinelMode: Boolean(common.tls) }),
      logger,
    );
  }
  if (nodes.length > 1) {
    // Redis Cluster has one database: `db` is left out of the node options.
    const { keyPrefix, db, ...redisOptions } = common;
    void db;
    const options: ClusterOptions = { keyPrefix, enableOfflineQueue: false, redisOptions, clusterRetryStrategy: (attempt) => Math.min(100 * attempt, 2_000) };
    return new RedisConnection(new Cluster(nodes, options), logger);
  }
  return new RedisConnection(new Redis({ ...common, ...nodes[0] }), logger);
}

function urlTls(config: Config['redis']): RedisOptions['tls'] {
  if (config.url?.startsWith('rediss:')) return tlsOptions({ ...config.tls, enabled: true });
  return tlsOptions(config.tls);
}

function tlsOptions(tls: Config['redis']['tls']): RedisOptions['tls'] {
  if (!tls.enabled) return undefined;
  // distribution's clientcas are the CAs the client verifies the server with: our `ca` too.
  const cas = [tls.ca, ...(tls.clientcas ?? [])].filter((file): file is string => Boolean(file));
  return {
    cert: tls.certificate ? readFileSync(tls.certificate) : undefined,
    key: tls.key ? readFileSync(tls.key) : undefined,
    ca: cas.length > 0 ? cas.map((file) => readFileSync(file)) : undefined,
  };
}

function parseHostPort(addr: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*))(?::(\d+))?$/.exec(addr.trim());
  if (!match) throw new Error(`redis address "${addr}" is not host:port`);
  return { host: match[1] ?? (match[2] || '127.0.0.1'), port: Number(match[3] ?? 6379) };
}
