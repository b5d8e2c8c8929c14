/**
 * Logs behind a load balancer: the client from X-Forwarded-For of a trusted proxy only, the
 * authenticated user in the Combined line, logstash-shaped lines. A real mirror process; the
 * requests it logs need no upstream (the /v2/ ping is answered by the mirror itself).
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { ClientAddress } from '../../src/http/client-address.ts';
import { loadConfig } from '../../src/config/load.ts';
import { startMirror, type RunningMirror } from '../support/mirror.ts';
import { tempDir } from '../support/processes.ts';

const work = tempDir('pullmirror-logs');
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

/** Polls the mirror's output for a line (the access lines are written at the end of a turn). */
async function lineMatching(mirror: RunningMirror, pattern: RegExp): Promise<string> {
  const deadline = performance.now() + 5_000;
  for (;;) {
    const line = readFileSync(mirror.process.logFile, 'utf8').split('\n').find((l) => pattern.test(l));
    if (line) return line;
    if (performance.now() > deadline) throw new Error(`no line matching ${pattern}:\n${mirror.process.readLog()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('the client behind a proxy: http.trustedproxies', () => {
  it('believes X-Forwarded-For only from a listed proxy, and only the hops right of it', () => {
    const client = new ClientAddress(['127.0.0.1', '10.0.0.0/8']);
    assert.equal(client.of('127.0.0.1', '203.0.113.7'), '203.0.113.7');
    assert.equal(client.of('::ffff:127.0.0.1', '203.0.113.7'), '203.0.113.7', 'an IPv4-mapped peer');
    assert.equal(client.of('127.0.0.1', '198.51.100.1, 203.0.113.7, 10.1.2.3'), '203.0.113.7', 'trusted hops skipped; a spoofed left entry ignored');
    assert.equal(client.of('192.0.2.9', '203.0.113.7'), '192.0.2.9', 'an untrusted peer: its header is worth nothing');
    assert.equal(client.of('127.0.0.1', undefined), '127.0.0.1');
    assert.equal(client.of('127.0.0.1', 'garbage'), '127.0.0.1');
    assert.equal(new ClientAddress([]).of('127.0.0.1', '203.0.113.7'), '127.0.0.1', 'none trusted by default');
    assert.throws(() => loadConfig({ env: { REGISTRY_HTTP_TRUSTEDPROXIES: '10.0.0.0/33' } }), /http\.trustedproxies/);
    assert.deepEqual(loadConfig({ env: { REGISTRY_HTTP_TRUSTEDPROXIES: '127.0.0.1, 10.0.0.0/8' } }).http.trustedproxies, ['127.0.0.1', '10.0.0.0/8']);
  });
});

describe('access and log lines of a real mirror', () => {
  let combined: RunningMirror;
  let logstash: RunningMirror;
  before(async () => {
    const htpasswd = path.join(work.path, 'htpasswd');
    writeFileSync(htpasswd, `alice:${bcrypt.hashSync('alice-pw-1', 5)}\n`);
    combined = await startMirror({
      remoteurl: 'http://127.0.0.1:9',
      config: { log: { accesslog: { format: 'combined' } }, http: { trustedproxies: ['127.0.0.1'] }, auth: { htpasswd: { realm: 'r', path: htpasswd } } },
    });
    logstash = await startMirror({ remoteurl: 'http://127.0.0.1:9', config: { log: { formatter: 'logstash', fields: { service: 'mirror' } } } });
  });
  after(async () => {
    await combined?.stop();
    await logstash?.stop();
    await work.cleanup();
  });

  it('the Combined line names the client behind the trusted proxy and the authenticated user', async () => {
    const response = await fetch(`${combined.url}/v2/`, { headers: { authorization: basic('alice', 'alice-pw-1'), 'x-forwarded-for': '203.0.113.7', 'user-agent': 'logs-test/1' } });
    assert.equal(response.status, 200);
    const line = await lineMatching(combined, /"logs-test\/1"$/);
    assert.match(line, /^203\.0\.113\.7 - alice \[[^\]]+\] "GET \/v2\/ HTTP\/1\.1" 200 /);
    const anonymous = await fetch(`${combined.url}/v2/`, { headers: { 'user-agent': 'logs-test/anonymous' } });
    assert.equal(anonymous.status, 401);
    assert.match(await lineMatching(combined, /"logs-test\/anonymous"$/), /^127\.0\.0\.1 - - \[/);
  });

  it('formatter logstash writes @timestamp, @version, message and the fields', async () => {
    await (await fetch(`${logstash.url}/v2/`, { headers: { 'user-agent': 'logs-test/logstash' } })).arrayBuffer();
    const line = JSON.parse(await lineMatching(logstash, /logs-test\/logstash/));
    assert.equal(line['@version'], '1');
    assert.ok(!Number.isNaN(Date.parse(line['@timestamp'])), 'an ISO @timestamp');
    assert.equal(line.message, 'request');
    assert.equal(line.level, 'info');
    assert.equal(line.service, 'mirror', 'log.fields beside the message');
    assert.equal(line.status, 200);
    const listening = logstash.logLines().find((entry) => entry.message === 'listening');
    assert.ok(listening?.['@timestamp'], 'every line is logstash-shaped');
  });
});
