import { createHmac, timingSafeEqual } from 'node:crypto';

/*
 * How the instances of a fleet authenticate their requests to each other (the peer listener,
 * redis.fleet.peers): every request carries an expiry and an HMAC-SHA256 keyed by http.secret
 * over the method, the path with its query, and that expiry:
 *
 *   Authorization: Pullmirror-Peer expires=<unix seconds>, signature=<base64url HMAC>
 *
 * A signature made for one request says nothing of another (a GET is no HEAD, one digest is no
 * other), and none is good past its expiry, so a request seen on the wire is worth a few seconds
 * of the same request at most. The secret itself never leaves the process.
 */

export const PEER_AUTH_SCHEME = 'Pullmirror-Peer';

/** How long a signature the client makes is good for: covers clock skew between hosts, no more. */
export const SIGNATURE_LIFETIME_S = 60;
/**
 * Expiries further ahead than this are refused: a signature good for hours would be a password
 * sent in the clear. Twice the lifetime, so a client whose clock runs a minute ahead still passes.
 */
const MAX_AHEAD_S = 2 * SIGNATURE_LIFETIME_S;

/** Why a request was refused (the label of pullmirror_peer_auth_failures_total). */
export type PeerAuthFailure = 'missing' | 'malformed' | 'expired' | 'forged';

export type PeerAuthResult = { ok: true } | { ok: false; reason: PeerAuthFailure };

/**
 * Signs and checks peer requests with one secret. The HMAC key is derived from the secret for
 * this one use, so a signature made here can never be mistaken for anything else keyed by
 * http.secret (distribution signs its upload state with it).
 */
export class PeerAuth {
  private readonly key: Buffer;
  private readonly now: () => number;

  /** `now`: the clock in milliseconds (tests move it). */
  constructor(secret: string, now: () => number = Date.now) {
    if (secret.length === 0) throw new Error('the peer secret is empty');
    this.key = createHmac('sha256', secret).update('pullmirror peer requests v1').digest();
    this.now = now;
  }

  /** The Authorization header value for a request of `method` to `target` (path with query). */
  sign(method: string, target: string): string {
    const expires = Math.floor(this.now() / 1000) + SIGNATURE_LIFETIME_S;
    return `${PEER_AUTH_SCHEME} expires=${expires}, signature=${this.mac(method, target, expires).toString('base64url')}`;
  }

  /** Checks a request's Authorization header; the comparison takes the same time whatever the signature. */
  verify(method: string, target: string, header: string | undefined): PeerAuthResult {
    if (header === undefined || header === '') return { ok: false, reason: 'missing' };
    const match = /^Pullmirror-Peer expires=(\d{1,12}), signature=([A-Za-z0-9_-]{43})$/.exec(header);
    if (!match) return { ok: false, reason: 'malformed' };
    const expires = Number(match[1]);
    const given = Buffer.from(match[2], 'base64url');
    // A signature of the wrong length cannot be compared in constant time: 43 characters are 32 bytes.
    if (given.length !== 32) return { ok: false, reason: 'malformed' };
    // Checked before the expiry, so a forged request never learns whether its expiry would do.
    if (!timingSafeEqual(given, this.mac(method, target, expires))) return { ok: false, reason: 'forged' };
    const nowS = Math.floor(this.now() / 1000);
    if (expires < nowS) return { ok: false, reason: 'expired' };
    if (expires > nowS + MAX_AHEAD_S) return { ok: false, reason: 'malformed' };
    return { ok: true };
  }

  private mac(method: string, target: string, expires: number): Buffer {
    // Fields joined by a newline, which neither a method nor a request target may hold.
    return createHmac('sha256', this.key).update(`${method.toUpperCase()}\n${target}\n${expires}`).digest();
  }
}
