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
