import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { createMirror, type Mirror } from '../app.ts';
import { ConfigError } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { createLogger, type Logger } from '../logging/logger.ts';
import { listenWithAcceptors, type Listening } from '../http/listen.ts';
import { answerPlainHttpOnTls } from '../http/plain-http-on-tls.ts';
import { RegistryError } from '../registry/errors.ts';
import { scheduleWarm } from '../warm/schedule.ts';
import { parseAddr as parseConfigAddr, parsePeerAddress } from '../config/addr.ts';
import { loadConfigOrExit, logConfigWarnings } from './config-arg.ts';

/**
 * `pullmirror serve [config.yml]`: starts the mirror. Without a file, the schema's defaults
 * and REGISTRY_* environment variables make the whole configuration.
 */
export async function serve(args: string[]): Promise<void> {
  const config = loadConfigOrExit(args[0], { serving: true, logWarnings: true });
  const logger = createLogger(config.log);
  logConfigWarnings(config, logger);
  let mirror: Mirror;
  let server: Server;
  try {
    mirror = await createMirror(config, logger);
    server = createHttpServer(config, mirror);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`pullmirror: ${error.message}\n`);
    process.exit(2);
  }
  // Idle keep-alive connections should outlive a client's think time between requests.
  server.keepAliveTimeout = 65_000;
  applyTimeouts(server, config.http);
  server.on('clientError', (error: NodeJS.ErrnoException, socket: Socket) => answerClientError(error, socket, config.http.headers));
  if (config.http.tls) answerPlainHttpOnTls(server, config.http.headers);
  const { host, port } = parseAddr(config.http.addr);
  let listening: Listening;
  try {
    listening = await listenWithAcceptors(server, host, port, config.http.acceptors);
  } catch (error) {
    // Another mirror on the port, a port below 1024, an address this host does not have.
    const code = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
    process.stderr.write(`pullmirror: cannot listen on ${config.http.addr}: ${code}\n`);
    process.exit(1);
  }
  // The debug address first: 'listening' tells that every address answers.
  const extras: (() => void)[] = [];
  if (mirror.debugApp && config.http.debug.addr) {
    const debugServer = createServer(mirror.debugApp);
    const debug = parseAddr(config.http.debug.addr);
    try {
      await new Promise<void>((resolve, reject) => {
        debugServer.once('error', reject);
        debugServer.listen(debug.port, debug.host, () => resolve());
      });
    } catch (error) {
      // As for the main address: one line naming the address and the reason, no stack trace.
      process.stderr.write(`pullmirror: cannot listen on ${config.http.debug.addr} (http.debug.addr): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}\n`);
      process.exit(1);
    }
    const debugAddress = debugServer.address() as AddressInfo;
    logger.info('debug listening', { addr: `${debugAddress.address}:${debugAddress.port}` });
    extras.push(() => debugServer.close());
  }
  const peerAddress = await listenForPeers(config, mirror, logger, extras);
  const address = server.address() as AddressInfo;
  logger.info('listening', {
    addr: `${address.address}:${address.port}`,
    tls: config.http.tls !== undefined,
    upstream: mirror.upstream.url.origin,
    root: config.storage.filesystem.rootdirectory,
  });
  mirror.announce(`${address.address}:${address.port}`, peerAddress);
  if (config.proxy.warm) extras.push(scheduleWarm(config.proxy.warm, selfUrl(address), logger));
  installShutdown(server, listening, mirror, logger, config.http.draintimeout, extras);
}

/**
 * The peer listener (redis.fleet.peers.addr), on its own server: other instances of the fleet
 * fetch blobs there; the client port serves none of it. Resolves with the address they dial
 * (redis.fleet.peers.advertise, its port 0 standing for the port bound), undefined without a
 * listener. A port that cannot be bound stops start-up as the main address does.
 */
async function listenForPeers(config: Config, mirror: Mirror, logger: Logger, extras: (() => void)[]): Promise<string | undefined> {
  const settings = config.redis.fleet.peers;
  if (!mirror.peerApp || settings.addr === undefined || settings.advertise === undefined) return undefined;
  const peerServer = createServer({ maxHeaderSize: 16 * 1024 }, mirror.peerApp);
  applyTimeouts(peerServer, config.http);
  const { host, port } = parseAddr(settings.addr);
  try {
    await new Promise<void>((resolve, reject) => {
      peerServer.once('error', reject);
      peerServer.listen(port, host, () => resolve());
    });
  } catch (error) {
    process.stderr.write(`pullmirror: cannot listen on ${settings.addr} (redis.fleet.peers.addr): ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}\n`);
    process.exit(1);
  }
  const bound = peerServer.address() as AddressInfo;
  // The schema checked it already: a host other instances can dial, a port (0: the one bound).
  const advertised = parsePeerAddress(settings.advertise, { anyPort: true })!;
  const peerAddress = advertised.port === 0 ? `${advertised.authority.slice(0, -':0'.length)}:${bound.port}` : advertised.authority;
  logger.info('peers listening', { addr: `${bound.address}:${bound.port}`, advertise: peerAddress });
  extras.push(() => {
    peerServer.close();
    // A peer's transfer in flight ends with the process: it goes on from upstream or another peer.
    peerServer.closeIdleConnections();
  });
  return peerAddress;
}

/**
 * A connection that sends half a request is destroyed after http.headertimeout (Node checks
 * the deadline every `connectionsCheckingInterval`, set at creation, see createHttpServer).
 * http.sendtimeout is armed by the blob handler while it sends, not here: a socket timeout on
 * the whole server would also cut requests that wait on a slow upstream.
 */
