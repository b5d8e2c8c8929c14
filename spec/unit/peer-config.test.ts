import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { printableConfig } from '../../src/config/printable.ts';
import { tempDir } from '../support/processes.ts';

const SECRET = 'the-fleet-secret-0123456789abcdef';
const PEERS = { REGISTRY_REDIS_FLEET_PEERS_ADDR: '127.0.0.1:5001', REGISTRY_REDIS_FLEET_PEERS_ADVERTISE: 'mirror-0.peers:5001' };

describe('config: the peer listener (redis.fleet.peers) and http.secret', () => {
  it('reads the listener, its advertised address and timeout, and the secret from the environment', () => {
    const config = loadConfig({ env: { ...PEERS, REGISTRY_HTTP_SECRET: SECRET } });
    assert.equal(config.redis.fleet.peers.addr, '127.0.0.1:5001');
    assert.equal(config.redis.fleet.peers.advertise, 'mirror-0.peers:5001');
    assert.equal(config.redis.fleet.peers.timeout, 10_000);
    assert.equal(config.http.secret, SECRET);
    const printed = JSON.stringify(printableConfig(config));
    assert.ok(!printed.includes(SECRET), 'never printed');
    // Without a listener, nothing is asked of it.
    assert.equal(loadConfig({ env: {} }).redis.fleet.peers.addr, undefined);
  });

  it('reads http.secret from http.secretfile (one trailing newline dropped), never both, never printed', () => {
    const dir = tempDir('pullmirror-peer-config');
    const file = path.join(dir.path, 'secret');
    writeFileSync(file, `${SECRET}\n`);
    const config = loadConfig({ env: { ...PEERS, REGISTRY_HTTP_SECRETFILE: file } });
    assert.equal(config.http.secret, SECRET);
    const printed = JSON.stringify(printableConfig(config));
    assert.ok(!printed.includes(SECRET));
    assert.ok(printed.includes(file), 'the file is named where the secret comes from');
    assert.throws(() => loadConfig({ env: { ...PEERS, REGISTRY_HTTP_SECRETFILE: file, REGISTRY_HTTP_SECRET: SECRET } }), (error: Error) => {
      assert.match(error.message, /http\.secretfile \(from REGISTRY_HTTP_SECRETFILE\): set either http\.secret or http\.secretfile/);
      assert.ok(!error.message.includes(SECRET));
      return true;
    });
    assert.throws(() => loadConfig({ env: { ...PEERS, REGISTRY_HTTP_SECRETFILE: path.join(dir.path, 'missing') } }), /http\.secretfile \(from REGISTRY_HTTP_SECRETFILE\): cannot read .*missing: ENOENT/);
  });

  it('refuses a listener without a secret, or with a short one, naming the key and never the value', () => {
    assert.throws(() => loadConfig({ env: PEERS }), /http\.secret: redis\.fleet\.peers\.addr needs a shared secret/);
    assert.throws(() => loadConfig({ env: { ...PEERS, REGISTRY_HTTP_SECRET: 'short-secret' } }), (error: Error) => {
      assert.match(error.message, /http\.secret \(from REGISTRY_HTTP_SECRET\): the key of redis\.fleet\.peers must be at least 16 characters/);
      assert.ok(!error.message.includes('short-secret'));
      return true;
    });
    // A distribution config's short http.secret is no problem without the listener.
    assert.equal(loadConfig({ env: { REGISTRY_HTTP_SECRET: 'short' } }).http.secret, 'short');
  });

  it('refuses a listener without an advertised address, and an advertised address no one can dial, naming the key', () => {
    const secret = { REGISTRY_HTTP_SECRET: SECRET };
    assert.throws(() => loadConfig({ env: { ...secret, REGISTRY_REDIS_FLEET_PEERS_ADDR: '0.0.0.0:5001' } }), /redis\.fleet\.peers\.advertise: redis\.fleet\.peers\.addr needs redis\.fleet\.peers\.advertise/);
    for (const advertise of ['0.0.0.0:5001', '[::]:5001', ':5001', 'http://mirror-0:5001', 'mirror-0']) {
      assert.throws(
        () => loadConfig({ env: { ...secret, ...PEERS, REGISTRY_REDIS_FLEET_PEERS_ADVERTISE: advertise } }),
        /redis\.fleet\.peers\.advertise \(from REGISTRY_REDIS_FLEET_PEERS_ADVERTISE\): expected the host:port other instances dial/,
        advertise,
      );
    }
    assert.throws(() => loadConfig({ env: { ...secret, ...PEERS, REGISTRY_REDIS_FLEET_PEERS_ADDR: 'nowhere' } }), /redis\.fleet\.peers\.addr \(from REGISTRY_REDIS_FLEET_PEERS_ADDR\): expected host:port/);
  });

  it('reads the fleet name (redis.fleet.name), none by default, and refuses one that is no plain name, naming the key', () => {
    assert.equal(loadConfig({ env: {} }).redis.fleet.name, undefined, 'no name: the instances on one store are the fleet');
    assert.equal(loadConfig({ env: { REGISTRY_REDIS_FLEET_NAME: 'pullmirror-eu.1' } }).redis.fleet.name, 'pullmirror-eu.1');
    for (const name of ['', 'with space', 'a:b', '{fleet}', '-leading', 'x'.repeat(64)]) {
      assert.throws(() => loadConfig({ env: { REGISTRY_REDIS_FLEET_NAME: name } }), /redis\.fleet\.name \(from REGISTRY_REDIS_FLEET_NAME\): expected a name of letters, digits/, JSON.stringify(name));
    }
  });
});
