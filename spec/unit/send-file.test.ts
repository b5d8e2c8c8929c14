import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, writeFileSync } from 'node:fs';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { chunkBuffersOut, sendFileRange, type FileBytes } from '../../src/storage/send-file.ts';
import { tempDir } from '../support/processes.ts';
import { parseRawResponse, rawExchange } from '../support/raw-http.ts';
import { eventually } from '../support/wait.ts';

/*
 * A client that leaves while the sender waits: what the sender waited on may still fail later
 * (a fill that turns out bad, a socket write that errors). That late failure must be nobody's
 * unhandled rejection: Node ends the process on one, and a mirror must not die because a
 * client hung up (seen in CI: blob-faults "own fill: the client leaves mid-body").
 */
describe('sendFileRange when the client has gone', () => {
  it('rejects with the client gone, and a source that fails afterwards crashes nothing', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const res = new Writable({ write: (_chunk, _encoding, callback) => callback() });
      res.destroy();
      const source: FileBytes = {
        fd: -1,
        // The fill fails a moment after the client left.
        readableUpTo: () => sleep(20).then(() => Promise.reject(new Error('blob fill failed'))),
      };
      await assert.rejects(sendFileRange(source, res, 0, 1023), /client closed the connection/);
      await sleep(100);
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

/*
 * Over real HTTP: the body goes to the socket itself once the headers are out (when the
 * response has a Content-Length and its turn on the connection), through the response
 * otherwise; the next batch is read while one is written; a client that falls behind lets go of
 * what was read ahead, which is read again. Whatever the path, a client gets exactly the bytes.
 */
describe('sendFileRange over HTTP', () => {
  const dir = tempDir('pullmirror-send-file');
  // Not a whole number of buffers: the last read is a short one.
  const content = randomBytes(48 * 1024 * 1024 + 12_345);
  const file = path.join(dir.path, 'blob');
  let server: Server;
  let port: number;
  /** The server side of each connection, to watch what it has queued. */
  const serverSockets: Socket[] = [];

  /** GET /?start=&end=&length=0 sends bytes start..end, with a Content-Length unless length=0 (chunked). */
  function serve(url: string, res: ServerResponse): void {
    const query = new URL(url, 'http://x').searchParams;
    const start = Number(query.get('start') ?? 0);
    const end = Number(query.get('end') ?? content.length - 1);
    if (query.get('length') !== '0') res.setHeader('Content-Length', end - start + 1);
    const fd = openSync(file, 'r');
    sendFileRange({ fd, readableUpTo: () => end + 1 }, res, start, end)
      .catch(() => res.destroy())
      .finally(() => closeSync(fd));
  }

  before(async () => {
    writeFileSync(file, content);
    server = createServer((req, res) => serve(req.url!, res));
    server.on('connection', (socket) => serverSockets.push(socket));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await dir.cleanup();
  });

  it('sends exactly the bytes asked for: the whole file, a range, a range inside one buffer', async () => {
    for (const [start, end] of [
      [0, content.length - 1],
      [1_000_001, 9_999_999],
      [5, 17],
    ]) {
      const response = await fetch(`http://127.0.0.1:${port}/?start=${start}&end=${end}`);
      const body = Buffer.from(await response.arrayBuffer());
      assert.equal(body.length, end - start + 1);
      assert.ok(body.equals(content.subarray(start, end + 1)), `bytes ${start}-${end} differ`);
    }
  });

  it('pipelined requests on one connection get their answers whole and in order, framed by length or chunked', async () => {
    const request = (query: string, close = false) => `GET /?${query} HTTP/1.1\r\nHost: x\r\n${close ? 'Connection: close\r\n' : ''}\r\n`;
    // The second and third answers wait for their turn: their bodies go through the response.
    const ranges = [
      [0, 3 * 1024 * 1024 + 7],
      [7, 2 * 1024 * 1024],
      [100, 1024 * 1024 + 99],
    ];
    const exchange = await rawExchange(port, request(`start=${ranges[0][0]}&end=${ranges[0][1]}`) + request(`start=${ranges[1][0]}&end=${ranges[1][1]}`) + request(`start=${ranges[2][0]}&end=${ranges[2][1]}&length=0`, true), { timeoutMs: 20_000 });
    assert.equal(exchange.outcome, 'end');
    let rest = exchange.bytes;
    for (const [i, [start, end]] of ranges.entries()) {
      const response = parseRawResponse(rest);
      assert.ok(response, `answer ${i + 1} is there`);
      assert.equal(response.status, 200);
      if (i < 2) {
        assert.equal(response.headers['content-length'], String(end - start + 1));
        rest = rest.subarray(rest.indexOf('\r\n\r\n') + 4 + end - start + 1);
      } else {
        assert.match(response.headers['transfer-encoding'] ?? '', /chunked/);
      }
      assert.ok(response.body.equals(content.subarray(start, end + 1)), `answer ${i + 1}: bytes ${start}-${end} differ`);
    }
  });

  it('a client that reads in fits and starts gets every byte', async () => {
    // Each pause leaves a write pending past its turn (what was read ahead is let go and read
    // again); each resume takes it, sometimes before a read let go of has ended.
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let bytes = 0;
    let nextPause = 256 * 1024;
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      bytes += chunk.length;
      if (bytes < nextPause) return;
      nextPause = bytes + 256 * 1024 + Math.floor(Math.random() * 1024 * 1024);
      socket.pause();
      setTimeout(() => socket.resume(), Math.floor(Math.random() * 3));
    });
    const ended = new Promise<void>((resolve) => socket.on('end', resolve));
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    try {
      await ended;
      const response = parseRawResponse(Buffer.concat(received));
      assert.ok(response);
      assert.equal(response.body.length, content.length);
      assert.ok(response.body.equals(content), 'the bytes are the file’s');
    } finally {
      socket.destroy();
    }
  });

  it('a client that stops reading holds one buffer; once it reads again it gets every byte', async () => {
    const socket = connect(port, '127.0.0.1');
    const received: Buffer[] = [];
    let bytes = 0;
    let stopped = false;
    socket.on('data', (chunk: Buffer) => {
      received.push(chunk);
      bytes += chunk.length;
      // After the first 64 KiB the client stops reading (the kernel's buffers fill, then the server's write waits).
      if (bytes >= 64 * 1024 && !stopped) {
        stopped = true;
        socket.pause();
      }
    });
    const ended = new Promise<void>((resolve) => socket.on('end', resolve));
    socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    try {
      const serverSide = () => serverSockets.at(-1);
      assert.ok(await eventually(() => (serverSide()?.writableLength ?? 0) > 0, 10_000), 'the server has a write the client does not take');
      // The turn in which the write stayed pending is long over: what was read ahead is let go.
      await sleep(300);
      assert.ok(chunkBuffersOut() <= 1, `a stalled transfer holds ${chunkBuffersOut()} buffers of 128 KiB`);
      socket.resume();
      await ended;
      const body = Buffer.concat(received);
      const response = parseRawResponse(body);
      assert.ok(response);
      assert.equal(response.body.length, content.length);
      assert.ok(response.body.equals(content), 'the bytes after the stall are the file’s');
    } finally {
      socket.destroy();
    }
  });
});
