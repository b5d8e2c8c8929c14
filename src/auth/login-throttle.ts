import { isIP } from 'node:net';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../logging/logger.ts';

/** What a password check may do next: go on (and report how it ended), or wait. */
export type Admission = { admitted: true; done(ok: boolean): void } | { admitted: false; scope: 'address' | 'user'; retryAfterS: number };

interface Window {
  /** When this window ends (ms since the epoch). */
  until: number;
  failures: number;
  /** Checks admitted and not yet answered: they count, so a burst cannot outrun the limit. */
  pending: number;
  /** The refusal of this window was logged. */
  logged: boolean;
}

/**
 * Failed logins per client address and per user name, in fixed windows: after `failures`
 * failures in a window (checks in flight count as failures until they are answered), further
 * checks for that address or name are refused until the window ends. Refusals are logged once
 * per window and key, with the address and user name, never a password. The maps are bounded
 * (least recently used keys go first), so a spray of names or addresses costs bounded memory.
 */
export class LoginThrottle {
  private readonly failures: number;
  private readonly windowMs: number;
  private readonly logger: Logger;
  private readonly now: () => number;
  private readonly addresses = new LRUCache<string, Window>({ max: 100_000 });
  private readonly users = new LRUCache<string, Window>({ max: 100_000 });

  constructor(options: { failures: number; windowMs: number; logger: Logger; now?: () => number }) {
    if (!Number.isInteger(options.failures) || options.failures < 1) throw new RangeError(`failures: expected an integer >= 1, got ${options.failures}`);
    if (!(options.windowMs > 0)) throw new RangeError(`windowMs: expected > 0, got ${options.windowMs}`);
    this.failures = options.failures;
    this.windowMs = options.windowMs;
    this.logger = options.logger;
    // Windows are intervals: a monotonic clock, which a wall-clock step (NTP, a VM resumed) does not move.
    this.now = options.now ?? (() => performance.now());
  }

  /**
   * Seconds until the address may try again, or undefined when it may now. Asked before
   * anything else, even the cache of verified pairs: a throttled address learns nothing,
   * not even that a guess matched a pair someone else just used.
   */
  addressBlocked(address: string): number | undefined {
    const window = this.current(this.addresses, addressKey(address));
    if (window.failures + window.pending < this.failures) return undefined;
    this.refused(window, 'address', { address });
    return this.retryAfter(window);
  }

  /** Admits one bcrypt check for address and user, or says which of them is throttled and for how long. */
  admit(address: string, user: string): Admission {
    const byAddress = this.current(this.addresses, addressKey(address));
    const byUser = this.current(this.users, user);
    if (byAddress.failures + byAddress.pending >= this.failures) {
      this.refused(byAddress, 'address', { address });
      return { admitted: false, scope: 'address', retryAfterS: this.retryAfter(byAddress) };
    }
    if (byUser.failures + byUser.pending >= this.failures) {
      this.refused(byUser, 'user', { address, user: user.slice(0, 100) });
      return { admitted: false, scope: 'user', retryAfterS: this.retryAfter(byUser) };
    }
    byAddress.pending++;
    byUser.pending++;
    let finished = false;
    return {
      admitted: true,
      done: (ok: boolean) => {
        if (finished) return;
        finished = true;
        for (const window of [byAddress, byUser]) {
          window.pending--;
          if (!ok) window.failures++;
        }
      },
    };
  }

  private current(map: LRUCache<string, Window>, key: string): Window {
    const now = this.now();
    let window = map.get(key);
    if (!window || (window.until <= now && window.pending === 0)) {
      window = { until: now + this.windowMs, failures: 0, pending: 0, logged: false };
      map.set(key, window);
    } else if (window.until <= now) {
      // Checks of the last window are still running: a new window, carrying them.
      window.until = now + this.windowMs;
      window.failures = 0;
      window.logged = false;
    }
    return window;
  }

  private retryAfter(window: Window): number {
    return Math.max(1, Math.ceil((window.until - this.now()) / 1000));
  }

  private refused(window: Window, scope: 'address' | 'user', fields: Record<string, string>): void {
    if (window.logged) return;
    window.logged = true;
    this.logger.warn('logins throttled', { scope, ...fields, failures: this.failures, windowS: this.windowMs / 1000, retryAfterS: this.retryAfter(window) });
  }
}

/**
 * What failures are counted against: an IPv4 address (IPv4-mapped IPv6 too), or the /64 of an
 * IPv6 address, since one host holds a whole /64 and could otherwise try from 2^64 addresses.
 */
export function addressKey(address: string): string {
  if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) return address.slice(7);
  if (isIP(address) !== 6) return address;
  const [head, tail = ''] = address.split('%')[0].split('::');
  const left = head === '' ? [] : head.split(':');
  const right = address.includes('::') ? (tail === '' ? [] : tail.split(':')) : [];
  const groups = address.includes('::') ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((group) => Number.parseInt(group, 16).toString(16)).join(':')}::/64`;
}