function applyTimeouts(server: Server, http: Config['http']): void {
  server.headersTimeout = http.headertimeout;
  // Node requires requestTimeout >= headersTimeout unless it is 0; a GET has no body to wait for.
  server.requestTimeout = 0;
}

/** This process's own URL, for the warm schedule: loopback when listening on every address. */
function selfUrl(address: AddressInfo): string {
  if (address.address === '0.0.0.0' || address.address === '::') return `http://${address.family === 'IPv6' ? '[::1]' : '127.0.0.1'}:${address.port}`;
  return `http://${address.family === 'IPv6' ? `[${address.address}]` : address.address}:${address.port}`;
}

/**
 * Plain HTTP, or HTTPS with http.tls (distribution's keys), so a remote dockerd can use the
 * mirror without listing it in insecure-registries. With http.tls.clientcas, clients must
 * present a certificate signed by one of those CAs (mutual TLS).
 */
function createHttpServer(config: Config, mirror: Mirror): Server {
  const tls = config.http.tls;
  // The header deadline is checked this often: a tenth of it, between 250 ms and Node's 30 s.
  const connectionsCheckingInterval = Math.min(30_000, Math.max(250, Math.floor(config.http.headertimeout / 10)));
  const options = { maxHeaderSize: 16 * 1024, connectionsCheckingInterval };
  if (!tls) return createServer(options, mirror.app);
  const read = (key: string, file: string) => {
    try {
      return readFileSync(file);
    } catch (error) {
      throw new ConfigError(`http.tls.${key}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  };
  const clientCas = tls.clientcas?.map((file, index) => read(`clientcas.${index}`, file));
  try {
    return createHttpsServer(
      {
        ...options,
        cert: read('certificate', tls.certificate),
        key: read('key', tls.key),
        minVersion: tls.minimumtls === 'tls1.3' ? 'TLSv1.3' : 'TLSv1.2',
        ...(clientCas?.length ? { ca: clientCas, requestCert: true, rejectUnauthorized: true } : {}),
      },
      mirror.app,
    );
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    // A key that does not match the certificate, or PEM that is not one: the message names no secret.
    throw new ConfigError(`http.tls: cannot use the certificate and key: ${(error as Error).message}`);
  }
}

/** `:5000`, `0.0.0.0:5000`, `[::1]:5000` → host and port (distribution's http.addr format). */
export function parseAddr(addr: string): { host: string | undefined; port: number } {
  const parsed = parseConfigAddr(addr);
  // The schema refused any other address already; this is for a caller that skipped it.
  if (!parsed) throw new ConfigError(`http.addr: expected host:port, got "${addr}"`);
  return parsed;
}

/**
 * Requests Node's parser refuses (oversized headers, a TLS ClientHello on this plain-HTTP
 * port, garbage) get a status and an OCI error body where the socket still takes one.
 */
function answerClientError(error: NodeJS.ErrnoException & { code?: string }, socket: Socket, extraHeaders: Record<string, string[]>): void {
  if (!socket.writable || (error.code === 'ECONNRESET')) {
    socket.destroy();
    return;
  }
  const tooLarge = error.code === 'HPE_HEADER_OVERFLOW';
  // http.headertimeout: the request head did not arrive in time.
  const late = error.code === 'ERR_HTTP_REQUEST_TIMEOUT';
  const status = tooLarge ? 431 : late ? 408 : 400;
  const reason = tooLarge ? 'Request Header Fields Too Large' : late ? 'Request Timeout' : 'Bad Request';
  const message = tooLarge ? 'request headers too large' : late ? 'the request head did not arrive within http.headertimeout' : 'malformed HTTP request';
  const body = JSON.stringify(new RegistryError('UNSUPPORTED', message, { status }).toJSON());
  // Node's parser gave up, so the method is read from the raw bytes: a HEAD gets no body.
  const head = (error as { rawPacket?: Buffer }).rawPacket?.subarray(0, 5).toString('latin1') === 'HEAD ';
  // Ended, then destroyed if still open 2 s later: a client that never reads never sees our FIN,
  // and the half-closed socket would hold its descriptor for good (400 such clients held 400
  // descriptors past the header timeout). Not destroyed at once: unread bytes of the client's
  // would make the kernel reset the connection before it reads the answer.
  const fallback = setTimeout(() => socket.destroy(), 2_000);
  fallback.unref();
  socket.once('close', () => clearTimeout(fallback));
  socket.end(
    `HTTP/1.1 ${status} ${reason}\r\n` +
      `Content-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n` +
      securityHeaderLines(extraHeaders) +
      `\r\n${head ? '' : body}`,
  );
}

/** http.headers as raw header lines; names and values with line breaks are left out. */
function securityHeaderLines(headers: Record<string, string[]>): string {
  let lines = '';
  for (const [name, values] of Object.entries(headers)) {
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) continue;
    for (const value of values) if (!/[\r\n]/.test(value)) lines += `${name}: ${value}\r\n`;
  }
  return lines;
}

/**
 * SIGTERM: stop accepting, let responses and blob downloads in flight finish within the
 * grace period (http.draintimeout), then exit.
 */
function installShutdown(server: Server, listening: Listening, mirror: Mirror, logger: Logger, graceMs: number, extras: (() => void)[] = []): void {
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info('stopping', { signal, graceMs });
    for (const stopExtra of extras) stopExtra();
    const deadline = setTimeout(() => {
      logger.warn('grace period over; closing remaining connections');
      server.closeAllConnections();
      process.exit(0);
    }, graceMs);
    deadline.unref();
    const closed = listening.close();
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
