/**
 * An HTTP server in a process of its own that answers every GET with as many bytes as its path
 * says (`GET /1073741824`), from one constant buffer: a source far faster than any relay, for
 * measuring what a relay (spec/support/link-proxy.ts) passes. The test upstream registry is no
 * use for that: it serves one GET at 450–870 MiB/s here.
 *
 * `node spec/support/byte-source.ts` prints `{"event":"listening","port":N}`; `startByteSource()`
 * spawns it and reads the port.
 */
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startProcess, type StartedProcess } from './processes.ts';

const THIS_FILE = fileURLToPath(import.meta.url);

function serve(): void {
  const block = Buffer.alloc(1024 * 1024, 0x5a);
  // Raw TCP, HTTP/1.1 framing by hand: node:http would cost more than the relay under test.
  const server = net.createServer((socket) => {
    let head = '';
    socket.on('data', function onData(chunk: Buffer) {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      const size = Number(/^GET \/(\d+)/.exec(head)?.[1] ?? 0);
      socket.write(`HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: ${size}\r\nConnection: close\r\n\r\n`);
      let left = size;
      const pump = (): void => {
        while (left > 0) {
          const piece = left >= block.length ? block : block.subarray(0, left);
          left -= piece.length;
          if (!socket.write(piece)) {
            socket.once('drain', pump);
            return;
          }
        }
        socket.end();
      };
      pump();
    });
    socket.on('error', () => socket.destroy());
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ event: 'listening', port: (server.address() as net.AddressInfo).port })}\n`);
  });
  process.on('SIGTERM', () => process.exit(0));
}

export interface ByteSource {
  url: string;
  port: number;
  pid: number;
  process: StartedProcess;
  stop(): Promise<void>;
}

export async function startByteSource(): Promise<ByteSource> {
  const proc = startProcess(process.execPath, [THIS_FILE]);
  const deadline = performance.now() + 10_000;
  for (;;) {
    const line = proc
      .readLog()
      .split('\n')
      .find((l) => l.startsWith('{"event":"listening"'));
    if (line) {
      const { port } = JSON.parse(line) as { port: number };
      return { url: `http://127.0.0.1:${port}`, port, pid: proc.pid, process: proc, stop: () => proc.stop() };
    }
    if (proc.hasExited() || performance.now() > deadline) {
      await proc.stop();
      throw new Error(`byte source did not start:\n${proc.readLog()}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

if (process.argv[1] && path.resolve(process.argv[1]) === THIS_FILE) serve();
