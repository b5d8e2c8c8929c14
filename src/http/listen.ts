import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import type { Server } from 'node:http';

/*
 * Listening so that a burst of new connections is accepted while the mirror is busy.
 *
 * libuv accepts one connection per turn of the event loop (libuv#3696, in every Node since
 * 20). A turn that serves 500 keep-alive clients lasts tens of milliseconds, so a fleet that
 * opens 500 connections at once waited in the kernel's accept queue for up to 35 s: wrk counted
 * those connections as timed out. Several sockets listening on the one port (SO_REUSEPORT,
 * the kernel spreads new connections over them) accept one each per turn; every connection
 * still goes to the one HTTP server, so keep-alive, TLS and graceful shutdown are unchanged.
 */

export interface Listening {
  /** Stops accepting on every socket; resolves once every connection, however accepted, has closed. */
  close(): Promise<void>;
}

/**
 * Listens on host:port with `acceptors` sockets. The port is first bound alone, without
 * SO_REUSEPORT, so a port another process holds still fails with EADDRINUSE; with port 0
 * that first bind picks the port the others join.
 */
export async function listenWithAcceptors(server: Server, host: string | undefined, port: number, acceptors: number): Promise<Listening> {
  const backlog = 4096; // the kernel caps it at somaxconn, as Go's net package (distribution) asks for
  // server.close()'s callback counts only the connections its own socket accepted.
  const open = new Set<Socket>();
  let allClosed: (() => void) | undefined;
  server.on('connection', (socket: Socket) => {
    open.add(socket);
    socket.once('close', () => {
      open.delete(socket);
      if (open.size === 0) allClosed?.();
    });
  });
  const extras: NetServer[] = [];
  const listening: Listening = {
    async close() {
      for (const extra of extras) extra.close();
      server.close();
      if (open.size > 0) await new Promise<void>((resolve) => (allClosed = resolve));
    },
  };
  if (acceptors <= 1) {
    await listen(server, { port, host, backlog });
    return listening;
  }
  const probe = createNetServer();
  await listen(probe, { port, host, exclusive: true });
  const chosenPort = (probe.address() as { port: number }).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  try {
    await listen(server, { port: chosenPort, host, backlog, reusePort: true });
  } catch (error) {
    // A platform without SO_REUSEPORT: one socket, as before.
    if ((error as NodeJS.ErrnoException).code !== 'ENOTSUP' && (error as NodeJS.ErrnoException).code !== 'EINVAL') throw error;
    await listen(server, { port: chosenPort, host, backlog });
    return listening;
  }
  for (let i = 1; i < acceptors; i++) {
    // As http.Server's own socket does: no Nagle delay on small responses.
    const extra = createNetServer({ noDelay: true });
    extra.on('connection', (socket) => server.emit('connection', socket));
    await listen(extra, { port: chosenPort, host, backlog, reusePort: true });
    extras.push(extra);
  }
  return listening;
}

function listen(server: NetServer, options: { port: number; host: string | undefined; backlog?: number; reusePort?: boolean; exclusive?: boolean }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
