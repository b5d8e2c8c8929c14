import { isIPv4, isIPv6 } from 'node:net';

/**
 * `:5000`, `0.0.0.0:5000`, `[::1]:5000` → host and port (distribution's http.addr format);
 * undefined for anything else, so the schema refuses it before `serve` would try to listen.
 */
export function parseAddr(addr: string): { host: string | undefined; port: number } | undefined {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535) return undefined;
  return { host: match[1] ?? (match[2] || undefined), port };
}

/** `10.0.0.0/8`, `127.0.0.1`, `fd00::/8` → network, prefix length and family; undefined for anything else. */
export function parseProxyEntry(entry: string): { network: string; prefix: number; family: 'ipv4' | 'ipv6' } | undefined {
  const [address, bits, ...rest] = entry.trim().split('/');
  if (rest.length > 0) return undefined;
  const family = isIPv4(address) ? 'ipv4' : isIPv6(address) ? 'ipv6' : undefined;
  if (!family) return undefined;
  const max = family === 'ipv4' ? 32 : 128;
  const prefix = bits === undefined ? max : /^\d+$/.test(bits) ? Number(bits) : NaN;
  if (!(prefix >= 0 && prefix <= max)) return undefined;
  return { network: address, prefix, family };
}

/** A peer address: where an instance is dialed, and the same as `host:port` for a URL. */
export interface PeerAddress {
  /** A DNS name, an IPv4 address, or an IPv6 one (without brackets). */
  host: string;
  port: number;
  /** `host:port`, an IPv6 host in brackets: the URL's authority. */
  authority: string;
}

const DNS_NAME = /^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/i;

/**
 * An instance's address for its peers (redis.fleet.peers.advertise, and what another instance's
 * heartbeat says): `host:port` and nothing else, since it is dialed. The host is a DNS name, an
 * IPv4 address or a bracketed IPv6 one; no scheme, user, path or zone; never an unspecified
 * address (0.0.0.0, ::) or an empty host, which name no one to dial, nor a name whose last
 * label is digits (`1.2.3`, which a resolver reads as an IPv4 shorthand). The port is 1–65535
 * (0 as well with `anyPort`: the advertise key's "the port addr bound"). Undefined otherwise.
 */
export function parsePeerAddress(text: string, options: { anyPort?: boolean } = {}): PeerAddress | undefined {
  if (typeof text !== 'string' || text.length > 300) return undefined;
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(text);
  if (!match) return undefined;
  const port = Number(match[3]);
  if (port > 65535 || (port === 0 && !options.anyPort)) return undefined;
  if (match[1] !== undefined) {
    const host = match[1].toLowerCase();
    if (!isIPv6(host)) return undefined;
    // Canonical form, so `0:0::0` is seen for the `::` it is.
    const canonical = new URL(`http://[${host}]/`).hostname.slice(1, -1);
    if (canonical === '::') return undefined;
    return { host: canonical, port, authority: `[${canonical}]:${port}` };
  }
  const host = match[2].toLowerCase();
  if (isIPv4(host)) {
    if (host.startsWith('0.')) return undefined;
    return { host, port, authority: `${host}:${port}` };
  }
  if (!DNS_NAME.test(host) || /(^|\.)\d+$/.test(host)) return undefined;
  return { host, port, authority: `${host}:${port}` };
}
