import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { TokenVerifier } from '../auth/token-verifier.ts';
import { SignatureRules } from '../signatures/signature-rules.ts';
import type { Config } from './schema.ts';

/**
 * What the schema cannot see but `serve` needs: the files the config names exist and can be
 * used (auth.htpasswd.path, auth.token's rootcertbundle and jwks, http.tls.*, the signature
 * policies' public keys). `serve` and `config check` both call this after
 * loading, so a config check passes exactly the configs serve starts with. Each problem names
 * the key and the file, never the content.
 */
export function checkFiles(config: Config): string[] {
  const problems: string[] = [];
  const read = (key: string, file: string): Buffer | undefined => {
    try {
      return readFileSync(file);
    } catch (error) {
      problems.push(`${key}: cannot read ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
      return undefined;
    }
  };
  const htpasswd = config.auth?.htpasswd;
  if (htpasswd) read('auth.htpasswd.path', htpasswd.path);
  const token = config.auth?.token;
  if (token) {
    const bundle = token.rootcertbundle === undefined ? undefined : read('auth.token.rootcertbundle', token.rootcertbundle);
    const jwks = token.jwks === undefined ? undefined : read('auth.token.jwks', token.jwks);
    if ((token.rootcertbundle === undefined || bundle) && (token.jwks === undefined || jwks)) {
      try {
        new TokenVerifier({ issuer: token.issuer, service: token.service, rootCertBundle: bundle?.toString('utf8'), jwks: jwks?.toString('utf8'), algorithms: token.signingalgorithms });
      } catch (error) {
        problems.push(`auth.token: ${(error as Error).message}`);
      }
    }
  }
  const tls = config.http.tls;
  if (tls) {
    const cert = read('http.tls.certificate', tls.certificate);
    const key = read('http.tls.key', tls.key);
    const cas = (tls.clientcas ?? []).map((file, index) => read(`http.tls.clientcas.${index}`, file));
    if (cert && key && cas.every(Boolean)) {
      try {
        createSecureContext({ cert, key, ...(cas.length ? { ca: cas as Buffer[] } : {}) });
      } catch (error) {
        // A key that does not match the certificate, or PEM that is not one: OpenSSL's reason names no secret.
        problems.push(`http.tls: cannot use the certificate and key: ${(error as Error).message}`);
      }
    }
  }
  const signatureRules: [string, Config['proxy']['signatures']][] = [['proxy', config.proxy.signatures], ...config.proxy.remotes.map((remote, index): [string, Config['proxy']['signatures']] => [`proxy.remotes.${index}`, remote.signatures])];
  for (const [path, rules] of signatureRules) {
    try {
      new SignatureRules(rules, `${path}.signatures`);
    } catch (error) {
      problems.push((error as Error).message);
    }
  }
  return problems;
}
