import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { createMirror, type Mirror } from '../app.ts';
import { ConfigError } from '../config/load.ts';
import { createLogger, type Logger } from '../logging/logger.ts';
import { RegistryError } from '../registry/errors.ts';
import { loadConfigOrExit } from './config-arg.ts';

/**
 * `pullmirror serve [config.yml]`: starts the mirror. Without a file, the schema's defaults
 * and REGISTRY_* environment variables make the whole configuration.
 */
export async function serve(args: string[]): Promise<void> {
  const config = loadConfigOrExit(args[0]);
  const logger = createLogger(config.log);
  const mirror = await createMirror(config, logger);
  const server = createServer({ maxHeaderSize: 16 * 1024 }, mirror.app);
  // Idle keep-alive connections should outlive a client's think time between requests.
  server.keepAliveTimeout = 65_000;
  server.on('clientError', answerClientError);
  const { host, port } = parseAddr(config.http.addr);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const address = server.address() as AddressInfo;
  logger.info('listening', {
    addr: `${address.address}:${address.port}`,
    upstream: mirror.upstream.url.origin,
    root: config.storage.filesystem.rootdirectory,
  });
  installShutdown(server, mirror, logger, config.http.draintimeout);
}

/** `:5000`, `0.0.0.0:5000`, `[::1]:5000` → host and port (distribution's http.addr format). */
export function parseAddr(addr: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!match) throw new ConfigError(`http.addr: expected host:port, got "${addr}"`);
  return { host: match[1] ?? (match[2] || undefined), port: Number(match[3]) };
}

/**
 * Requests Node's parser refuses (oversized headers, a TLS ClientHello on this plain-HTTP
 * port, garbage) get a status and an OCI error body where the socket still takes one.
 */
function answerClientError(error: NodeJS.ErrnoException & { code?: string }, socket: Socket): void {
  if (!socket.writable || (error.code === 'ECONNRESET')) {
    socket.destroy();
    return;
  }
  const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
  const status = tooLarge ? 431 : 400;
  const body = JSON.stringify(
    new RegistryError('UNSUPPORTED', tooLarge ? 'request headers too large' : 'malformed HTTP request', { status }).toJSON(),
  );
  socket.end(
    `HTTP/1.1 ${status} ${tooLarge ? 'Request Header Fields Too Large' : 'Bad Request'}\r\n` +
      `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * SIGTERM: stop accepting, let responses and blob downloads in flight finish within the
 * grace period (http.draintimeout), then exit.
 */
function installShutdown(server: Server, mirror: Mirror, logger: Logger, graceMs: number): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping', { signal, graceMs });
    const deadline = setTimeout(() => {
      logger.warn('grace period over; closing remaining connections');
      server.closeAllConnections();
      process.exit(0);
    }, graceMs);
    deadline.unref();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    // Keep-alive connections become idle as their last response ends: close them as they do.
    const sweeper = setInterval(() => server.closeIdleConnections(), 100);
    server.closeIdleConnections();
    await closed;
    clearInterval(sweeper);
    await mirror.drain();
    await mirror.close();
    logger.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
}
