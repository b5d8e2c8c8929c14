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
