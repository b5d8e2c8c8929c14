/**
 * A Docker-Hub-style token server (auth.docker.io look-alike) for e2e tests.
 *
 * Why: the mirror must follow the real Bearer flow — 401 + WWW-Authenticate
 * from the registry, token fetch from the realm, retry — including Docker Hub's
 * quirks: anonymous requests for a private repo still get a token (with the
 * scope silently dropped), and tokens expire. distribution's registry:2
 * verifies these tokens for real (x5c chain against `rootcertbundle`), so the
 * upstream behaves like Docker Hub from the mirror's point of view.
 */
import { execFile } from 'node:child_process';
import { createPrivateKey, createSign, randomUUID, X509Certificate } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './processes.ts';

const execFileAsync = promisify(execFile);

export interface TokenServerOptions {
  /** user → password. A wrong password (or unknown user) gets 401. */
  users?: Record<string, string>;
  /** Repositories (e.g. "library/secret") whose pull is granted only to authenticated users. */
  privateRepos?: string[];
  /** Token lifetime in seconds (default 300, like Docker Hub). */
  expiresIn?: number;
  service?: string;
  issuer?: string;
}

export interface TokenRequestRecord {
  method: string;
  /** Authenticated account; undefined for anonymous requests. */
  account?: string;
  scopes: string[];
  /** Was a token issued (false for 401/400)? */
  ok: boolean;
}

export interface AccessEntry {
  type: string;
  name: string;
  actions: string[];
}

export interface TokenServer {
  url: string;
  /** `${url}/token` — put this in the registry's auth.token.realm. */
  realm: string;
  service: string;
  issuer: string;
  certPath: string;
  keyPath: string;
  /** Every token request, in order (push onto / clear with `requests.length = 0`). */
  requests: TokenRequestRecord[];
  /** Mint a token directly (no HTTP), e.g. to hand-craft an expired one. */
  issueToken(account: string | undefined, access: AccessEntry[], opts?: { expiresIn?: number; now?: number }): string;
  close(): Promise<void>;
}

/** Decode (without verifying) a JWT's claims — handy for assertions in tests. */
export function decodeJwtClaims(token: string): Record<string, unknown> & { access?: AccessEntry[] } {
  const part = token.split('.')[1];
  if (part === undefined) throw new Error('not a JWT');
  return JSON.parse(Buffer.from(part, 'base64url').toString('utf8')) as Record<string, unknown> & { access?: AccessEntry[] };
}

/** Parse "repository:library/alpine:pull,push" (names may not contain ':' but the type may carry "(plugin)"). */
export function parseScope(scope: string): AccessEntry | undefined {
  const first = scope.indexOf(':');
  const last = scope.lastIndexOf(':');
  if (first <= 0 || last <= first) return undefined;
  return {
    type: scope.slice(0, first),
    name: scope.slice(first + 1, last),
    actions: scope
      .slice(last + 1)
      .split(',')
      .filter((a) => a !== ''),
  };
}

