import assert from 'node:assert/strict';
import { utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { BcryptPool } from '../../src/auth/bcrypt-pool.ts';
import { Htpasswd } from '../../src/auth/htpasswd.ts';
import { addressKey, LoginThrottle } from '../../src/auth/login-throttle.ts';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/logging/logger.ts';
import { manifestReferences } from '../../src/registry/manifest-references.ts';
const referencedBlobs = (bytes: Uint8Array) => manifestReferences(bytes).blobs;
import { tempDir } from '../support/processes.ts';
import { eventually } from '../support/wait.ts';

const dir = tempDir('pullmirror-security-config');
const logger = createLogger({ level: 'error', formatter: 'json', accesslog: { disabled: true, format: 'json' } });

after(() => dir.cleanup());

describe('security configuration', () => {
  it('takes distribution\'s auth.htpasswd and http.tls keys, from YAML or REGISTRY_* variables', () => {
    const config = loadConfig({
      env: {
        REGISTRY_AUTH_HTPASSWD_REALM: 'corp',
        REGISTRY_AUTH_HTPASSWD_PATH: '/etc/pullmirror/htpasswd',
        REGISTRY_HTTP_TLS_CERTIFICATE: '/certs/mirror.crt',
        REGISTRY_HTTP_TLS_KEY: '/certs/mirror.key',
      },
    });
    assert.deepEqual(config.auth?.htpasswd, {
      realm: 'corp',
      path: '/etc/pullmirror/htpasswd',
      anonymouspull: false,
      workers: 2,
      queue: 64,
      throttle: { failures: 10, window: 60_000 },
    });
    assert.equal(config.http.tls?.certificate, '/certs/mirror.crt');
    assert.equal(config.http.tls?.minimumtls, 'tls1.2');
    assert.throws(
      () => loadConfig({ env: { REGISTRY_HTTP_TLS_CERTIFICATE: 'c', REGISTRY_HTTP_TLS_KEY: 'k', REGISTRY_HTTP_TLS_MINIMUMTLS: 'tls1.0' } }),
      /http\.tls\.minimumtls/,
    );
    assert.equal(config.proxy.privaterepos.protect, true, 'private repositories are protected by default');
    assert.equal(loadConfig({ env: {} }).auth, undefined, 'no auth unless configured');
  });

  it('rejects auth.silly with a message naming the kinds supported, and two kinds at once', () => {
    assert.throws(
      () => loadConfig({ env: { REGISTRY_AUTH_SILLY: '{realm: x}' } }),
      (error: Error) => error instanceof ConfigError && error.message.includes('auth.silly') && error.message.includes('use auth.htpasswd or auth.token'),
    );
    assert.throws(() => loadConfig({ env: { REGISTRY_AUTH_HTPASSWD_REALM: 'x' } }), /auth\.htpasswd\.path/);
    assert.throws(
      () => loadConfig({ env: { REGISTRY_AUTH_HTPASSWD_PATH: '/h', REGISTRY_AUTH_TOKEN: '{realm: r, service: s, issuer: i, rootcertbundle: /c}' } }),
      /auth\.token \(from REGISTRY_AUTH_TOKEN\): one auth kind at a time/,
    );
  });

  it("takes a registry:2 auth.token section as it is (autoredirect accepted and named as ignored)", () => {
    const warnings: string[] = [];
    const config = loadConfig({
      env: {
        REGISTRY_AUTH_TOKEN_REALM: 'https://auth.example.com/token',
        REGISTRY_AUTH_TOKEN_SERVICE: 'registry.example.com',
        REGISTRY_AUTH_TOKEN_ISSUER: 'auth.example.com',
        REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE: '/certs/token.crt',
        REGISTRY_AUTH_TOKEN_AUTOREDIRECT: 'false',
      },
      warnings,
    });
    assert.deepEqual(config.auth?.token, {
      realm: 'https://auth.example.com/token',
      service: 'registry.example.com',
      issuer: 'auth.example.com',
      rootcertbundle: '/certs/token.crt',
      autoredirect: 'false',
    });
    assert.ok(warnings.some((warning) => warning.includes('auth.token.autoredirect')), 'the ignored key is named');
    assert.throws(() => loadConfig({ env: { REGISTRY_AUTH_TOKEN: '{realm: r, service: s, issuer: i}' } }), /auth\.token\.rootcertbundle \(from REGISTRY_AUTH_TOKEN\): auth\.token needs rootcertbundle or jwks/);
  });

  it('reads the upstream password from proxy.passwordfile, and names the key, not the content, on error', () => {
    const file = path.join(dir.path, 'password');
    writeFileSync(file, 's3cret-from-file\n');
    assert.equal(loadConfig({ env: { REGISTRY_PROXY_PASSWORDFILE: file } }).proxy.password, 's3cret-from-file');
    assert.throws(() => loadConfig({ env: { REGISTRY_PROXY_PASSWORDFILE: file, REGISTRY_PROXY_PASSWORD: 'x' } }), /not both/);
    assert.throws(
      () => loadConfig({ env: { REGISTRY_PROXY_PASSWORDFILE: path.join(dir.path, 'missing') } }),
      (error: Error) => error instanceof ConfigError && /proxy\.passwordfile \(from REGISTRY_PROXY_PASSWORDFILE\): cannot read .*ENOENT/.test(error.message),
    );
  });
});

describe('htpasswd', () => {
  it('verifies $2y$ (htpasswd -B) and $2b$ entries, and refuses wrong names and passwords', async () => {
    const file = path.join(dir.path, 'htpasswd');
    // A $2y$ vector from PHP's password_hash documentation.
    writeFileSync(
      file,
      [
        'rasmus:$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a',
        `bob:${bcrypt.hashSync('bobs-pass', 4)}`,
        'carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=',
        '',
      ].join('\n'),
    );
    const pool = new BcryptPool({ threads: 1, queue: 8, logger });
    after(() => pool.close());
    const htpasswd = new Htpasswd(file, logger, { pool, throttle: new LoginThrottle({ failures: 100, windowMs: 60_000, logger }) });
    const verify = async (user: string, password: string) => (await htpasswd.login(user, password, '192.0.2.1')).kind;
    assert.equal(htpasswd.userCount, 2, 'the SHA1 entry is skipped, as distribution does');
    assert.equal(await verify('rasmus', 'rasmuslerdorf'), 'valid');
    assert.equal(await verify('rasmus', 'rasmuslerdorf'), 'valid', 'again, from the short-lived cache');
    assert.equal(await verify('rasmus', 'rasmuslerdorF'), 'invalid');
    assert.equal(await verify('bob', 'bobs-pass'), 'valid');
    assert.equal(await verify('carol', 'password'), 'invalid');
    assert.equal(await verify('nobody', 'rasmuslerdorf'), 'invalid');
  });

  it('takes an edited file in the background: no request looks at the file', async () => {
    const file = path.join(dir.path, 'htpasswd-edited');
    writeFileSync(file, `bob:${bcrypt.hashSync('bobs-pass', 4)}\n`);
    const pool = new BcryptPool({ threads: 1, queue: 8, logger });
    after(() => pool.close());
    const htpasswd = new Htpasswd(file, logger, { pool, throttle: new LoginThrottle({ failures: 100, windowMs: 60_000, logger }), reloadCheckMs: 50 });
    after(() => htpasswd.close());
    assert.equal(htpasswd.userCount, 1);
    writeFileSync(file, `bob:${bcrypt.hashSync('bobs-pass', 4)}\ndave:${bcrypt.hashSync('daves-pass', 4)}\n`);
    const later = new Date(Date.now() + 10_000);
    utimesSync(file, later, later);
    assert.ok(await eventually(() => htpasswd.userCount === 2, 5000), 'the new user is loaded without any login');
    assert.equal((await htpasswd.login('dave', 'daves-pass', '192.0.2.1')).kind, 'valid');
  });

  it('answers busy at once when every bcrypt thread is taken and the queue is full', async () => {
    const pool = new BcryptPool({ threads: 1, queue: 2, logger });
    after(() => pool.close());
    const hash = bcrypt.hashSync('x', 8);
    const running = [pool.compare('a', hash), pool.compare('b', hash), pool.compare('x', hash)];
    assert.equal(pool.compare('c', hash), 'busy', 'one running and two waiting: the fourth is refused');
    assert.ok(running.every((check) => check !== 'busy'));
    assert.deepEqual(await Promise.all(running), [false, false, true]);
    const again = pool.compare('x', hash);
    assert.notEqual(again, 'busy', 'free again once they are answered');
    assert.equal(await again, true);
  });
});

describe('login throttle', () => {
  it('refuses an address after `failures` failures in a window (checks in flight count), until the window ends', () => {
    let now = 1_000_000;
    const throttle = new LoginThrottle({ failures: 3, windowMs: 60_000, logger, now: () => now });
    const checks = [0, 1, 2].map((i) => throttle.admit('192.0.2.7', `user${i}`));
    assert.ok(checks.every((check) => check.admitted), 'three checks admitted');
    const fourth = throttle.admit('192.0.2.7', 'user9');
    assert.deepEqual(fourth, { admitted: false, scope: 'address', retryAfterS: 60 }, 'the burst cannot outrun the limit');
    for (const check of checks) if (check.admitted) check.done(false);
    assert.equal(throttle.addressBlocked('192.0.2.7'), 60);
    assert.equal(throttle.addressBlocked('192.0.2.8'), undefined, 'another address is not affected');
    now += 30_000;
    assert.equal(throttle.addressBlocked('192.0.2.7'), 30);
    now += 30_000;
    assert.equal(throttle.addressBlocked('192.0.2.7'), undefined, 'the window passed');
  });

  it('counts an IPv6 client by its /64 (one host holds all of it), an IPv4 one by its address', () => {
    assert.equal(addressKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8:1:2::99'), '2001:db8:1:2::/64');
    assert.equal(addressKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(addressKey('::1'), '0:0:0:0::/64');
    assert.equal(addressKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(addressKey('::ffff:192.0.2.5'), '192.0.2.5');
    assert.equal(addressKey('192.0.2.5'), '192.0.2.5');
    const throttle = new LoginThrottle({ failures: 1, windowMs: 60_000, logger });
    const check = throttle.admit('2001:db8:1:2::1', 'x');
    assert.ok(check.admitted);
    check.done(false);
    assert.equal(throttle.addressBlocked('2001:db8:1:2:ffff::7'), 60, 'another address of the same /64');
    assert.equal(throttle.addressBlocked('2001:db8:1:3::1'), undefined);
  });

  it('refuses a user name failed from many addresses; successes do not count', () => {
    const throttle = new LoginThrottle({ failures: 2, windowMs: 60_000, logger });
    for (const address of ['192.0.2.1', '192.0.2.2']) {
      const check = throttle.admit(address, 'alice');
      assert.ok(check.admitted);
      check.done(false);
    }
    const refused = throttle.admit('192.0.2.3', 'alice');
    assert.equal(refused.admitted, false);
    assert.equal(!refused.admitted && refused.scope, 'user');
    for (let i = 0; i < 5; i++) {
      const check = throttle.admit('192.0.2.9', 'bob');
      assert.ok(check.admitted, `bob's success ${i} is not a failure`);
      check.done(true);
    }
  });
});

describe('manifest references', () => {
  it('lists the config and layers of an image manifest, the blobSums of schema 1, nothing for an index', () => {
    const d = (c: string) => `sha256:${c.repeat(64)}`;
    const image = { schemaVersion: 2, config: { digest: d('a') }, layers: [{ digest: d('b') }, { digest: 'bogus' }, null] };
    assert.deepEqual(referencedBlobs(Buffer.from(JSON.stringify(image))), [d('a'), d('b')]);
    assert.deepEqual(referencedBlobs(Buffer.from(JSON.stringify({ schemaVersion: 1, fsLayers: [{ blobSum: d('c') }] }))), [d('c')]);
    assert.deepEqual(referencedBlobs(Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [{ digest: d('d') }] }))), []);
    assert.deepEqual(referencedBlobs(Buffer.from('not json')), []);
  });
});
