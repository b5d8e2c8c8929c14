import { BlockList, isIP } from 'node:net';
import { parseProxyEntry } from '../config/addr.ts';

/**
 * The client's address for logs, believing X-Forwarded-For only from http.trustedproxies.
 * Behind nginx (`proxy_add_x_forwarded_for`) the header lists the client, then each proxy
 * that passed the request on; the socket's peer is the last proxy. Walking from the right,
 * trusted hops are skipped and the first address not trusted is the client: an address a
 * client wrote into the header itself sits left of it and is never believed.
 */
export class ClientAddress {
  private readonly trusted = new BlockList();
  readonly enabled: boolean;

  constructor(entries: string[]) {
    for (const entry of entries) {
      const parsed = parseProxyEntry(entry);
      if (parsed) this.trusted.addSubnet(parsed.network, parsed.prefix, parsed.family);
    }
    this.enabled = entries.length > 0;
  }

  of(peer: string | undefined, forwardedFor: string | string[] | undefined): string | undefined {
    if (!this.enabled || peer === undefined || forwardedFor === undefined || !this.isTrusted(peer)) return peer;
    const hops = (Array.isArray(forwardedFor) ? forwardedFor.join(',') : forwardedFor)
      .split(',')
      .map((hop) => stripPort(hop.trim()))
      .filter((hop) => isIP(hop) !== 0);
    for (let i = hops.length - 1; i >= 0; i--) {
      if (!this.isTrusted(hops[i]) || i === 0) return hops[i];
    }
    return peer;
  }

  /** Whether `address` is one of http.trustedproxies: only then are its X-Forwarded-* headers believed. */
  isTrusted(address: string): boolean {
    const plain = address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
    const family = isIP(plain);
    if (family === 0) return false;
    return this.trusted.check(plain, family === 4 ? 'ipv4' : 'ipv6');
  }
}

/** `203.0.113.7:51234` and `[2001:db8::1]:443` → the address; a bare address stays as it is. */
function stripPort(hop: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(hop);
  if (bracketed) return bracketed[1];
  const v4 = /^(\d+\.\d+\.\d+\.\d+):\d+$/.exec(hop);
  return v4 ? v4[1] : hop;
}
