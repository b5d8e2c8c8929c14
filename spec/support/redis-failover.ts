/**
 * A Redis that fails over: a master, one replica and three Sentinels (quorum 2), as a managed
 * Redis with Sentinel runs. `killMaster()` SIGKILLs whichever server is the master now (by the
 * pid this module started it with), and `waitForFailover()` waits until the Sentinels name the
 * other one. Sentinel's timings are shortened (down after 1 s, failover timeout 5 s) so a
 * failover takes seconds, not the production default's half minute.
 *
 * `commandCalls(port)` reads a server's `INFO commandstats`, to count the Redis work a client
 * causes; the Sentinels' and the replication's own commands (PING, INFO, REPLCONF, …) are
 * listed in SENTINEL_AND_REPLICATION so a caller can leave them out.
 */
import { writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort, startProcess, tempDir, type StartedProcess } from './processes.ts';

export const MASTER_NAME = 'mymaster';

/** Commands that Sentinels and replication send on their own, whatever the clients do. */
export const SENTINEL_AND_REPLICATION = new Set(['ping', 'info', 'replconf', 'psync', 'sync', 'role', 'client|setname', 'client|kill', 'config|rewrite', 'slaveof', 'replicaof', 'multi', 'exec', 'command|docs', 'hello']);

export interface FailoverTopology {
  /** distribution's `redis.addrs` (the Sentinels) and `redis.mastername`. */
  addrs: string[];
  mastername: string;
  /** The port of the server the Sentinels name as master now. */
  masterPort(): Promise<number>;
  /** The ports of both data servers (master and replica, in start order). */
  serverPorts: number[];
  /** SIGKILLs the current master; answers its port. */
  killMaster(): Promise<number>;
  /** Resolves once the Sentinels name a master other than `oldPort` and it answers as master (bounded). */
  waitForFailover(oldPort: number, timeoutMs?: number): Promise<number>;
  /** killMaster, then waitForFailover: answers the promoted server's port. */
  failOver(): Promise<number>;
  /** `INFO commandstats` of a data server: calls per command (lower-case, `a|b` for subcommands); undefined when it does not answer. */
  commandCalls(port: number): Promise<Map<string, number> | undefined>;
  close(): Promise<void>;
}

/** One command in the inline protocol; the whole reply (bulk replies read to their length). */
export function redisCommand(port: number, line: string, timeoutMs = 2_000): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port });
    let reply = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`redis 127.0.0.1:${port}: no answer to ${line.split(' ')[0]} within ${timeoutMs} ms`));
    }, timeoutMs);
    const finish = (text: string) => {
      clearTimeout(timer);
      socket.end();
      resolve(text);
    };
    socket.on('data', (chunk) => {
      reply = Buffer.concat([reply, chunk]);
      const text = reply.toString('utf8');
      const bulk = /^\$(-?\d+)\r\n/.exec(text);
      if (bulk) {
        const length = Number(bulk[1]);
        if (length < 0 || reply.length >= bulk[0].length + length + 2) finish(text.slice(bulk[0].length, bulk[0].length + Math.max(length, 0)));
      } else if (text.startsWith('*')) {
        // An array of bulk strings (SENTINEL get-master-addr-by-name): complete when every element arrived.
        const count = Number(/^\*(-?\d+)\r\n/.exec(text)?.[1] ?? 0);
        const elements = text.match(/\$\d+\r\n[^\r\n]*\r\n/g) ?? [];
        if (count <= 0 || elements.length >= count) finish(text);
      } else if (text.endsWith('\r\n')) finish(text);
    });
    socket.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    socket.write(`${line}\r\n`);
  });
}

