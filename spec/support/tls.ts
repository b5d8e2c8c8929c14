/**
 * A throw-away certificate authority made with the real openssl: a CA, a server certificate
 * for 127.0.0.1 signed by it, and a client certificate for mutual TLS. Files are PEM, laid out
 * for containers/image's certs dirs too (`ca.crt`, `client.cert`, `client.key`).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface TestCa {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** `ips`: more addresses the server certificate is valid for, besides 127.0.0.1. */
export async function makeTestCa(dir: string, options: { ips?: string[] } = {}): Promise<TestCa> {
  const san = ['IP:127.0.0.1', 'DNS:localhost', ...(options.ips ?? []).map((ip) => `IP:${ip}`)].join(',');
  const file = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => run('openssl', args);
  await openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', file('ca.key'), '-out', file('ca.crt'), '-days', '2', '-subj', '/CN=pullmirror test CA', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  for (const [name, cn, ext] of [
    ['server', '127.0.0.1', `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`],
    ['client', 'pullmirror test client', 'extendedKeyUsage=clientAuth\n'],
  ] as const) {
    writeFileSync(file(`${name}.ext`), ext);
    await openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', file(`${name}.key`), '-out', file(`${name}.csr`), '-subj', `/CN=${cn}`);
    await openssl('x509', '-req', '-in', file(`${name}.csr`), '-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial', '-out', file(`${name}.crt`), '-days', '2', '-extfile', file(`${name}.ext`));
  }
  return {
    dir,
    caCert: file('ca.crt'),
    serverCert: file('server.crt'),
    serverKey: file('server.key'),
    clientCert: file('client.crt'),
    clientKey: file('client.key'),
  };
}
