import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ConfigError, loadConfig, maskSecrets } from '../../src/config/load.ts';
import { parseDuration } from '../../src/config/duration.ts';
import { printableConfig } from '../../src/config/printable.ts';
import { stringify } from 'yaml';
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

  it('stops on an unknown key in the file; a variable naming no key is warned about by name and ignored', () => {
    // What Kubernetes injects for a Service named `registry`, and podman's own variable.
    const stray = {
      REGISTRY_PORT: 'tcp://10.96.0.12:5000',
      REGISTRY_PORT_5000_TCP_ADDR: '10.96.0.12',
      REGISTRY_SERVICE_HOST: '10.96.0.12',
      REGISTRY_SERVICE_PORT: '5000',
      REGISTRY_AUTH_FILE: '/run/user/1000/containers/auth.json',
      REGISTRY_PROXY_REMOTEURLL: 'x',
    };
    const warnings: string[] = [];
    const config = loadConfig({ env: { ...stray, REGISTRY_PROXY_TTL: '24h' }, warnings });
    assert.equal(config.proxy.ttl, 24 * 3600 * 1000, 'the variables that name keys still apply');
    assert.deepEqual(warnings, Object.keys(stray).map((name) => `${name} names no configuration key; ignored`));
    // A variable naming a section whose value holds a bad key: an error naming the variable.
    assert.throws(() => loadConfig({ env: { REGISTRY_PROXY_WARM: '{schedule: "* * * * *", images: [a], typo: 1}' } }), /proxy\.warm\.typo \(from REGISTRY_PROXY_WARM\): unknown key/);
    assert.throws(() => loadConfig({ env: { REGISTRY_PROXY_WARM: '{schedule: never, images: [a]}' } }), /proxy\.warm\.schedule \(from REGISTRY_PROXY_WARM\)/);
    assert.throws(() => loadConfig({ env: { REGISTRY_PROXY_PASSWORDFILE: '/nonexistent/pw' } }), /proxy\.passwordfile \(from REGISTRY_PROXY_PASSWORDFILE\): cannot read/);
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

  it('takes a string key from the environment as written (a password "a: b" is no mapping); only sections and lists are read as YAML', () => {
    const config = loadConfig({
      env: {
        REGISTRY_PROXY_PASSWORD: 'a: b',
        REGISTRY_PROXY_USERNAME: '[robot]',
        REGISTRY_REDIS_PASSWORD: '{x}',
        REGISTRY_AUTH_HTPASSWD_REALM: '- corp',
        REGISTRY_PROXY_TTL: '24h',
        REGISTRY_STORAGE_DELETE_ENABLED: 'yes',
        REGISTRY_STORAGE_EVICTION_KEEP: '[docker.io/library/alpine:*, ghcr.io/acme/base:stable]',
        REGISTRY_PROXY_REMOTES: '[{namespace: ghcr.io, password: "c: d"}]',
        REGISTRY_LOG_FIELDS: '{service: mirror}',
        REGISTRY_AUTH_HTPASSWD_PATH: '/etc/htpasswd',
      },
    });
    assert.equal(config.proxy.password, 'a: b');
    assert.equal(config.proxy.username, '[robot]');
    assert.equal(config.redis.password, '{x}');
    assert.equal(config.auth?.htpasswd?.realm, '- corp');
    assert.equal(config.proxy.ttl, 24 * 3_600_000, 'a duration is still parsed');
    assert.equal(config.storage.delete.enabled, true, 'a boolean is still parsed');
    assert.deepEqual(config.storage.eviction.keep, ['docker.io/library/alpine:*', 'ghcr.io/acme/base:stable'], 'a list is YAML');
    assert.equal(config.proxy.remotes[0].password, 'c: d', 'a section is YAML');
    assert.deepEqual(config.log.fields, { service: 'mirror' });
  });

  it("never echoes a URL's user:password in a config error, however the URL is rejected", () => {
    const secret = 's3cr3t-pw';
    const attempts: [Record<string, string>, RegExp][] = [
      [{ REGISTRY_PROXY_REMOTEURL: `ftp://hub:${secret}@hubproxy.example.com` }, /proxy\.remoteurl \(from REGISTRY_PROXY_REMOTEURL\): .*ftp:\/\/\*\*\*@hubproxy\.example\.com/],
      [{ REGISTRY_PROXY_REMOTEURL: `https://hub:${secret}@hub proxy.example.com` }, /proxy\.remoteurl/],
      // Long enough to be cut short in the message: the cut must not leave the password behind.
      [{ REGISTRY_PROXY_REMOTEURL: `htps://a-very-long-robot-account-name:${secret}-${'x'.repeat(60)}@hubproxy.example.com` }, /proxy\.remoteurl/],
      [{ REGISTRY_PROXY_REMOTES: `[{namespace: ghcr.io, remoteurl: "ftp://me:${secret}@ghcr.io"}]` }, /proxy\.remotes\.0\.remoteurl/],
      [{ REGISTRY_REDIS_URL: `redis://:${secret}@redis:6379`, REGISTRY_REDIS_DB: 'x' }, /redis\.db/],
    ];
    for (const [env, message] of attempts) {
      assert.throws(
        () => loadConfig({ env }),
        (error: Error) => {
          assert.ok(error instanceof ConfigError);
          assert.match(error.message, message);
          assert.ok(!error.message.includes(secret), error.message);
          assert.ok(!/hub:|robot-account-name:|me:/.test(error.message), `no user name either: ${error.message}`);
          return true;
        },
      );
    }
    const dir = tempDir('pullmirror-config-redact');
    const file = path.join(dir.path, 'config.yml');
    writeFileSync(file, `proxy:\n  remoteurl: "https://hub:${secret}@hubproxy.example.com/v2 "\n  ttl: 168\n`);
    assert.throws(() => loadConfig({ file, env: {} }), (error: Error) => !error.message.includes(secret) && /proxy\.ttl/.test(error.message));
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
    const warnings: string[] = [];
    loadConfig({ env: { REGISTRY_REDIS_FLEET_LEASEE: '1s' }, warnings });
    assert.deepEqual(warnings, ['REGISTRY_REDIS_FLEET_LEASEE names no configuration key; ignored']);
  });

  it('parses Go durations', () => {
    assert.equal(parseDuration('168h'), 604_800_000);
    assert.equal(parseDuration('1h30m'), 5_400_000);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('0'), 0);
    assert.equal(parseDuration(0), 0);
    assert.throws(() => parseDuration('soon'));
  });

  it('refuses a bare number for a duration with a hint, as distribution would read nanoseconds', () => {
    const dir = tempDir('pullmirror-config');
    const file = path.join(dir.path, 'config.yml');
    writeFileSync(file, 'proxy:\n  ttl: 168\n');
    assert.throws(() => loadConfig({ file, env: {} }), /proxy\.ttl: a duration needs a unit: 168 → 168h\?/);
    assert.throws(() => loadConfig({ env: { REGISTRY_HTTP_DRAINTIMEOUT: '60' } }), /http\.draintimeout \(from REGISTRY_HTTP_DRAINTIMEOUT\): a duration needs a unit: 60 → 60h\?/);
    writeFileSync(file, 'proxy:\n  ttl: 0\n');
    assert.equal(loadConfig({ file, env: {} }).proxy.ttl, 0, '0 needs no unit');
  });

  it("reads YAML 1.1 booleans and logrus's level names as distribution does; a type error shows the value", () => {
    const dir = tempDir('pullmirror-config');
    const file = path.join(dir.path, 'config.yml');
    writeFileSync(file, 'log:\n  level: warning\nstorage:\n  delete:\n    enabled: yes\n  maintenance:\n    readonly:\n      enabled: Off\nhealth:\n  upstream:\n    enabled: NO\n');
    const config = loadConfig({ file, env: { REGISTRY_PROXY_PRIVATEREPOS_PROTECT: 'on' } });
    assert.equal(config.log.level, 'warn');
    assert.equal(config.storage.delete.enabled, true);
    assert.equal(config.storage.maintenance.readonly.enabled, false);
    assert.equal(config.health.upstream.enabled, false);
    assert.equal(config.proxy.privaterepos.protect, true);
    assert.equal(loadConfig({ env: { REGISTRY_LOG_LEVEL: 'INFO' } }).log.level, 'info');
    assert.equal(loadConfig({ env: { REGISTRY_LOG_LEVEL: 'Debug' } }).log.level, 'debug');
    assert.throws(() => loadConfig({ env: { REGISTRY_STORAGE_DELETE_ENABLED: 'maybe' } }), /storage\.delete\.enabled \(from REGISTRY_STORAGE_DELETE_ENABLED\): expected boolean, got "maybe"/);
    assert.throws(() => loadConfig({ env: { REGISTRY_HTTP_ACCEPTORS: 'many' } }), /http\.acceptors \(from REGISTRY_HTTP_ACCEPTORS\): expected number, got "many"/);
    assert.throws(() => loadConfig({ env: { REGISTRY_HTTP_ADDR: '5384' } }), /http\.addr \(from REGISTRY_HTTP_ADDR\): expected host:port .*got "5384"/);
    // A secret's value is never shown, even when it is the wrong type.
    writeFileSync(file, 'proxy:\n  password: [hunter2]\n');
    assert.throws(() => loadConfig({ file, env: {} }), (error: Error) => /proxy\.password/.test(error.message) && !error.message.includes('hunter2'));
  });

  it('warns about registry:2 keys it ignores, naming each; refuses storage drivers other than the filesystem and s3', () => {
    const dir = tempDir('pullmirror-config');
    const file = path.join(dir.path, 'config.yml');
    writeFileSync(
      file,
      [
        'http:',
        '  addr: :5000',
        '  host: https://registry.example.com',
        'storage:',
        '  filesystem: {rootdirectory: /var/lib/registry}',
        '  tag: {concurrencylimit: 8}',
        'health:',
        '  http: [{uri: "http://db:8080/health"}]',
        'middleware:',
        '  registry: [{name: redirect}]',
        'notifications:',
        '  endpoints: [{name: hook, url: "http://hooks:8080/"}]',
      ].join('\n'),
    );
    const warnings: string[] = [];
    loadConfig({ file, env: {}, warnings });
    const named = warnings.map((warning) => warning.split(' ')[0]).sort();
    assert.deepEqual(named, ['health.http', 'http.host', 'middleware', 'notifications', 'storage.tag']);
    assert.ok(warnings.every((warning) => warning.includes('is ignored by pullmirror')));
    // storage.redirect is taken (on S3); asked of the filesystem store, it says it does nothing there.
    writeFileSync(file, 'storage:\n  filesystem: {rootdirectory: /var/lib/registry}\n  redirect: {disable: false}\n');
    const redirectWarnings: string[] = [];
    assert.equal(loadConfig({ file, env: {}, warnings: redirectWarnings }).storage.redirect.disable, false);
    assert.deepEqual(redirectWarnings, ['storage.redirect.disable is false, but the filesystem store has no URL a client could fetch from: pullmirror serves every blob itself']);
    // A storage.s3 section that is wrong: named, its secret key never shown.
    writeFileSync(file, 'storage:\n  s3:\n    bucket: images\n    secretkey: AKIAsecret\n');
    assert.throws(() => loadConfig({ file, env: {} }), (error: Error) => {
      assert.match(error.message, /storage\.s3\.region: /);
      assert.ok(!error.message.includes('AKIAsecret'));
      return true;
    });
    assert.throws(() => loadConfig({ env: { REGISTRY_STORAGE_GCS: '{bucket: x}' } }), /storage\.gcs \(from REGISTRY_STORAGE_GCS\): only filesystem and s3 storage are supported/);
  });

  it('has eviction and read-only maintenance keys with defaults, and refuses inverted watermarks', () => {
    const config = loadConfig({ env: {} });
    assert.deepEqual(config.storage.eviction, { schedule: '*/15 * * * *', maxsize: 0, highwatermark: 90, lowwatermark: 80, grace: 600_000, keep: [] });
    assert.equal(config.storage.maintenance.readonly.enabled, false);
    const set = loadConfig({ env: { REGISTRY_STORAGE_MAINTENANCE_READONLY_ENABLED: 'true', REGISTRY_STORAGE_EVICTION_MAXSIZE: '20GB' } });
    assert.equal(set.storage.maintenance.readonly.enabled, true);
    assert.equal(set.storage.eviction.maxsize, 20 * 1024 ** 3);
    assert.throws(() => loadConfig({ env: { REGISTRY_STORAGE_EVICTION_LOWWATERMARK: '95' } }), /storage\.eviction\.lowwatermark/);
    assert.throws(() => loadConfig({ env: { REGISTRY_STORAGE_EVICTION_SCHEDULE: 'every hour' } }), /storage\.eviction\.schedule/);
    assert.deepEqual(loadConfig({ env: { REGISTRY_STORAGE_EVICTION_KEEP: '[docker.io/library/alpine:*, ghcr.io/acme/base:stable]' } }).storage.eviction.keep, ['docker.io/library/alpine:*', 'ghcr.io/acme/base:stable']);
    assert.throws(() => loadConfig({ env: { REGISTRY_STORAGE_EVICTION_KEEP: '[library/alpine:*]' } }), /storage\.eviction\.keep\.0.*"library" is not a registry host/);
    assert.throws(() => loadConfig({ env: { REGISTRY_STORAGE_MAINTENANCE_READONLY: '{enabled: true, typo: 1}' } }), /storage\.maintenance\.readonly\.typo/);
  });

  it('reads proxy.namespace and proxy.remotes: defaults per remote, secrets masked, bad ones named', () => {
    const dir = tempDir('pullmirror-config');
    const file = path.join(dir.path, 'config.yml');
    const load = (yaml: string, env: NodeJS.ProcessEnv = {}) => {
      writeFileSync(file, yaml);
      return loadConfig({ file, env });
    };
    assert.equal(loadConfig({ env: {} }).proxy.namespace, 'docker.io');
    assert.equal(loadConfig({ env: { REGISTRY_PROXY_REMOTEURL: 'http://127.0.0.1:5001' } }).proxy.namespace, '127.0.0.1:5001');
    assert.equal(loadConfig({ env: { REGISTRY_PROXY_REMOTEURL: 'http://127.0.0.1:5001', REGISTRY_PROXY_NAMESPACE: 'docker.io' } }).proxy.namespace, 'docker.io');
    writeFileSync(path.join(dir.path, 'pw'), 'filepw\n');
    const config = load(
      ['proxy:', '  remotes:', '    - namespace: ghcr.io', '      prefix: ghcr', '      username: u', '      password: sekrit', '      ttl: 24h',
        '    - namespace: registry.k8s.io', `      passwordfile: ${path.join(dir.path, 'pw')}`, '      username: k'].join('\n'),
    );
    const [ghcr, k8s] = config.proxy.remotes;
    assert.equal(ghcr.remoteurl, 'https://ghcr.io');
    assert.equal(ghcr.ttl, 24 * 3600 * 1000);
    assert.equal(ghcr.tagfreshness, 15_000);
    assert.deepEqual(ghcr.timeouts, config.proxy.timeouts);
    assert.equal(k8s.password, 'filepw');
    assert.equal(k8s.prefix, undefined);
    const masked = JSON.stringify(maskSecrets(config));
    assert.ok(!masked.includes('sekrit') && !masked.includes('filepw'), masked);
    const bad: [string, RegExp][] = [
      ['proxy:\n  remotes:\n    - namespace: ghcr.io\n      bogus: 1', /proxy\.remotes\.0\.bogus: unknown key/],
      ['proxy:\n  remotes:\n    - namespace: ghcr.io\n    - namespace: GHCR.io', /proxy\.remotes\.1\.namespace: "ghcr\.io" is already/],
      ['proxy:\n  remotes:\n    - namespace: registry-1.docker.io', /proxy\.remotes\.0\.namespace: "registry-1\.docker\.io" is already the namespace of the default/],
      ['proxy:\n  remotes:\n    - namespace: ghcr.io\n      prefix: q\n    - namespace: quay.io\n      prefix: q', /proxy\.remotes\.1\.prefix: "q" is already/],
      ['proxy:\n  remotes:\n    - namespace: ghcr.io\n      prefix: gh.cr', /proxy\.remotes\.0\.prefix: expected one name component/],
      ['proxy:\n  remotes:\n    - namespace: ghcr', /proxy\.remotes\.0\.namespace: a remote namespace must look like a registry host/],
      ['proxy:\n  remotes:\n    - remoteurl: https://ghcr.io', /proxy\.remotes\.0\.namespace: /],
    ];
    for (const [yaml, message] of bad) assert.throws(() => load(yaml), (error: Error) => error instanceof ConfigError && message.test(error.message), yaml);
  });

  it("reads storage.s3 with distribution's keys and defaults, from a file and from REGISTRY_STORAGE_S3_* variables", () => {
    const dir = tempDir('pullmirror-config-s3');
    const file = path.join(dir.path, 'config.yml');
    writeFileSync(file, 'storage:\n  s3:\n    bucket: images\n    region: eu-west-1\n');
    const minimal = loadConfig({ file, env: {} });
    assert.deepEqual(minimal.storage.s3, {
      bucket: 'images',
      region: 'eu-west-1',
      forcepathstyle: false,
      rootdirectory: '',
      secure: true,
      skipverify: false,
      chunksize: 10 * 1024 * 1024,
      storageclass: 'STANDARD',
      encrypt: false,
      spooldirectory: path.join(os.tmpdir(), 'pullmirror-spool'),
      readtimeout: 10_000,
    });
    // No s3 section: the filesystem store, as before.
    assert.equal(loadConfig({ env: {} }).storage.s3, undefined);

    const fromEnv = loadConfig({
      env: {
        REGISTRY_STORAGE_S3_BUCKET: 'blobs',
        REGISTRY_STORAGE_S3_REGION: 'us-east-1',
        REGISTRY_STORAGE_S3_REGIONENDPOINT: 'http://127.0.0.1:7480',
        REGISTRY_STORAGE_S3_FORCEPATHSTYLE: 'true',
        REGISTRY_STORAGE_S3_ACCESSKEY: 'AKIAEXAMPLE',
        REGISTRY_STORAGE_S3_SECRETKEY: 'env-secret',
        REGISTRY_STORAGE_S3_ROOTDIRECTORY: '/registry',
        REGISTRY_STORAGE_S3_SECURE: 'false',
        REGISTRY_STORAGE_S3_SKIPVERIFY: 'yes',
        REGISTRY_STORAGE_S3_CHUNKSIZE: '16MiB',
        REGISTRY_STORAGE_S3_STORAGECLASS: 'NONE',
        REGISTRY_STORAGE_S3_ENCRYPT: 'true',
        REGISTRY_STORAGE_S3_KEYID: 'kms-key',
        REGISTRY_STORAGE_S3_SPOOLDIRECTORY: '/spool',
        REGISTRY_STORAGE_S3_READTIMEOUT: '3s',
        REGISTRY_STORAGE_REDIRECT_DISABLE: 'false',
      },
      warnings: [],
    });
    assert.deepEqual(fromEnv.storage.s3, {
      bucket: 'blobs',
      region: 'us-east-1',
      regionendpoint: 'http://127.0.0.1:7480',
      forcepathstyle: true,
      accesskey: 'AKIAEXAMPLE',
      secretkey: 'env-secret',
      rootdirectory: '/registry',
      secure: false,
      skipverify: true,
      chunksize: 16 * 1024 * 1024,
      storageclass: 'NONE',
      encrypt: true,
      keyid: 'kms-key',
      spooldirectory: '/spool',
      readtimeout: 3_000,
    });
    assert.equal(fromEnv.storage.redirect.disable, false, 'storage.redirect.disable from its variable');
    assert.equal(minimal.storage.redirect.disable, true, 'redirects are off unless asked for');
    assert.ok(!JSON.stringify(maskSecrets(fromEnv)).includes('env-secret'), 'the secret key is masked when printed');
  });

  it('storage.s3: ignored distribution keys warned about by name, bad values named, one driver at a time, the secret key from a file', () => {
    const dir = tempDir('pullmirror-config-s3');
    const file = path.join(dir.path, 'config.yml');
    const base = 'storage:\n  s3:\n    bucket: images\n    region: us-east-1\n';
    writeFileSync(file, `${base}    v4auth: true\n    objectacl: private\n    multipartcopychunksize: 33554432\n`);
    const warnings: string[] = [];
    loadConfig({ file, env: {}, warnings });
    assert.deepEqual(warnings.map((warning) => warning.split(' ')[0]).sort(), ['storage.s3.multipartcopychunksize', 'storage.s3.objectacl', 'storage.s3.v4auth']);
    assert.ok(warnings.every((warning) => warning.includes('is ignored by pullmirror')));

    const refused: [string, Record<string, string>, RegExp][] = [
      [base, { REGISTRY_STORAGE_S3_CHUNKSIZE: '4MiB' }, /storage\.s3\.chunksize \(from REGISTRY_STORAGE_S3_CHUNKSIZE\): at least 5MiB/],
      [base, { REGISTRY_STORAGE_S3_ACCESSKEY: 'AKIA' }, /storage\.s3\.secretkey: accesskey needs secretkey/],
      [base, { REGISTRY_STORAGE_S3_ROOTDIRECTORY: '/a/../b' }, /storage\.s3\.rootdirectory \(from REGISTRY_STORAGE_S3_ROOTDIRECTORY\): path components/],
      [base, { REGISTRY_STORAGE_S3_BUCKET: 'ab' }, /storage\.s3\.bucket \(from REGISTRY_STORAGE_S3_BUCKET\): a bucket name has at least 3 characters/],
      ['storage:\n  s3:\n    region: us-east-1\n', {}, /storage\.s3\.bucket: /],
      [`${base}  filesystem:\n    rootdirectory: /data\n`, {}, /storage\.s3: one storage driver at a time: storage\.filesystem is set too/],
      ['storage:\n  filesystem:\n    rootdirectory: /data\n', { REGISTRY_STORAGE_S3_BUCKET: 'images' }, /storage\.s3 \(from REGISTRY_STORAGE_S3_BUCKET\): one storage driver at a time/],
    ];
    for (const [yaml, env, message] of refused) {
      writeFileSync(file, yaml);
      assert.throws(() => loadConfig({ file, env }), (error: Error) => error instanceof ConfigError && message.test(error.message), `${yaml} ${JSON.stringify(env)}`);
    }

    const keyFile = path.join(dir.path, 's3-secret');
    writeFileSync(keyFile, 'file-secret\n');
    writeFileSync(file, `${base}    accesskey: AKIA\n    secretkeyfile: ${keyFile}\n`);
    const config = loadConfig({ file, env: {} });
    assert.equal(config.storage.s3?.secretkey, 'file-secret', 'read from the file, its newline dropped');
    const printed = stringify(printableConfig(config));
    assert.ok(!printed.includes('file-secret') && !printed.includes('secretkey:'), 'the key from a file is not printed beside it');
    writeFileSync(file, `${base}    accesskey: AKIA\n    secretkeyfile: ${keyFile}\n    secretkey: inline-secret\n`);
    assert.throws(() => loadConfig({ file, env: {} }), (error: Error) => /storage\.s3\.secretkeyfile: set either/.test(error.message) && !error.message.includes('inline-secret'));
    writeFileSync(file, `${base}    accesskey: AKIA\n    secretkeyfile: ${path.join(dir.path, 'missing')}\n`);
    assert.throws(() => loadConfig({ file, env: {} }), /storage\.s3\.secretkeyfile: cannot read .*missing: ENOENT/);
  });

  it('a printed storage.s3 config reads back as the same config, its secret key masked', () => {
    const dir = tempDir('pullmirror-config-s3');
    const file = path.join(dir.path, 'config.yml');
    writeFileSync(file, 'storage:\n  s3:\n    bucket: images\n    region: us-east-1\n    regionendpoint: http://rgw:7480\n    accesskey: AKIA\n    secretkey: s3-secret\n    chunksize: 32MiB\n');
    const config = loadConfig({ file, env: {} });
    const printed = stringify(printableConfig(config));
    assert.ok(printed.includes('chunksize: 32MiB'), printed);
    assert.ok(!printed.includes('s3-secret'));
    writeFileSync(file, printed);
    const again = loadConfig({ file, env: {} });
    assert.deepEqual(again, { ...config, storage: { ...config.storage, s3: { ...config.storage.s3!, secretkey: '*****' } } });
    assert.equal(stringify(printableConfig(again)), printed);
  });
});
