import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, maskSecrets } from '../../src/config/load.ts';
import { parseDuration } from '../../src/config/duration.ts';
import { tempDir } from '../support/processes.ts';

describe('config', () => {
  it('has the embedded defaults: loopback, Docker Hub, ./data, in-process cache', () => {
    const config = loadConfig({ env: {} });
    assert.equal(config.http.addr, '127.0.0.1:5000');
    assert.equal(config.proxy.remoteurl, 'https://registry-1.docker.io');
    assert.equal(config.storage.filesystem.rootdirectory, './data');
    assert.equal(config.storage.cache.blobdescriptor, 'inmemory');
    assert.equal(config.proxy.ttl, 168 * 3600 * 1000);
    assert.equal(config.storage.delete.enabled, false);
  });

  it('reads a distribution config.yml and lets REGISTRY_* variables override it', () => {
    const dir = tempDir('pullmirror-config');
    const file = path.join(dir.path, 'config.yml');
    writeFileSync(
      file,
      [
        'version: 0.1',
        'log:',
        '  level: debug',
        '  formatter: json',
        'storage:',
        '  filesystem:',
        '    rootdirectory: /var/lib/registry',
        '    maxthreads: 100',
        '  delete:',
        '    enabled: true',
        'http:',
        '  addr: :5000',
        '  secret: asecretforlocaldevelopment',
        '  headers:',
        '    X-Content-Type-Options: [nosniff]',
        'health:',
        '  storagedriver:',
        '    enabled: true',
        'proxy:',
        '  remoteurl: https://registry-1.docker.io',
        '  username: bob',
        '  password: from-file',
        '  ttl: 72h',
      ].join('\n'),
    );
    const config = loadConfig({
      file,
      env: { REGISTRY_PROXY_PASSWORD: '0123', REGISTRY_HTTP_ADDR: '127.0.0.1:6000', REGISTRY_STORAGE_DELETE_ENABLED: 'false' },
    });
    assert.equal(config.log.level, 'debug');
    assert.equal(config.storage.filesystem.rootdirectory, '/var/lib/registry');
    assert.equal(config.http.addr, '127.0.0.1:6000');
    assert.equal(config.proxy.password, '0123', 'an env password keeps its leading zero: it stays a string');
    assert.equal(config.storage.delete.enabled, false);
    assert.equal(config.proxy.ttl, 72 * 3600 * 1000);
  });

  it('stops on an unknown key, naming it and the variable it came from', () => {
    assert.throws(() => loadConfig({ env: { REGISTRY_PROXY_REMOTEURLL: 'x' } }), (error: Error) => {
      assert.ok(error instanceof ConfigError);
      assert.match(error.message, /proxy\.remoteurll \(from REGISTRY_PROXY_REMOTEURLL\): unknown key/);
      return true;
    });
    const dir = tempDir('pullmirror-config');
    const file = path.join(dir.path, 'config.yml');
    writeFileSync(file, 'storage:\n  filesystem:\n    rootdir: /x\n');
    assert.throws(() => loadConfig({ file, env: {} }), /storage\.filesystem\.rootdir: unknown key/);
  });

  it('stops on a wrong value, naming the key', () => {
    assert.throws(() => loadConfig({ env: { REGISTRY_PROXY_TTL: 'a week' } }), /proxy\.ttl .*invalid duration/);
    assert.throws(() => loadConfig({ env: { REGISTRY_LOG_LEVEL: 'loud' } }), /log\.level/);
    assert.throws(() => loadConfig({ env: { REGISTRY_PROXY_REMOTEURL: 'ftp://x' } }), /proxy\.remoteurl/);
  });

  it('masks secrets when printed', () => {
    const config = loadConfig({ env: { REGISTRY_PROXY_USERNAME: 'bob', REGISTRY_PROXY_PASSWORD: 'hunter2' } });
    const printed = JSON.stringify(maskSecrets(config));
    assert.ok(!printed.includes('hunter2'));
    assert.ok(printed.includes('bob'));
  });

  it("reads distribution's redis section, REDIS_URL, and masks the URL's password", () => {
    const config = loadConfig({
      env: {
        REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR: 'redis',
        REGISTRY_REDIS_ADDRS: 'sentinel-1:26379, sentinel-2:26379',
        REGISTRY_REDIS_MASTERNAME: 'mymaster',
        REGISTRY_REDIS_DIALTIMEOUT: '2s',
        REGISTRY_REDIS_POOLSIZE: '20',
        REGISTRY_REDIS_FLEET_LEASE: '15s',
      },
    });
    assert.equal(config.storage.cache.blobdescriptor, 'redis');
    assert.deepEqual(config.redis.addrs, ['sentinel-1:26379', 'sentinel-2:26379']);
    assert.equal(config.redis.mastername, 'mymaster');
    assert.equal(config.redis.dialtimeout, 2000);
    assert.equal(config.redis.poolsize, 20);
    assert.equal(config.redis.fleet.enabled, true);
    assert.equal(config.redis.fleet.lease, 15_000);
    const fromUrl = loadConfig({ env: { REDIS_URL: 'redis://:s3cret@cache:6379/2' } });
    assert.equal(fromUrl.redis.url, 'redis://:s3cret@cache:6379/2');
    assert.ok(!JSON.stringify(maskSecrets(fromUrl)).includes('s3cret'));
    const both = loadConfig({ env: { REDIS_URL: 'redis://a:6379', REGISTRY_REDIS_URL: 'redis://b:6379' } });
    assert.equal(both.redis.url, 'redis://b:6379', 'the REGISTRY_ name wins');
    assert.throws(() => loadConfig({ env: { REGISTRY_REDIS_FLEET_LEASEE: '1s' } }), /redis\.fleet\.leasee/);
  });

  it('parses Go durations', () => {
    assert.equal(parseDuration('168h'), 604_800_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('0'), 0);
    assert.throws(() => parseDuration('soon'));
  });

  it('has eviction and read-only maintenance keys with defaults, and refuses inverted watermarks', () => {
    const config = loadConfig({ env: {} });
    assert.deepEqual(config.storage.eviction, { schedule: '*/15 * * * *', maxsize: 0, highwatermark: 90, lowwatermark: 80, grace: 600_000 });
    assert.equal(config.storage.maintenance.readonly.enabled, false);
    const set = loadConfig({ env: { REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED: 'true', REGISTRY_STORAGE_EVICTION_MAXSIZE: '20GB' } });
    assert.equal(set.storage.maintenance.readonly.enabled, true);
    assert.equal(set.storage.eviction.maxsize, 20 * 1024 ** 3);
    assert.throws(() => loadConfig({ env: { REGISTRY_STORAGE_EVICTION_LOWWATERMARK: '95' } }), /storage\.eviction\.lowwatermark/);
    assert.throws(() => loadConfig({ env: { REGISTRY_STORAGE_EVICTION_SCHEDULE: 'every hour' } }), /storage\.eviction\.schedule/);
    assert.throws(() => loadConfig({ env: { REGISTRY_STORAGE_MAINTENANCE_READONLY: '{enabled: true, typo: 1}' } }), /storage\.maintenance\.readonly\.typo/);
  });
});
