import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../logging/logger.ts';
import { loginRefusals } from '../metrics/metrics.ts';
import { SingleFlight } from '../util/single-flight.ts';
import type { BcryptPool } from './bcrypt-pool.ts';
import type { LoginThrottle } from './login-throttle.ts';

/** How long a checked user:password pair's answer is kept without running bcrypt again. */
const VERIFIED_TTL_MS = 60_000;
/**
 * How often the file's modification time is looked at, so an edited file takes effect: by a
 * timer, never in a request (a stat per request was a system call on the hit path).
 */
const RELOAD_CHECK_MS = 5_000;
/** What a 429 for a full bcrypt queue tells the client to wait: checks take well under a second. */
const BUSY_RETRY_AFTER_S = 1;
/** The alphabet of bcrypt's base64, for the stand-in hash an unknown user is compared against. */
const BCRYPT_ALPHABET = './ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** How a login went: a value, so the middleware answers each case without exceptions. */
export type LoginOutcome =
  | { kind: 'valid' }
  | { kind: 'invalid' }
  /** Too many failures from the address or for the user name in this window. */
  | { kind: 'throttled'; retryAfterS: number }
  /** Every bcrypt thread is busy and the queue is full. */
  | { kind: 'busy'; retryAfterS: number };

/**
 * An htpasswd file in distribution's format: one `user:hash` per line, bcrypt hashes only
 * (`htpasswd -B`, `$2y$`/`$2a$`/`$2b$`). Other hash kinds are skipped with a warning, as
 * distribution refuses them too.
 *
 * bcrypt is slow on purpose (tens of milliseconds per check, pure JS here), and a client
 * sends its credentials with every request: the answer for a pair is remembered for a minute,
 * a refusal too (dockerd repeats a wrong Docker Hub login on every pull). The memory holds an
 * HMAC of the pair under a key made at start, never the password itself.
 *
 * bcrypt runs on the pool's worker threads, never on the event loop, and only for a pair not
 * answered within the minute; failed logins are throttled per address and per user name.
 */
export class Htpasswd {
  readonly path: string;
  private readonly logger: Logger;
  private users = new Map<string, string>();
  private mtimeMs = 0;
  private readonly watch: NodeJS.Timeout;
  private reloading = false;
  private readonly hmacKey = randomBytes(32);
  private readonly verified = new LRUCache<string, boolean>({ max: 10_000, ttl: VERIFIED_TTL_MS });
  private readonly inflight = new SingleFlight<LoginOutcome>();
  private readonly pool: BcryptPool;
  private readonly throttle: LoginThrottle;
  /**
   * Compared against for an unknown user, at the cost of the file's first entry, so a wrong
   * name takes as long as a wrong password. Made on first need.
   */
  private dummyHash?: string;

  /** Reads the file; throws (naming the path) when it cannot be read, so start-up stops. */
  constructor(path: string, logger: Logger, checks: { pool: BcryptPool; throttle: LoginThrottle; reloadCheckMs?: number }) {
    this.path = path;
    this.logger = logger;
    this.pool = checks.pool;
    this.throttle = checks.throttle;
    this.apply(readFileSync(path, 'utf8'), statSync(path).mtimeMs);
    // Unref'd: the watch never keeps the process alive.
    this.watch = setInterval(() => void this.reloadIfChanged(), checks.reloadCheckMs ?? RELOAD_CHECK_MS).unref();
  }

  /** Stops watching the file. */
  close(): void {
    clearInterval(this.watch);
  }

  get userCount(): number {
    return this.users.size;
  }