export async function startFailoverTopology(): Promise<FailoverTopology> {
  const dir = tempDir('pullmirror-failover');
  const processes: StartedProcess[] = [];
  const servers = new Map<number, StartedProcess>();
  try {
    const masterPort = await freePort();
    const replicaPort = await freePort();
    for (const [port, extra] of [
      [masterPort, []],
      [replicaPort, ['--replicaof', '127.0.0.1', String(masterPort)]],
    ] as const) {
      const server = startProcess(
        'redis-server',
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir.path, '--dbfilename', `dump-${port}.rdb`, '--protected-mode', 'no', ...extra],
        { logFile: path.join(dir.path, `redis-${port}.log`) },
      );
      processes.push(server);
      servers.set(port, server);
      await until(`redis-server ${port}`, async () => (await redisCommand(port, 'PING')).startsWith('+PONG'), () => server.readLog());
    }
    await until('the replica in sync', async () => (await redisCommand(replicaPort, 'INFO replication')).includes('master_link_status:up'), () => servers.get(replicaPort)!.readLog());

    const sentinelPorts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const port = await freePort();
      const config = path.join(dir.path, `sentinel-${port}.conf`);
      writeFileSync(
        config,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir.path}`,
          `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
          `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
          `sentinel failover-timeout ${MASTER_NAME} 5000`,
          `sentinel parallel-syncs ${MASTER_NAME} 1`,
          '',
        ].join('\n'),
      );
      const sentinel = startProcess('redis-server', [config, '--sentinel'], { logFile: path.join(dir.path, `sentinel-${port}.log`) });
      processes.push(sentinel);
      sentinelPorts.push(port);
    }
    for (const port of sentinelPorts) {
      await until(
        `sentinel ${port}`,
        async () => (await redisCommand(port, `SENTINEL get-master-addr-by-name ${MASTER_NAME}`)).includes(String(masterPort)),
        () => '',
      );
    }
    // Each Sentinel must know the others and the replica before a failover can be voted.
    await until(
      'sentinels know each other and the replica',
      async () => {
        for (const port of sentinelPorts) {
          const info = await redisCommand(port, 'INFO sentinel');
          if (!/sentinels=3/.test(info) || !/slaves=1/.test(info)) return false;
        }
        return true;
      },
      () => '',
      30_000,
    );

    // Asked of each Sentinel in turn for up to 10 s: on a loaded machine one may be slow to answer.
    const masterNow = async (): Promise<number> => {
      const deadline = performance.now() + 10_000;
      for (;;) {
        for (const port of sentinelPorts) {
          const reply = await redisCommand(port, `SENTINEL get-master-addr-by-name ${MASTER_NAME}`, 5_000).catch(() => '');
          const m = /\r\n(\d+)\r\n$/.exec(reply);
          if (m) return Number(m[1]);
        }
        if (performance.now() > deadline) throw new Error('no sentinel names a master');
        await sleep(200);
      }
    };
    const killMaster = async (): Promise<number> => {
      const port = await masterNow();
      const server = servers.get(port);
      if (!server) throw new Error(`the master ${port} is not a server this topology started`);
      process.kill(server.pid, 'SIGKILL');
      await server.exited;
      return port;
    };
    const waitForFailover = async (oldPort: number, timeoutMs = 30_000): Promise<number> => {
      let promoted = 0;
      await until(
        'a failover',
        async () => {
          promoted = await masterNow();
          return promoted !== oldPort && (await redisCommand(promoted, 'INFO replication')).includes('role:master');
        },
        () => '',
        timeoutMs,
      );
      return promoted;
    };
    return {
      addrs: sentinelPorts.map((port) => `127.0.0.1:${port}`),
      mastername: MASTER_NAME,
      serverPorts: [masterPort, replicaPort],
      masterPort: masterNow,
      killMaster,
      waitForFailover,
      failOver: async () => waitForFailover(await killMaster()),
      commandCalls: async (port) => {
        const text = await redisCommand(port, 'INFO commandstats').catch(() => undefined);
        if (text === undefined) return undefined;
        const calls = new Map<string, number>();
        for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) calls.set(m[1], Number(m[2]));
        return calls;
      },
      close: async () => {
        await Promise.all(processes.map((p) => p.stop()));
        await dir.cleanup();
      },
    };
  } catch (error) {
    await Promise.all(processes.map((p) => p.stop()));
    await dir.cleanup();
    throw error;
  }
}

async function until(what: string, check: () => Promise<boolean>, log: () => string, timeoutMs = 15_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    if (await check().catch(() => false)) return;
    if (performance.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${log()}`);
    await sleep(100);
  }
}
