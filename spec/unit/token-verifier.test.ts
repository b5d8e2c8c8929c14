/**
 * TokenVerifier against tokens signed here with node:crypto: ES256 keys named by `kid` in a
 * JWKS, an RSA key named by its libtrust key ID in rootcertbundle (what docker_auth sends,
 * without x5c), and the tricks a forger tries: alg none, HMAC with the public key as secret,
 * a key of the wrong type, a wrong issuer or audience, times outside exp/nbf.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHmac, createPrivateKey, generateKeyPairSync, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { grants, libtrustKeyId, TokenVerifier } from '../../src/auth/token-verifier.ts';
import { findBinary, tempDir } from '../support/processes.ts';
import { makeTestCa } from '../support/tls.ts';

const ISSUER = 'issuer.test';
const SERVICE = 'mirror.test';
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
const now = () => Math.floor(Date.now() / 1000);

function jwt(header: Record<string, unknown>, claims: Record<string, unknown>, key: KeyObject): string {
  const input = `${b64(header)}.${b64(claims)}`;
  const hash = String(header.alg).endsWith('384') ? 'sha384' : 'sha256';
  const signature = key.asymmetricKeyType === 'ec' ? sign(hash, Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }) : sign(hash, Buffer.from(input), key);
  return `${input}.${signature.toString('base64url')}`;
}

const claims = (extra: Record<string, unknown> = {}) => ({
  iss: ISSUER,
  aud: SERVICE,
  sub: 'dave',
  exp: now() + 300,
  nbf: now() - 1,
  access: [{ type: 'repository', name: 'library/app', actions: ['pull'] }],
  ...extra,
});

describe('TokenVerifier', () => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const jwks = JSON.stringify({ keys: [{ ...ec.publicKey.export({ format: 'jwk' }), kid: 'ec-1', use: 'sig' }] });
  const verifier = new TokenVerifier({ issuer: ISSUER, service: SERVICE, jwks });

  it('accepts an ES256 token named by kid in the JWKS, and reads subject and access', () => {
    const check = verifier.verify(jwt({ alg: 'ES256', typ: 'JWT', kid: 'ec-1' }, claims(), ec.privateKey));
    assert.ok(check.ok, JSON.stringify(check));
    assert.equal(check.subject, 'dave');
    assert.ok(grants(check.access, 'library/app', 'pull'));
    assert.ok(!grants(check.access, 'library/other', 'pull'));
    assert.ok(grants([{ type: 'repository', name: 'x/y', actions: ['*'] }], 'x/y', 'pull'), '* grants pull');
  });

  it('refuses what a forger tries, each with its reason', () => {
    const header = { alg: 'ES256', kid: 'ec-1' };
    const cases: [string, string, string][] = [
      ['wrong issuer', jwt(header, claims({ iss: 'evil' }), ec.privateKey), 'wrong issuer'],
      ['wrong audience', jwt(header, claims({ aud: 'other.service' }), ec.privateKey), 'wrong audience'],
      ['audience list without the service', jwt(header, claims({ aud: ['a', 'b'] }), ec.privateKey), 'wrong audience'],
      ['expired beyond the leeway', jwt(header, claims({ exp: now() - 61 }), ec.privateKey), 'expired'],
      ['no exp', jwt(header, claims({ exp: undefined }), ec.privateKey), 'expired'],
      ['not yet valid', jwt(header, claims({ nbf: now() + 120 }), ec.privateKey), 'not yet valid'],
      ['unknown kid', jwt({ alg: 'ES256', kid: 'other' }, claims(), ec.privateKey), 'unknown kid'],
      ['another key under the kid', jwt(header, claims(), generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey), 'bad signature'],
      ['alg none', `${b64({ alg: 'none', kid: 'ec-1' })}.${b64(claims())}.`, 'signing algorithm not accepted: none'],
      [
        'HS256 with the public key as the secret',
        (() => {
          const input = `${b64({ alg: 'HS256', kid: 'ec-1' })}.${b64(claims())}`;
          return `${input}.${createHmac('sha256', ec.publicKey.export({ format: 'pem', type: 'spki' })).update(input).digest('base64url')}`;
        })(),
        'signing algorithm not accepted: HS256',
      ],
      ['RS256 claimed for an EC key', `${b64({ alg: 'RS256', kid: 'ec-1' })}.${b64(claims())}.AAAA`, 'the signing key does not fit RS256'],
      ['neither x5c nor kid', jwt({ alg: 'ES256' }, claims(), ec.privateKey), 'no x5c or kid in the header'],
      ['not a JWT', 'abc.def', 'not a JWT'],
      ['garbage', 'a.b.c', 'malformed JWT'],
    ];
    for (const [what, token, reason] of cases) assert.deepEqual(verifier.verify(token), { ok: false, reason }, what);
    assert.ok(verifier.verify(jwt(header, claims({ exp: now() - 30 }), ec.privateKey)).ok, 'expired within the 60 s leeway');
  });

  it('only the configured signingalgorithms', () => {
    const only = new TokenVerifier({ issuer: ISSUER, service: SERVICE, jwks, algorithms: ['RS256'] });
    assert.deepEqual(only.verify(jwt({ alg: 'ES256', kid: 'ec-1' }, claims(), ec.privateKey)), { ok: false, reason: 'signing algorithm not accepted: ES256' });
    assert.throws(() => new TokenVerifier({ issuer: ISSUER, service: SERVICE, jwks, algorithms: ['HS256'] }), /unsupported signing algorithms: HS256/);
    assert.throws(() => new TokenVerifier({ issuer: ISSUER, service: SERVICE, rootCertBundle: 'not pem' }), /no PEM certificate/);
  });

  it('checks a valid token once and answers it from memory until it expires; refusals are checked every time', () => {
    const fresh = new TokenVerifier({ issuer: ISSUER, service: SERVICE, jwks });
    const exp = now() + 300;
    const token = jwt({ alg: 'ES256', kid: 'ec-1' }, claims({ exp }), ec.privateKey);
    for (let i = 0; i < 5; i++) {
      const check = fresh.verify(token);
      assert.ok(check.ok && check.subject === 'dave' && grants(check.access, 'library/app', 'pull'), JSON.stringify(check));
    }
    assert.equal(fresh.signaturesChecked, 1, 'one signature check for five requests with the same token');
    // Past exp and the leeway the remembered verdict is gone: the token is refused as expired.
    assert.deepEqual(fresh.verify(token, (exp + 61) * 1000), { ok: false, reason: 'expired' });
    assert.ok(fresh.verify(token, (exp + 60) * 1000).ok, 'within the leeway it still holds');
    const forged = `${token.slice(0, token.lastIndexOf('.'))}.${Buffer.alloc(64).toString('base64url')}`;
    const before = fresh.signaturesChecked;
    assert.deepEqual(fresh.verify(forged), { ok: false, reason: 'bad signature' });
    assert.deepEqual(fresh.verify(forged), { ok: false, reason: 'bad signature' });
    assert.equal(fresh.signaturesChecked, before + 2, 'a refused token is checked again');
  });

  describe('with a certificate of rootcertbundle', { skip: findBinary('openssl') || process.env.CI === 'true' ? false : 'openssl missing' }, () => {
    const dir = tempDir('pullmirror-token-verifier');
    after(() => dir.cleanup());

    it('accepts an RS256 token whose kid is the libtrust key ID of the certificate, as docker_auth signs them', () => {
      const keyPath = path.join(dir.path, 'k.pem');
      const certPath = path.join(dir.path, 'c.pem');
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '1', '-subj', '/CN=token-issuer'], { stdio: 'ignore' });
      const bundle = readFileSync(certPath, 'utf8');
      const key = createPrivateKey(readFileSync(keyPath));
      const kid = libtrustKeyId(new X509Certificate(bundle).publicKey);
      assert.match(kid, /^([A-Z2-7]{4}:){11}[A-Z2-7]{4}$/, 'twelve groups of four base32 characters');
      const rsa = new TokenVerifier({ issuer: ISSUER, service: SERVICE, rootCertBundle: bundle });
      assert.ok(rsa.verify(jwt({ alg: 'RS256', kid }, claims(), key)).ok);
      assert.deepEqual(rsa.verify(jwt({ alg: 'ES256', kid }, claims(), ec.privateKey)), { ok: false, reason: 'the signing key does not fit ES256' });
    });

    it('accepts an x5c leaf signed by a CA of the bundle (a token server with a CA-issued certificate), not by another CA', async () => {
      const ca = await makeTestCa(mkdir(path.join(dir.path, 'ca')));
      const otherCa = await makeTestCa(mkdir(path.join(dir.path, 'other-ca')));
      const leafDer = new X509Certificate(readFileSync(ca.serverCert)).raw.toString('base64');
      const token = jwt({ alg: 'RS256', x5c: [leafDer] }, claims(), createPrivateKey(readFileSync(ca.serverKey)));
      assert.ok(new TokenVerifier({ issuer: ISSUER, service: SERVICE, rootCertBundle: readFileSync(ca.caCert, 'utf8') }).verify(token).ok);
      const two = `${readFileSync(otherCa.caCert, 'utf8')}\n${readFileSync(ca.caCert, 'utf8')}`;
      assert.ok(new TokenVerifier({ issuer: ISSUER, service: SERVICE, rootCertBundle: two }).verify(token).ok, 'any certificate of the bundle');
      assert.deepEqual(new TokenVerifier({ issuer: ISSUER, service: SERVICE, rootCertBundle: readFileSync(otherCa.caCert, 'utf8') }).verify(token), {
        ok: false,
        reason: 'x5c chain not signed by rootcertbundle',
      });
      const otherLeaf = new X509Certificate(readFileSync(otherCa.serverCert)).raw.toString('base64');
      const mismatched = jwt({ alg: 'RS256', x5c: [otherLeaf] }, claims(), createPrivateKey(readFileSync(ca.serverKey)));
      assert.deepEqual(new TokenVerifier({ issuer: ISSUER, service: SERVICE, rootCertBundle: two }).verify(mismatched), { ok: false, reason: 'bad signature' }, 'a trusted leaf, another key');
    });
  });
});

function mkdir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}
