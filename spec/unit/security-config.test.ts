import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import bcrypt from 'bcryptjs';
import { Htpasswd } from '../../src/auth/htpasswd.ts';
import { ConfigError, loadConfig } from '../../src/config/load.ts';
import { createLogger } from '../../src/logging/logger.ts';
import { manifestReferences } from '../../src/registry/manifest-references.ts';
const referencedBlobs = (bytes: Uint8Array) => manifestReferences(bytes).blobs;
import { tempDir } from '../support/processes.ts';

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
    assert.deepEqual(config.auth?.htpasswd, { realm: 'corp', path: '/etc/pullmirror/htpasswd', anonymouspull: false });
    assert.equal(config.http.tls?.certificate, '/certs/mirror.crt');
    assert.equal(config.http.tls?.minimumtls, 'tls1.2');
    assert.throws(
      () => loadConfig({ env: { REGISTRY_HTTP_TLS_CERTIFICATE: 'c', REGISTRY_HTTP_TLS_KEY: 'k', REGISTRY_HTTP_TLS_MINIMUMTLS: 'tls1.0' } }),
      /http\.tls\.minimumtls/,
    );
    assert.equal(config.proxy.privaterepos.protect, true, 'private repositories are protected by default');
    assert.equal(loadConfig({ env: {} }).auth, undefined, 'no auth unless configured');
  });

  it('rejects other auth kinds with a message naming the one supported', () => {
    for (const kind of ['TOKEN', 'SILLY']) {
      assert.throws(
        () => loadConfig({ env: { [`REGISTRY_AUTH_${kind}`]: '{realm: x}' } }),
        (error: Error) => error instanceof ConfigError && error.message.includes(`auth.${kind.toLowerCase()}`) && error.message.includes('use auth.htpasswd'),
      );
    }
    assert.throws(() => loadConfig({ env: { REGISTRY_AUTH_HTPASSWD_REALM: 'x' } }), /auth\.htpasswd\.path/);
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
    const htpasswd = new Htpasswd(file, logger);
    assert.equal(htpasswd.userCount, 2, 'the SHA1 entry is skipped, as distribution does');
    assert.equal(await htpasswd.verify('rasmus', 'rasmuslerdorf'), true);
    assert.equal(await htpasswd.verify('rasmus', 'rasmuslerdorf'), true, 'again, from the short-lived cache');
    assert.equal(await htpasswd.verify('rasmus', 'rasmuslerdorF'), false);
    assert.equal(await htpasswd.verify('bob', 'bobs-pass'), true);
    assert.equal(await htpasswd.verify('carol', 'password'), false);
    assert.equal(await htpasswd.verify('nobody', 'rasmuslerdorf'), false);
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