export async function startTokenServer(opts: TokenServerOptions = {}): Promise<TokenServer> {
  const users = opts.users ?? {};
  const privateRepos = new Set(opts.privateRepos ?? []);
  const defaultExpiresIn = opts.expiresIn ?? 300;
  const service = opts.service ?? 'registry.test';
  const issuer = opts.issuer ?? 'pullmirror-test-token-issuer';

  const dir = tempDir('pullmirror-token');
  const keyPath = path.join(dir.path, 'token.key');
  const certPath = path.join(dir.path, 'token.crt');
  await execFileAsync('openssl', [
    'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
    '-keyout', keyPath, '-out', certPath,
    '-days', '2', '-subj', '/CN=pullmirror-test-token',
  ]);
  const privateKey: KeyObject = createPrivateKey(readFileSync(keyPath));
  const certDerB64 = new X509Certificate(readFileSync(certPath)).raw.toString('base64');

  const issueToken = (account: string | undefined, access: AccessEntry[], o: { expiresIn?: number; now?: number } = {}): string => {
    const now = Math.floor((o.now ?? Date.now()) / 1000);
    const header = { alg: 'RS256', typ: 'JWT', x5c: [certDerB64] };
    const claims = {
      iss: issuer,
      sub: account ?? '',
      aud: service,
      exp: now + (o.expiresIn ?? defaultExpiresIn),
      nbf: now - 1,
      iat: now,
      jti: randomUUID(),
      access,
    };
    const signingInput = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
    const signature = createSign('RSA-SHA256').update(signingInput).sign(privateKey).toString('base64url');
    return `${signingInput}.${signature}`;
  };

  /** Docker Hub semantics: never refuse a scope, just drop what the caller may not have. */
  const grant = (account: string | undefined, scopes: string[]): AccessEntry[] => {
    const out: AccessEntry[] = [];
    for (const s of scopes) {
      const req = parseScope(s);
      if (!req) continue;
      let actions: string[];
      if (req.type === 'repository') {
        actions = req.actions.filter((a) => {
          if (a === 'pull') return account !== undefined || !privateRepos.has(req.name);
          return account !== undefined; // push, delete, * need an account
        });
      } else {
        actions = account !== undefined ? req.actions : [];
      }
      if (actions.length > 0) out.push({ type: req.type, name: req.name, actions });
    }
    return out;
  };

  const requests: TokenRequestRecord[] = [];

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const u = new URL(req.url ?? '/', 'http://127.0.0.1');
    if (u.pathname !== '/token') {
      sendJson(res, 404, { details: 'not found' });
      return;
    }
    let username: string | undefined;
    let password: string | undefined;
    let scopeParams: string[] = u.searchParams.getAll('scope');
    let reqService = u.searchParams.get('service') ?? undefined;
    let oauth = false;

    if (req.method === 'POST') {
      // OAuth2 password grant, which containerd tries first when it has credentials.
      oauth = true;
      const form = new URLSearchParams(await readBody(req));
      if (form.get('grant_type') !== 'password') {
        requests.push({ method: 'POST', scopes: scopeParams, ok: false });
        sendJson(res, 400, { error: 'unsupported_grant_type' });
        return;
      }
      username = form.get('username') ?? undefined;
      password = form.get('password') ?? '';
      scopeParams = form.getAll('scope');
      reqService = form.get('service') ?? reqService;
    } else if (req.method === 'GET') {
      const authz = req.headers.authorization;
      if (authz?.toLowerCase().startsWith('basic ')) {
        const decoded = Buffer.from(authz.slice(6).trim(), 'base64').toString('utf8');
        const colon = decoded.indexOf(':');
        username = colon >= 0 ? decoded.slice(0, colon) : decoded;
        password = colon >= 0 ? decoded.slice(colon + 1) : '';
      }
    } else {
      sendJson(res, 405, { details: 'method not allowed' });
      return;
    }
    // One scope parameter may also carry several space-separated scopes.
    const scopes = scopeParams.flatMap((s) => s.split(' ')).filter((s) => s !== '');

    if (username !== undefined) {
      if (!Object.hasOwn(users, username) || users[username] !== password) {
        requests.push({ method: req.method, account: username, scopes, ok: false });
        res.setHeader('WWW-Authenticate', 'Basic realm="pullmirror-test-token"');
        sendJson(res, 401, { details: 'incorrect username or password' });
        return;
      }
    }
    requests.push({ method: req.method, account: username, scopes, ok: true });
    // A token for another `service` is still issued (like Docker Hub); the registry rejects it (aud mismatch).
    void reqService;
    const token = issueToken(username, grant(username, scopes));
    const issuedAt = new Date().toISOString();
    if (oauth) {
      sendJson(res, 200, { access_token: token, expires_in: defaultExpiresIn, issued_at: issuedAt, scope: scopes.join(' ') });
    } else {
      sendJson(res, 200, { token, access_token: token, expires_in: defaultExpiresIn, issued_at: issuedAt });
    }
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) sendJson(res, 500, { details: String(err) });
      else res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  const url = `http://127.0.0.1:${port}`;

  return {
    url,
    realm: `${url}/token`,
    service,
    issuer,
    certPath,
    keyPath,
    requests,
    issueToken,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await dir.cleanup();
    },
  };
}

function b64url(s: string): string {
  return Buffer.from(s, 'utf8').toString('base64url');
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const bytes = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': bytes.length });
  res.end(bytes);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
