/**
 * Small TCP stand-ins for what sits between two instances of a fleet: a relay that can flip a
 * byte of what the server sends back or stop relaying it, and a listener that only records who
 * connected.
 *
 * Why a fake: a real network does not corrupt bytes on demand (TCP's checksums catch most
 * corruption, but a faulty NIC offload, a broken middlebox or a bad RAM stick on a peer do
 * not), a link that goes silent while the connection stays up (a stalled middlebox, a peer
 * wedged mid-write) cannot be made from a healthy process, and "nobody dialed this address"
 * can only be seen from the address itself.
 */
import net from 'node:net';

export interface TcpRelay {
  /** `127.0.0.1:port`, to advertise in place of the target. */
  address: string;
  port: number;
  /** Connections accepted so far. */
  connections: number;
  /** Flip the bits of the byte at this offset of every server → client stream from now on; undefined: relay as is. */
  flipByteAt: number | undefined;
  /** Stop relaying what the server sends after this many bytes of every stream from now on (the connection stays open); undefined: relay all. */
  stallAfter: number | undefined;
  close(): Promise<void>;
}

/** A relay to `target` (host:port) on 127.0.0.1, port picked by the kernel. */
export async function startTcpRelay(target: string): Promise<TcpRelay> {
  const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
  const sockets = new Set<net.Socket>();
  const relay = {
    address: '',
    port: 0,
    connections: 0,
    flipByteAt: undefined as number | undefined,
    stallAfter: undefined as number | undefined,
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = net.createServer((client) => {
    relay.connections++;
    const upstream = net.connect(port, host);
    sockets.add(client).add(upstream);
    const flipAt = relay.flipByteAt;
    const stallAfter = relay.stallAfter;
    let position = 0;
    upstream.on('data', (chunk: Buffer) => {
      if (stallAfter !== undefined && position + chunk.length > stallAfter) {
        // Silent from here on: the server's bytes are read and dropped, the client hears nothing.
        if (position < stallAfter) client.write(chunk.subarray(0, stallAfter - position));
        position = stallAfter;
        return;
      }
      if (flipAt !== undefined && position <= flipAt && flipAt < position + chunk.length) {
        chunk = Buffer.from(chunk);
        chunk[flipAt - position] ^= 0xff;
      }
      position += chunk.length;
      if (!client.write(chunk)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
    client.on('data', (chunk: Buffer) => upstream.write(chunk));
    const end = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    for (const socket of [client, upstream]) {
      socket.on('error', end);
      socket.on('close', end);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  relay.port = (server.address() as net.AddressInfo).port;
  relay.address = `127.0.0.1:${relay.port}`;
  return relay;
}

export interface ConnectionRecorder {
  address: string;
  port: number;
  /** Connections accepted so far (each closed at once). */
  connections: number;
  close(): Promise<void>;
}

/** A listener on 127.0.0.1 that counts the connections it gets and closes each. */
export async function startConnectionRecorder(): Promise<ConnectionRecorder> {
  const recorder = { address: '', port: 0, connections: 0, close: async () => new Promise<void>((resolve) => server.close(() => resolve())) };
  const server = net.createServer((socket) => {
    recorder.connections++;
    socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  recorder.port = (server.address() as net.AddressInfo).port;
  recorder.address = `127.0.0.1:${recorder.port}`;
  return recorder;
}
