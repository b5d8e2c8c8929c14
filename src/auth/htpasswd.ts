import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import bcrypt from 'bcryptjs';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../logging/logger.ts';
import { SingleFlight } from '../util/single-flight.ts';

/** How long a checked user:password pair's answer is kept without running bcrypt again. */
const VERIFIED_TTL_MS = 60_000;
/** How often the file's modification time is looked at, so an edited file takes effect. */
const RELOAD_CHECK_MS = 5_000;

/**
 * An htpasswd file in distribution's format: one `user:hash` per line, bcrypt hashes only
 * (`htpasswd -B`, `$2y$`/`$2a$`/`$2b$`). Other hash kinds are skipped with a warning, as
 * distribution refuses them too.
 *
 * bcrypt is slow on purpose (tens of milliseconds per check, pure JS here), and a client
 * sends its credentials with every request: the answer for a pair is remembered for a minute,
 * a refusal too (dockerd repeats a wrong Docker Hub login on every pull). The memory holds an
 * HMAC of the pair under a key made at start, never the password itself.
 */
export class Htpasswd {
  readonly path: string;
  private readonly logger: Logger;
  private users = new Map<string, string>();
  private mtimeMs = 0;
  private lastCheck = 0;
  private readonly hmacKey = randomBytes(32);
  private readonly verified = new LRUCache<string, boolean>({ max: 10_000, ttl: VERIFIED_TTL_MS });
  private readonly inflight = new SingleFlight<boolean>();
  /**
   * Compared against for an unknown user, at the cost of the file's first entry, so a wrong
   * name takes as long as a wrong password. Made on first need.
   */
  private dummyHash?: string;

  /** Reads the file; throws (naming the path) when it cannot be read, so start-up stops. */
  constructor(path: string, logger: Logger) {
    this.path = path;
    this.logger = logger;
    this.load();
  }

  get userCount(): number {
    return this.users.size;
  }

  private load(): void {
    const stat = statSync(this.path);
    const users = new Map<string, string>();
    readFileSync(this.path, 'utf8')
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
    this.mtimeMs = stat.mtimeMs;
    this.verified.clear();
    this.dummyHash = undefined;
  }

  /** Re-reads the file when it changed (checked at most every few seconds); keeps the old users if it cannot. */
  private reloadIfChanged(): void {
    const now = Date.now();
    if (now - this.lastCheck < RELOAD_CHECK_MS) return;
    this.lastCheck = now;
    try {
      if (statSync(this.path).mtimeMs === this.mtimeMs) return;
      this.load();
      this.logger.info('htpasswd reloaded', { path: this.path, users: this.users.size });
    } catch (error) {
      this.logger.warn('htpasswd reload failed; keeping the users loaded before', { path: this.path, error: (error as NodeJS.ErrnoException).code });
    }
  }

  private dummy(): string {
    if (!this.dummyHash) {
      const first = this.users.values().next().value;
      const cost = first ? Number(first.slice(4, 6)) : 10;
      this.dummyHash = bcrypt.hashSync(randomBytes(12).toString('base64'), Math.min(Math.max(cost, 4), 14));
    }
    return this.dummyHash;
  }

  /** Whether the pair is in the file. */
  async verify(user: string, password: string): Promise<boolean> {
    this.reloadIfChanged();
    const key = createHmac('sha256', this.hmacKey).update(user).update('\0').update(password).digest('base64');
    const known = this.verified.get(key);
    if (known !== undefined) return known;
    return this.inflight.do(key, async () => {
      const hash = this.users.get(user);
      const ok = (await bcrypt.compare(password, hash ?? this.dummy())) && hash !== undefined;
      this.verified.set(key, ok);
      return ok;
    });
  }
}
