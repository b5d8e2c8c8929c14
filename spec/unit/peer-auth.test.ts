import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePeerAddress } from '../../src/config/addr.ts';
import { PeerAuth, SIGNATURE_LIFETIME_S } from '../../src/fleet/peer-auth.ts';

const SECRET = 'a-fleet-secret-of-32-characters!';
const TARGET = '/peer/v1/blobs/sha256:' + 'ab'.repeat(32);

describe('PeerAuth: the HMAC every peer request carries', () => {
  it('accepts a request signed with the same secret, for the same method and target', () => {
    const auth = new PeerAuth(SECRET);
    assert.deepEqual(auth.verify('GET', TARGET, auth.sign('GET', TARGET)), { ok: true });
    // Another instance: its own object, the same secret.
    assert.deepEqual(new PeerAuth(SECRET).verify('GET', TARGET, auth.sign('GET', TARGET)), { ok: true });
  });

  it('refuses no header as missing, and anything not of the scheme as malformed', () => {
    const auth = new PeerAuth(SECRET);
    assert.deepEqual(auth.verify('GET', TARGET, undefined), { ok: false, reason: 'missing' });
    assert.deepEqual(auth.verify('GET', TARGET, ''), { ok: false, reason: 'missing' });
    for (const header of ['Bearer abc', `Basic ${Buffer.from('a:b').toString('base64')}`, 'Pullmirror-Peer expires=1', 'Pullmirror-Peer expires=x, signature=y']) {
      assert.deepEqual(auth.verify('GET', TARGET, header), { ok: false, reason: 'malformed' }, header);
    }
    const good = auth.sign('GET', TARGET);
    assert.deepEqual(auth.verify('GET', TARGET, `${good}A`), { ok: false, reason: 'malformed' }, 'a signature one character too long');
  });

  it('refuses a signature made with another secret, or for another method, path, query or expiry, as forged', () => {
    const auth = new PeerAuth(SECRET);
    const other = new PeerAuth('another-secret-of-the-same-size!');
    assert.deepEqual(auth.verify('GET', TARGET, other.sign('GET', TARGET)), { ok: false, reason: 'forged' });
    const signed = auth.sign('GET', TARGET);
    assert.deepEqual(auth.verify('HEAD', TARGET, signed), { ok: false, reason: 'forged' }, 'another method');
    assert.deepEqual(auth.verify('GET', TARGET.replace('ab', 'cd'), signed), { ok: false, reason: 'forged' }, 'another digest');
    assert.deepEqual(auth.verify('GET', `${TARGET}?x=1`, signed), { ok: false, reason: 'forged' }, 'a query added');
    const expires = Number(/expires=(\d+)/.exec(signed)![1]);
    const moved = signed.replace(`expires=${expires}`, `expires=${expires + 1}`);
    assert.deepEqual(auth.verify('GET', TARGET, moved), { ok: false, reason: 'forged' }, 'a later expiry under the same signature');
    // One bit of the signature flipped.
    const signature = /signature=([A-Za-z0-9_-]+)/.exec(signed)![1];
    const bytes = Buffer.from(signature, 'base64url');
    bytes[0] ^= 1;
    assert.deepEqual(auth.verify('GET', TARGET, signed.replace(signature, bytes.toString('base64url'))), { ok: false, reason: 'forged' });
  });

  it('refuses a signature past its expiry, and one good for longer than a peer ever signs', () => {
    let now = Date.parse('2026-12-03T15:00:00Z');
    const auth = new PeerAuth(SECRET, () => now);
    const signed = auth.sign('GET', TARGET);
    now += SIGNATURE_LIFETIME_S * 1000;
    assert.deepEqual(auth.verify('GET', TARGET, signed), { ok: true }, 'good up to its expiry');
    now += 1000;
    assert.deepEqual(auth.verify('GET', TARGET, signed), { ok: false, reason: 'expired' });
    // A client whose clock runs an hour ahead signs for an expiry far ahead of ours.
    const ahead = new PeerAuth(SECRET, () => Date.parse('2026-12-03T16:00:00Z'));
    const verifier = new PeerAuth(SECRET, () => Date.parse('2026-12-03T15:00:00Z'));
    assert.deepEqual(verifier.verify('GET', TARGET, ahead.sign('GET', TARGET)), { ok: false, reason: 'malformed' });
  });

  it('never puts the secret in what it sends', () => {
    const header = new PeerAuth(SECRET).sign('GET', TARGET);
    assert.ok(!header.includes(SECRET));
    assert.ok(!header.includes(Buffer.from(SECRET).toString('base64')));
    assert.ok(!header.includes(Buffer.from(SECRET).toString('hex')));
  });
});

describe('parsePeerAddress: what may be dialed', () => {
  it('takes host:port with a name, an IPv4 or a bracketed IPv6 address', () => {
    assert.deepEqual(parsePeerAddress('10.0.0.7:5001'), { host: '10.0.0.7', port: 5001, authority: '10.0.0.7:5001' });
    assert.deepEqual(parsePeerAddress('Mirror-0.mirror-peers.default.svc:5001'), {
      host: 'mirror-0.mirror-peers.default.svc',
      port: 5001,
      authority: 'mirror-0.mirror-peers.default.svc:5001',
    });
    assert.deepEqual(parsePeerAddress('[FD00::1]:5001'), { host: 'fd00::1', port: 5001, authority: '[fd00::1]:5001' });
  });

  it('refuses schemes, users, paths, unspecified and empty hosts, and ports out of range', () => {
    for (const text of [
      'http://10.0.0.7:5001',
      'user@10.0.0.7:5001',
      '10.0.0.7:5001/x',
      '10.0.0.7',
      ':5001',
      '0.0.0.0:5001',
      '[::]:5001',
      '[0:0::0]:5001',
      '[fe80::1%eth0]:5001',
      '10.0.0.7:0',
      '10.0.0.7:65536',
      '1.2.3:5001',
      'host name:5001',
      'a..b:5001',
      '10.0.0.7:5001\r\nX: y',
    ]) {
      assert.equal(parsePeerAddress(text), undefined, text);
    }
    assert.equal(parsePeerAddress('10.0.0.7:0', { anyPort: true })?.port, 0, 'port 0 for the advertise key: the port bound');
  });
});
