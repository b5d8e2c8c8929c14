import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { stringify } from 'yaml';
import { loadConfig } from '../../src/config/load.ts';
import { runPullmirror } from '../support/mirror.ts';
import { tempDir } from '../support/processes.ts';

/** proxy.signatures: a bad pattern or key stops start-up, and the message names the key. */
describe('signature policy config', () => {
  const dir = tempDir('pullmirror-signature-config');
  after(() => dir.cleanup());

  const pem = (name: string, genpkey: string[]) => {
    const key = path.join(dir.path, `${name}.key`);
    execFileSync('openssl', ['genpkey', ...genpkey, '-out', key]);
    execFileSync('openssl', ['pkey', '-in', key, '-pubout', '-out', path.join(dir.path, `${name}.pub`)]);
    return path.join(dir.path, `${name}.pub`);
  };

  const withRules = (signatures: unknown, remotes: unknown[] = []) => {
    const file = path.join(dir.path, `config-${Math.random().toString(36).slice(2)}.yml`);
    writeFileSync(file, stringify({ proxy: { remoteurl: 'https://registry-1.docker.io', signatures, remotes } }));
    return file;
  };

  it('accepts keep patterns of its own registry, keys as files or PEM text, enforce by default', () => {
    const file = withRules([{ repositories: ['docker.io/library/*', 'index.docker.io/acme/**'], keys: [pem('p256', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'])] }]);
    const config = loadConfig({ file, env: {} });
    assert.equal(config.proxy.signatures[0].mode, 'enforce');
  });

  it('refuses a pattern with a tag, one that is no pattern, or one naming another registry, naming the key', () => {
    assert.throws(() => loadConfig({ file: withRules([{ repositories: ['docker.io/library/alpine:3'], keys: ['k.pub'] }]), env: {} }), /proxy\.signatures\.0\.repositories\.0.*leave out the tag/);
    assert.throws(() => loadConfig({ file: withRules([{ repositories: ['library/alpine'], keys: ['k.pub'] }]), env: {} }), /proxy\.signatures\.0\.repositories\.0.*not a registry host/);
    assert.throws(
      () => loadConfig({ file: withRules([], [{ namespace: 'ghcr.io', signatures: [{ repositories: ['docker.io/acme/*'], keys: ['k.pub'] }] }]), env: {} }),
      /proxy\.remotes\.0\.signatures\.0\.repositories\.0.*names docker\.io, but these are the rules of ghcr\.io/,
    );
    assert.throws(() => loadConfig({ file: withRules([{ repositories: ['docker.io/a/*'], keys: ['k.pub'], mode: 'audit' }]), env: {} }), /proxy\.signatures\.0\.mode/);
  });

  it('stops start-up naming the key that is unreadable, not a public key, or of a type cosign keys are not', async () => {
    const p256k = pem('secp256k1', ['-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:secp256k1']);
    const garbage = path.join(dir.path, 'garbage.pub');
    writeFileSync(garbage, 'not a key\n');
    const good = pem('good', ['-algorithm', 'ED25519']);
    const cases: [string[], RegExp][] = [
      [[good, path.join(dir.path, 'missing.pub')], /proxy\.signatures\.0\.keys\.1: cannot read .*missing\.pub: ENOENT/],
      [[garbage], /proxy\.signatures\.0\.keys\.0 \(.*garbage\.pub\): not a PEM public key/],
      [[good, good, p256k], /proxy\.signatures\.0\.keys\.2 \(.*secp256k1\.pub\): ECDSA keys must be on P-256 or P-384/],
    ];
    for (const [keys, message] of cases) {
      const file = withRules([{ repositories: ['docker.io/library/*'], keys }]);
      const check = await runPullmirror(['config', 'check', file]);
      assert.notEqual(check.code, 0);
      assert.match(check.stderr, message);
    }
    const [[keys, message]] = cases;
    const serve = await runPullmirror(['serve', withRules([{ repositories: ['docker.io/library/*'], keys }])]);
    assert.notEqual(serve.code, 0, 'serve does not start');
    assert.match(serve.stderr, message);
  });
});
