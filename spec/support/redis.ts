/**
 * A real redis-server for tests: on a free port (redis cannot take port 0, so one is picked by
 * binding a socket on 0 first), no persistence, in a temp dir. It can be stopped and started
 * again on the same port to play an outage.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import type { Logger } from '../../src/logging/logger.ts';
import { createRedisConnection, type RedisConnection } from '../../src/redis/redis-connection.ts';
import { freePort, startProcess, tempDir, type StartedProcess } from './processes.ts';

export interface RedisServer {
  url: string;
  port: number;
  /** `127.0.0.1:<port>`, for distribution's `redis.addr`. */
  addr: string;
  /** Stops the server (SIGTERM); start() brings it back on the same port, empty. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** SIGSTOP / SIGCONT: a hung server, whose connections stay open but never answer. */
  pause(): void;
  resume(): void;
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
    const deadline = performance.now() + 10_000;
    for (;;) {
      try {
        if ((await command('PING')).startsWith('+PONG')) return;
      } catch {
        // not up yet
      }
      if (server.hasExited() || performance.now() > deadline) throw new Error(`redis-server did not start:\n${server.readLog()}`);
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
    pause: () => server && process.kill(server.pid, 'SIGSTOP'),
    resume: () => server && process.kill(server.pid, 'SIGCONT'),
    command,
    close: async () => {
      if (server) process.kill(server.pid, 'SIGCONT');
      await server?.stop();
      await dir.cleanup();
    },
  };
}

/** A free port whose cluster bus port (+10000) is free too. */
async function clusterPort(): Promise<number> {
  for (;;) {
    const port = await freePort();
    if (port + 10_000 > 65_535) continue;
    const bus = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once('error', () => resolve(false));
      probe.listen(port + 10_000, '127.0.0.1', () => probe.close(() => resolve(true)));
    });
    if (bus) return port;
  }
}

async function waitFor(what: string, check: () => Promise<boolean>, log: () => string): Promise<void> {
  const deadline = performance.now() + 15_000;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (performance.now() > deadline) throw new Error(`${what} not ready:\n${log()}`);
    await sleep(50);
  }
}

/** One inline command to a server on `port`; answers the raw reply (first packet). */
function send(port: number, line: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    socket.once('data', (chunk) => {
      socket.end();
      resolve(chunk.toString('utf8'));
    });
    socket.on('error', reject);
    socket.write(`${line}\r\n`);
  });
}

export interface RedisTopology {
  /** distribution's `redis.addrs`. */
  addrs: string[];
  mastername?: string;
  close(): Promise<void>;
}

/** A Sentinel watching `master` under the name `mymaster`. */
export async function startSentinel(master: RedisServer): Promise<RedisTopology> {
  const dir = tempDir('pullmirror-sentinel');
  const port = await freePort();
  const config = path.join(dir.path, 'sentinel.conf');
  writeFileSync(
    config,
    [`port ${port}`, 'bind 127.0.0.1', `dir ${dir.path}`, `sentinel monitor mymaster 127.0.0.1 ${master.port} 1`, 'sentinel down-after-milliseconds mymaster 5000', ''].join('\n'),
  );
  const sentinel = startProcess('redis-server', [config, '--sentinel'], { logFile: path.join(dir.path, 'sentinel.log') });
  await waitFor('redis sentinel', async () => (await send(port, 'SENTINEL get-master-addr-by-name mymaster')).includes(String(master.port)), () => sentinel.readLog());
  return {
    addrs: [`127.0.0.1:${port}`],
    mastername: 'mymaster',
    close: async () => {
      await sentinel.stop();
      await dir.cleanup();
    },
  };
}