  /** Takes the users of the file's `text`, as of its modification time `mtimeMs`. */
  private apply(text: string, mtimeMs: number): void {
    const users = new Map<string, string>();
    text
      .split(/\r?\n/)
      .forEach((line, index) => {
        const trimmed = line.trim();
        if (trimmed === '' || trimmed.startsWith('#')) return;
        const colon = trimmed.indexOf(':');
        const user = trimmed.slice(0, colon);
        const hash = trimmed.slice(colon + 1);
        if (colon <= 0 || !/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) {
          // The line number only: the line may hold a hash or a typo'd password.
          this.logger.warn('htpasswd line skipped: not user:bcrypt-hash', { path: this.path, line: index + 1 });
          return;
        }
        users.set(user, hash);
      });
    this.users = users;
    this.mtimeMs = mtimeMs;
    this.verified.clear();
    this.dummyHash = undefined;
  }

  /** Re-reads the file when it changed (the watch calls it every few seconds); keeps the old users if it cannot. */
  private async reloadIfChanged(): Promise<void> {
    if (this.reloading) return;
    this.reloading = true;
    try {
      const { mtimeMs } = await stat(this.path);
      if (mtimeMs === this.mtimeMs) return;
      this.apply(await readFile(this.path, 'utf8'), mtimeMs);
      this.logger.info('htpasswd reloaded', { path: this.path, users: this.users.size });
    } catch (error) {
      this.logger.warn('htpasswd reload failed; keeping the users loaded before', { path: this.path, error: (error as NodeJS.ErrnoException).code });
    } finally {
      this.reloading = false;
    }
  }

  /**
   * A well-formed bcrypt hash of the file's first entry's cost that no password matches (random
   * salt and digest, no hashing needed): an unknown user is compared against it, so a wrong
   * name costs what a wrong password costs.
   */
  private dummy(): string {
    if (!this.dummyHash) {
      const first = this.users.values().next().value;
      const cost = Math.min(Math.max(first ? Number(first.slice(4, 6)) : 10, 4), 31);
      const random = [...randomBytes(53)].map((byte) => BCRYPT_ALPHABET[byte % 64]).join('');
      this.dummyHash = `$2b$${String(cost).padStart(2, '0')}$${random}`;
    }
    return this.dummyHash;
  }

  /**
   * Checks a client's user:password from `address`. In order: a throttled address is refused
   * before anything (even the cache); a pair answered within the minute is answered again
   * without bcrypt; a throttled user name is refused; then bcrypt runs on the pool, once per
   * pair however many requests carry it, or 'busy' when the pool's queue is full.
   */
  async login(user: string, password: string, address: string): Promise<LoginOutcome> {
    const blockedFor = this.throttle.addressBlocked(address);
    if (blockedFor !== undefined) return this.refused({ kind: 'throttled', retryAfterS: blockedFor });
    const key = createHmac('sha256', this.hmacKey).update(user).update('\0').update(password).digest('base64');
    const known = this.verified.get(key);
    if (known !== undefined) return known ? { kind: 'valid' } : this.refused({ kind: 'invalid' });
    const outcome = await this.inflight.do(key, () => this.check(key, user, password, address));
    return outcome.kind === 'valid' ? outcome : this.refused(outcome);
  }

  private async check(key: string, user: string, password: string, address: string): Promise<LoginOutcome> {
    const admission = this.throttle.admit(address, user);
    if (!admission.admitted) return { kind: 'throttled', retryAfterS: admission.retryAfterS };
    const hash = this.users.get(user);
    const compared = this.pool.compare(password, hash ?? this.dummy());
    if (compared === 'busy') {
      admission.done(true);
      return { kind: 'busy', retryAfterS: BUSY_RETRY_AFTER_S };
    }
    let ok: boolean;
    try {
      ok = (await compared) && hash !== undefined;
    } catch (error) {
      admission.done(true); // a lost worker is no failed login
      throw error;
    }
    admission.done(ok);
    this.verified.set(key, ok);
    return ok ? { kind: 'valid' } : { kind: 'invalid' };
  }

  private refused(outcome: LoginOutcome): LoginOutcome {
    loginRefusals.labels(outcome.kind === 'invalid' ? 'failed' : outcome.kind).inc();
    return outcome;
  }
}
