/**
 * A real redis-server for tests: on a free port (redis cannot take port 0, so one is picked by
 * binding a socket on 0 first), no persistence, in a temp dir. It can be stopped and started
 * again on the same port to play an outage.
 */
import { createConnection } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, startProcess, tempDir, type StartedProcess } from './processes.ts';

export interface RedisServer {
  url: string;
  port: number;
  /** `127.0.0.1:<port>`, for distribution's `redis.addr`. */
  addr: string;
  /** Stops the server (SIGTERM); start() brings it back on the same port, empty. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Runs one command (inline protocol) and answers the raw reply. */
  command(line: string): Promise<string>;
  close(): Promise<void>;
}

export async function startRedis(): Promise<RedisServer> {
  const dir = tempDir('pullmirror-redis');
  const port = await freePort();
  let server: StartedProcess | undefined;
  const command = (line: string) =>
    new Promise<string>((resolve, reject) => {
      const socket = createConnection({ host: '127.0.0.1', port });
      let reply = '';
      socket.on('data', (chunk) => {
        reply += chunk.toString('utf8');
        if (reply.endsWith('\r\n')) {
          socket.end();
          resolve(reply);
        }
      });
      socket.on('error', reject);
      socket.write(`${line}\r\n`);
    });
  const start = async () => {
    server = startProcess(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir.path, '--protected-mode', 'no'],
      { logFile: path.join(dir.path, 'redis.log') },
    );
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        if ((await command('PING')).startsWith('+PONG')) return;
      } catch {
        // not up yet
      }
      if (server.hasExited() || Date.now() > deadline) throw new Error(`redis-server did not start:\n${server.readLog()}`);
      await sleep(25);
    }
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    port,
    addr: `127.0.0.1:${port}`,
    stop: async () => {
      await server?.stop();
    },
    start,
    command,
    close: async () => {
      await server?.stop();
      await dir.cleanup();
    },
  };
}