/** A three-master Redis Cluster (no replicas). */
export async function startCluster(): Promise<RedisTopology> {
  const dir = tempDir('pullmirror-cluster');
  const nodes: StartedProcess[] = [];
  const ports: number[] = [];
  try {
    for (let i = 0; i < 3; i++) {
      const port = await clusterPort();
      const nodeDir = path.join(dir.path, String(port));
      mkdirSync(nodeDir);
      ports.push(port);
      nodes.push(
        startProcess(
          'redis-server',
          ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--save', '', '--appendonly', 'no', '--dir', nodeDir],
          { logFile: path.join(nodeDir, 'redis.log') },
        ),
      );
    }
    for (const [i, port] of ports.entries()) await waitFor('cluster node', async () => (await send(port, 'PING')).startsWith('+PONG'), () => nodes[i].readLog());
    const create = startProcess('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], {
      logFile: path.join(dir.path, 'create.log'),
    });
    const { code } = await create.exited;
    if (code !== 0) throw new Error(`redis-cli --cluster create failed:\n${create.readLog()}`);
    for (const [i, port] of ports.entries()) {
      await waitFor('cluster state ok', async () => (await send(port, 'CLUSTER INFO')).includes('cluster_state:ok'), () => nodes[i].readLog());
    }
  } catch (error) {
    await Promise.all(nodes.map((node) => node.stop()));
    await dir.cleanup();
    throw error;
  }
  return {
    addrs: ports.map((port) => `127.0.0.1:${port}`),
    close: async () => {
      await Promise.all(nodes.map((node) => node.stop()));
      await dir.cleanup();
    },
  };
}

/**
 * A connection of the mirror's own kind (src/redis/redis-connection.ts) to a test server, with
 * short read and dial timeouts (500 ms) so outage tests end quickly; ready, or the test fails.
 */
export async function connectToRedis(server: RedisServer, logger: Logger, prefix?: string): Promise<RedisConnection> {
  const config = loadConfig({ env: { REDIS_URL: server.url, REGISTRY_REDIS_READTIMEOUT: '500ms', REGISTRY_REDIS_DIALTIMEOUT: '500ms' } });
  const connection = createRedisConnection(config.redis, logger, prefix);
  if (!(await connection.whenReady(5_000))) {
    await connection.close();
    throw new Error(`no connection to ${server.url} within 5 s`);
  }
  return connection;
}

/** A redis-server shared by the tests of one describe block (testRedis). */
export interface TestRedis {
  /** The server, started before the block's first test. */
  readonly server: RedisServer;
  /** A connection to it (connectToRedis), closed after the block's last test. */
  connect(logger: Logger, prefix?: string): Promise<RedisConnection>;
}

/**
 * A redis-server for the describe block this is called in: started in its before(), stopped in
 * its after() with every connection the tests opened through connect().
 */
export function testRedis(): TestRedis {
  let server: RedisServer | undefined;
  const connections: RedisConnection[] = [];
  before(async () => {
    server = await startRedis();
  });
  after(async () => {
    await Promise.all(connections.map((connection) => connection.close()));
    await server?.close();
  });
  const started = (): RedisServer => {
    if (!server) throw new Error('the redis-server starts before the first test: use it inside a test');
    return server;
  };
  return {
    get server() {
      return started();
    },
    async connect(logger, prefix) {
      const connection = await connectToRedis(started(), logger, prefix);
      connections.push(connection);
      return connection;
    },
  };
}

/** Every command a Redis server runs, as MONITOR prints them (one line each), from now until stop(). */
export interface RedisMonitor {
  lines(): string[];
  stop(): void;
}

export async function monitorRedis(port: number): Promise<RedisMonitor> {
  const socket = createConnection({ host: '127.0.0.1', port });
  const lines: string[] = [];
  let partial = '';
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.on('data', (chunk) => {
      const text = partial + chunk.toString('utf8');
      const parts = text.split('\r\n');
      partial = parts.pop() ?? '';
      for (const line of parts) {
        if (line === '+OK') resolve();
        else if (line.startsWith('+')) lines.push(line.slice(1));
      }
    });
    socket.write('MONITOR\r\n');
  });
  socket.on('error', () => {});
  return { lines: () => [...lines], stop: () => socket.destroy() };
}
