import type { Server } from 'node:http';
import type { Socket } from 'node:net';
import { RegistryError } from '../registry/errors.ts';

/**
 * Plain HTTP sent to the TLS port (a client configured with http:// for an https mirror) would
 * just see the connection drop. OpenSSL recognises the request line (ERR_SSL_HTTP_REQUEST); the
 * raw socket under the failed handshake then gets a 400 in plain text saying the port speaks
 * TLS, as Go's server (distribution) answers, with the OCI error body and http.headers.
 */
export function answerPlainHttpOnTls(server: Server, extraHeaders: Record<string, string[]>): void {
  // tlsClientError hands over the TLS socket; the plain socket under it is found by its peer.
  const raw = new Map<string, Socket>();
  const key = (socket: { remoteAddress?: string; remotePort?: number }) => `${socket.remoteAddress}|${socket.remotePort}`;
  server.prependListener('connection', (socket: Socket) => {
    const id = key(socket);
    raw.set(id, socket);
    socket.once('close', () => raw.delete(id));
  });
  server.on('tlsClientError', (error: NodeJS.ErrnoException, tlsSocket: Socket) => {
    const socket = raw.get(key(tlsSocket));
    if (error.code !== 'ERR_SSL_HTTP_REQUEST' || !socket?.writable) return;
    const body = JSON.stringify(new RegistryError('UNSUPPORTED', 'this port speaks TLS: the client sent plain HTTP; use https://', { status: 400 }).toJSON());
    let headers = '';
    for (const [name, values] of Object.entries(extraHeaders)) {
      if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name)) continue;
      for (const value of values) if (!/[\r\n]/.test(value)) headers += `${name}: ${value}\r\n`;
    }
    socket.end(
      'HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\n' +
        `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${headers}\r\n${body}`,
    );
  });
}
