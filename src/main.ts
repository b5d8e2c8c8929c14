#!/usr/bin/env node
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createMirror } from './app.ts';
import { ConfigError, loadConfig } from './config/load.ts';
import { createLogger } from './logging/logger.ts';

/**
 * Starts the mirror: `pullmirror [serve] [config.yml]`. Without a file, the schema's defaults
 * and REGISTRY_* environment variables make the whole configuration.
 */
async function main(argv: string[]): Promise<void> {
  const args = argv[0] === 'serve' ? argv.slice(1) : argv;
  let config;
  try {
    config = loadConfig({ file: args[0] ?? process.env.PULLMIRROR_CONFIG });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`pullmirror: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  const logger = createLogger(config.log);
  const mirror = createMirror(config, logger);
  const server = createServer({ maxHeaderSize: 16 * 1024 }, mirror.app);
  // Idle keep-alive connections should outlive a client's think time between requests.
  server.keepAliveTimeout = 65_000;
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
  installShutdown(server, mirror.close, logger, config.http.draintimeout);
}

/** `:5000`, `0.0.0.0:5000`, `[::1]:5000` → host and port (distribution's http.addr format). */
export function parseAddr(addr: string): { host: string | undefined; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!match) throw new ConfigError(`http.addr: expected host:port, got "${addr}"`);
  return { host: match[1] ?? (match[2] || undefined), port: Number(match[3]) };
}

function installShutdown(server: Server, close: () => Promise<void>, logger: ReturnType<typeof createLogger>, graceMs: number): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping', { signal, graceMs });
    server.close(() => {
      void close().finally(() => process.exit(0));
    });
    server.closeIdleConnections();
    setTimeout(() => {
      logger.warn('grace period over; closing remaining connections');
      server.closeAllConnections();
      process.exit(0);
    }, graceMs).unref();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

await main(process.argv.slice(2));
