/**
 * A real dockerd using the mirror over HTTPS, with no insecure-registries entry: the test CA
 * and a client certificate sit where dockerd looks for them, /etc/docker/certs.d/<host:port>/
 * (dockerd has no flag to move that directory, so this test writes there, in a directory named
 * after its own address and port, and removes it). The client certificate authenticates
 * dockerd, so the repository that is private upstream is served to it too.
 *
 * Why not 127.0.0.1: dockerd counts 127.0.0.0/8 as an insecure registry whatever it is told, so
 * on loopback it skips certificate checks and never reads certs.d, and the test would prove
 * nothing. The mirror listens on this machine's first non-loopback IPv4 address instead (only
 * for this test; skipped where there is none); everything else stays on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { accessSync, constants, copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startDockerd, type Dockerd } from '../support/dockerd.ts';
import { pushImage, randomLayer, type PushedImage } from '../support/images.ts';
import type { RunningMirror } from '../support/mirror.ts';
import { skipUnlessBinaries, tempDir } from '../support/processes.ts';
import { makeTestCa } from '../support/tls.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const DOCKER_CERTS = '/etc/docker/certs.d';

function certsDirWritable(): string | false {
  try {
    mkdirSync(DOCKER_CERTS, { recursive: true });
    accessSync(DOCKER_CERTS, constants.W_OK);
    return false;
  } catch {
    return `${DOCKER_CERTS} is not writable here`;
  }
}

/** The first non-loopback IPv4 address of this machine. */
const hostAddress = Object.values(networkInterfaces())
  .flat()
  .find((entry) => entry && entry.family === 'IPv4' && !entry.internal)?.address;

const missing =
  missingBinaries || skipUnlessBinaries(['dockerd', 'docker']) || certsDirWritable() || (hostAddress ? false : 'no non-loopback IPv4 address');

describe('docker pull from the mirror over TLS with a client certificate (real dockerd)', { skip: missing }, () => {
  let world: World;
  let mirror: RunningMirror;
  let dockerd: Dockerd;
  let certsDir: string;
  const work = tempDir('pullmirror-docker-tls');
  const images: Record<string, PushedImage> = {};

  before(async () => {
    world = await startWorld({ privateRepos: ['team/private'] });
    images.public = await pushImage(world.registry.url, PUSHER, { name: 'library/tlsimage', tag: '1', layers: [randomLayer('tls-public-0')], format: 'docker' });
    images.private = await pushImage(world.registry.url, PUSHER, { name: 'team/private', tag: 'v1', layers: [randomLayer('tls-private-0')], format: 'docker' });
    const ca = await makeTestCa(work.path, { ips: [hostAddress!] });
    mirror = await world.startMirror({
      config: { http: { addr: `${hostAddress}:0`, tls: { certificate: ca.serverCert, key: ca.serverKey, clientcas: [ca.caCert] } } },
    });
    certsDir = path.join(DOCKER_CERTS, `${hostAddress}:${mirror.port}`);
    mkdirSync(certsDir, { recursive: true });
    copyFileSync(ca.caCert, path.join(certsDir, 'ca.crt'));
    copyFileSync(ca.clientCert, path.join(certsDir, 'client.cert'));
    copyFileSync(ca.clientKey, path.join(certsDir, 'client.key'));
    dockerd = await startDockerd({ registryMirror: mirror.url });
  });

  after(async () => {
    await dockerd?.stop();
    await world?.close();
    if (certsDir) rmSync(certsDir, { recursive: true, force: true });
    await work.cleanup();
  });

  it('pulls a public image through the HTTPS mirror', async () => {
    const { stdout } = await dockerd.docker(['pull', 'tlsimage:1']);
    assert.match(stdout, new RegExp(`Digest: ${images.public.manifestDigest}`), stdout);
  });

  it('pulls the private repository: the verified client certificate authenticates dockerd', async () => {
    const { stdout } = await dockerd.docker(['pull', 'team/private:v1']);
    assert.match(stdout, new RegExp(`Digest: ${images.private.manifestDigest}`), stdout);
    const served = mirror.logLines().filter((line) => line.message === 'request' && String(line.path).startsWith('/v2/team/private/'));
    assert.ok(served.length > 0 && served.every((line) => line.user === 'cert:pullmirror test client' && line.status < 400), JSON.stringify(served));
  });
});
