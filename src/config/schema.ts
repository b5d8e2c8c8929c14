import os from 'node:os';
import path from 'node:path';
import { parseKeepPattern } from '../eviction/keep.ts';
import { checkKey } from '../storage/driver/storage-driver.ts';
import { z } from 'zod';
import { validate as validCron } from 'node-cron';
import parseBytes from 'bytes';
import cron from 'node-cron';
import { parseAddr, parsePeerAddress, parseProxyEntry } from './addr.ts';
import { parseDuration } from './duration.ts';

/*
 * The one typed schema of pullmirror's configuration, with every default. Its shape is
 * distribution's config.yml, so an existing registry config works; keys pullmirror adds
 * are marked as ours. Objects are strict: an unknown key stops start-up with its path.
 *
 * Leaves accept strings for numbers and booleans because REGISTRY_* environment overrides
 * arrive as strings, and distribution accepts them the same way.
 */

const str = () => z.preprocess((v) => (typeof v === 'number' || typeof v === 'boolean' ? String(v) : v), z.string());
/**
 * A boolean as Go's YAML (yaml.v2, distribution's parser) reads one: YAML 1.1's yes/no/on/off
 * and y/n besides true/false, in any of their cases, so a distribution config means the same here.
 */
const YAML11_BOOLEANS: Record<string, boolean> = { true: true, yes: true, y: true, on: true, false: false, no: false, n: false, off: false };
const bool = () =>
  z.preprocess((v) => (typeof v === 'string' && Object.hasOwn(YAML11_BOOLEANS, v.trim().toLowerCase()) ? YAML11_BOOLEANS[v.trim().toLowerCase()] : v), z.boolean());
const int = (min = 0, max = Number.MAX_SAFE_INTEGER) =>
  z.preprocess((v) => (typeof v === 'string' && /^-?\d+$/.test(v.trim()) ? Number(v) : v), z.number().int().min(min).max(max));
const percent = () =>
  z.preprocess((v) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v), z.number().int().min(1).max(100));
/** A Go-style duration ("30s", "168h"), turned into milliseconds. Its `format` (and size's) lets config check print it back as written (printable.ts). */
const duration = () =>
  z.union([z.string(), z.number()]).meta({ format: 'duration' }).transform((v, ctx) => {
    try {
      return parseDuration(v);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
      return z.NEVER;
    }
  });
/** A size in bytes: a number, or a string with a unit ("512MiB", "20GiB"; KB, MB, GB are read as binary too: 1024-based). */
const size = () =>
  z.union([z.string(), z.number()]).meta({ format: 'size' }).transform((v, ctx) => {
    const parsed = typeof v === 'number' ? v : parseBytes.parse(v.trim().replace(/iB$/i, 'B'));
    if (parsed === null || !Number.isFinite(parsed) || parsed < 0) {
      ctx.addIssue({ code: 'custom', message: `not a size: ${JSON.stringify(v)} (use bytes or a binary unit: 512MiB, 20GiB)` });
      return z.NEVER;
    }
    return Math.floor(parsed);
  });
/**
 * distribution keys pullmirror reads but has no use for: accepted, so old configs start, and
 * named in a warning when set (src/config/ignored-keys.ts says what each did in registry:2).
 */
const ignored = () => z.unknown().optional().meta({ ignored: true });
/** A host:port address as distribution's http.addr: `:5000`, `0.0.0.0:5000`, `[::1]:5000`. */
const addr = () => str().refine((v) => parseAddr(v) !== undefined, { message: 'expected host:port (":5000", "127.0.0.1:5000", "[::1]:5000")' });
/** logrus's level names as distribution accepts them (any case; warning, trace, fatal, panic too). */
const LOG_LEVEL_ALIASES: Record<string, string> = { warning: 'warn', trace: 'debug', fatal: 'error', panic: 'error' };

const log = z
  .strictObject({
    level: z
      .preprocess((v) => (typeof v === 'string' ? (LOG_LEVEL_ALIASES[v.trim().toLowerCase()] ?? v.trim().toLowerCase()) : v), z.enum(['error', 'warn', 'info', 'debug']))
      .default('info'),
    formatter: z.enum(['text', 'json', 'logstash']).default('text'),
    fields: z.record(z.string(), z.unknown()).optional(),
    accesslog: z
      .strictObject({
        disabled: bool().default(false),
        /** ours: `json` (a structured line through the logger) or `combined` (Apache Combined Log Format on stdout, distribution's style). */
        format: z.enum(['json', 'combined']).default('json'),
      })
      .prefault({}),
    hooks: ignored(),
  })
  .prefault({});

/** Storage drivers distribution has that pullmirror does not: named, so the error says what is supported. */
const unsupportedStorage = () =>
  z
    .unknown()
    .refine((v) => v === undefined, { message: `only filesystem and s3 storage are supported (storage.filesystem, storage.s3)` })
    .optional()
    .meta({ unsupported: true });

/** A root directory in a bucket: '' or components a key may have (checkKey's), slashes at either end allowed. */
function validRoot(root: string): boolean {
  const trimmed = root.split('/').filter((part) => part !== '').join('/');
  if (trimmed === '') return true;
  try {
    checkKey(trimmed, 'rootdirectory');
    return true;
  } catch {
    return false;
  }
}

/**
 * distribution's s3 driver keys (its s3-aws driver), for AWS S3 and what speaks it (Ceph's RADOS
 * Gateway, MinIO). Without accesskey, the AWS SDK's default credential chain (environment,
 * shared config, web identity for Kubernetes service accounts, instance metadata).
 */
const s3 = z
  .strictObject({
    bucket: str().pipe(z.string().min(3, 'a bucket name has at least 3 characters')),
    region: str(),
    /** An S3 server other than AWS's (http://rgw.local:7480); a host without a scheme takes `secure`'s. */
    regionendpoint: str().optional(),
    /** Path-style URLs (endpoint/bucket/key), which RGW and MinIO usually need. */
    forcepathstyle: bool().default(false),
    accesskey: str().optional(),
    secretkey: str().optional(),
    /** ours: a file holding the secret key (a mounted secret), instead of secretkey. */
    secretkeyfile: str().optional(),
    sessiontoken: str().optional(),
    /** Keys live under this prefix in the bucket ('' : at its top). */
    rootdirectory: str()
      .default('')
      .refine((v) => validRoot(v), { message: "path components of letters, digits and ._:@+=- not starting with a dot (e.g. /registry)" }),
    /** https (true) or http for a regionendpoint given without a scheme. */
    secure: bool().default(true),
    /** Accept any TLS certificate from the endpoint. */
    skipverify: bool().default(false),
    /** Bytes per part of a multipart upload (at least 5MiB, S3's smallest part); smaller blobs go in one PutObject. */
    chunksize: size()
      .prefault('10MiB')
      .refine((v) => v >= 5 * 1024 * 1024, { message: 'at least 5MiB (the smallest part S3 takes)' }),
    /** The storage class of new objects; NONE leaves it to the bucket's default. */
    storageclass: str().default('STANDARD'),
    /** Server-side encryption: KMS with keyid, else AES256. */
    encrypt: bool().default(false),
    keyid: str().optional(),
    /**
     * ours: a local directory where fills are spooled on their way to the bucket: clients are
     * served from it while the blob downloads, and the verified file is uploaded from it. Needs
     * room for the blobs being filled at once (an emptyDir in Kubernetes).
     */
    spooldirectory: str().default(path.join(os.tmpdir(), 'pullmirror-spool')),
    /**
     * ours: how long a read a client waits on (an object's headers, a small object whole, a
     * HEAD, a listing page) may take, all its retries included; past it the store counts as
     * unavailable and the client is served from upstream. (Each attempt has 15 s on its own: a
     * hung server would cost three of them.)
     */
    readtimeout: duration()
      .prefault('10s')
      .refine((v) => v > 0, { message: 'a duration above 0 (e.g. 10s)' }),
    /**
     * ours: a bounded local copy of hot blobs (src/storage/driver/read-cache-driver.ts), off
     * unless set: a blob served whole from the bucket is copied here, verified, and served from
     * the local file afterwards. `directory` defaults to `<spooldirectory>/_read-cache`; it is
     * emptied at start, one instance per directory.
     */
    readcache: z
      .strictObject({
        size: size().refine((v) => v > 0, { message: 'a size above 0 (e.g. 2GiB)' }),
        directory: str().optional(),
      })
      .optional(),
    v4auth: ignored(),
    objectacl: ignored(),
    useragent: ignored(),
    usedualstack: ignored(),
    accelerate: ignored(),
    loglevel: ignored(),
    multipartcopychunksize: ignored(),
    multipartcopymaxconcurrency: ignored(),
    multipartcopythresholdsize: ignored(),
    checksumdisabled: ignored(),
    checksumalgorithm: ignored(),
  })
  .refine((v) => !(v.secretkey !== undefined && v.secretkeyfile !== undefined), { message: 'set either storage.s3.secretkey or storage.s3.secretkeyfile, not both', path: ['secretkeyfile'] })
  .refine((v) => v.accesskey === undefined || v.secretkey !== undefined || v.secretkeyfile !== undefined, { message: 'accesskey needs secretkey (or secretkeyfile)', path: ['secretkey'] })
  .refine((v) => v.accesskey !== undefined || (v.secretkey === undefined && v.secretkeyfile === undefined), { message: 'a secret key needs its accesskey', path: ['accesskey'] });

const storage = z
  .strictObject({
    filesystem: z
      .strictObject({
        rootdirectory: str().default('./data'),
        /**
         * ours: free space the store always keeps. A blob that would eat into it is passed
         * through to the client uncached instead of failing half-way with a full disk.
         */
        minfreespace: size().prefault('256MiB'),
        maxthreads: ignored(),
      })
      .prefault({}),
    /** distribution's switch: without it nothing is ever evicted by the scheduler. */
    delete: z.strictObject({ enabled: bool().default(false) }).prefault({}),
    /** ours: when and how the scheduler evicts (src/eviction/); TTL is proxy.ttl. */
    eviction: z
      .strictObject({
        /** node-cron expression (5 or 6 fields) for eviction passes; passes never overlap. */
        schedule: str()
          .default('*/15 * * * *')
          .refine((v) => cron.validate(v), { message: 'not a cron expression (e.g. "*/15 * * * *")' }),
        /** Size cap of the stored blobs; 0 means no cap (TTL only). */
        maxsize: size().prefault(0),
        /** Percent of maxsize past which least recently used images go... */
        highwatermark: percent().default(90),
        /** ...until the store is back under this percent of maxsize. */
        lowwatermark: percent().default(80),
        /**
         * Content written or used this recently (wall clock) is never removed, whatever its
         * TTL: it protects a manifest just stored and blobs a pull is about to fetch.
         */
        grace: duration().prefault('10m'),
        /**
         * ours: images no pass evicts, neither by TTL nor for the size cap, named as a client
         * names them: `docker.io/library/alpine:*`, `ghcr.io/acme/base:stable`, a digest
         * (`…@sha256:…`) or a whole repository; `*` within a component or tag, `**` across.
         */
        keep: z
          .array(z.string())
          .default([])
          .superRefine((patterns, ctx) => {
            patterns.forEach((pattern, index) => {
              try {
                parseKeepPattern(pattern);
              } catch (error) {
                ctx.addIssue({ code: 'custom', message: (error as Error).message, path: [index] });
              }
            });
          }),
      })
      .refine((e) => e.lowwatermark <= e.highwatermark, { message: 'lowwatermark must not exceed highwatermark', path: ['lowwatermark'] })
      .prefault({}),
    cache: z
      .strictObject({
        blobdescriptor: z.enum(['inmemory', 'redis']).default('inmemory'),
        /** How many blob descriptors the in-process cache keeps (distribution's key). */
        blobdescriptorsize: int(1).default(10_000),
      })
      .prefault({}),
    /**
     * distribution's maintenance section. readonly here means: serve what is cached, pass new
     * content through from upstream without storing it, record no access and evict nothing.
     */
    maintenance: z
      .strictObject({
        readonly: z.strictObject({ enabled: bool().default(false) }).prefault({}),
        uploadpurging: ignored(),
      })
      .prefault({}),
    /**
     * distribution's switch, with the opposite default: only with `disable: false` does a warm
     * blob GET answer 307 to a presigned URL of the bucket, which the client then fetches itself
     * (a fleet's clients often cannot reach the bucket). The filesystem store has no such URL.
     */
    redirect: z.strictObject({ disable: bool().default(true) }).prefault({}),
    tag: ignored(),
    /** Set: the store is this bucket (storage.filesystem is then not used). */
    s3: s3.optional(),
    azure: unsupportedStorage(),
    gcs: unsupportedStorage(),
    swift: unsupportedStorage(),
    oss: unsupportedStorage(),
    inmemory: unsupportedStorage(),
  })
  .prefault({});

const http = z
  .strictObject({
    addr: addr().default('127.0.0.1:5000'),
    net: z.enum(['tcp']).default('tcp'),
    host: ignored(),
    prefix: ignored(),
    /**
     * distribution's key (it signs upload state there). Here it keys the HMAC every request
     * between the instances of a fleet carries (redis.fleet.peers): set on every instance alike.
     */
    secret: str().optional(),
    /** ours: a file holding http.secret (a mounted secret), instead of http.secret. */
    secretfile: str().optional(),
    relativeurls: ignored(),
    http2: ignored(),
    /**
     * distribution's debug server: when `addr` is set, /metrics and /debug/health are served
     * there (and no longer on the main address). Without it, /metrics is on the main address.
     */
    debug: z
      .strictObject({
        addr: addr().optional(),
        prometheus: z
          .strictObject({
            // distribution's default is false; ours is true, the metrics being cheap.
            enabled: bool().default(true),
            path: str().default('/metrics'),
          })
          .prefault({}),
        pprof: ignored(),
        tls: ignored(),
      })
      .prefault({}),
    /**
     * ours: sockets listening on the one address (SO_REUSEPORT). Node accepts one connection
     * per socket per turn of its event loop; several keep a burst of new connections from
     * waiting seconds to be accepted while the mirror is busy (src/http/listen.ts).
     */
    acceptors: int(1, 64).default(16),
    /** How long SIGTERM waits for transfers in flight before exiting. */
    draintimeout: duration().prefault('60s'),
    /**
     * ours: a response that makes no progress for this long (a client that stopped reading) is
     * closed and its file released, so stalled clients cannot pin descriptors and memory.
     */
    sendtimeout: duration().prefault('5m'),
    /** ours: the request line and headers must arrive within this (a client that sends half a request is closed). */
    headertimeout: duration().prefault('20s'),
    /** Extra headers set on every response, as in distribution. */
    headers: z.record(z.string(), z.array(str()).or(str().transform((v) => [v]))).default({ 'X-Content-Type-Options': ['nosniff'] }),
    /** HTTPS, as in distribution: PEM files; clientcas makes the mirror ask for (and require) a client certificate. */
    tls: z
      .strictObject({
        certificate: str(),
        key: str(),
        clientcas: z.array(str()).optional(),
        /** The oldest TLS version accepted (distribution's values); 1.0 and 1.1 are not offered. */
        minimumtls: z.enum(['tls1.2', 'tls1.3']).default('tls1.2'),
        ciphersuites: ignored(),
        letsencrypt: ignored(),
      })
      .optional(),
    /**
     * ours: load balancers (addresses or CIDRs) whose X-Forwarded-For is believed, so the access
     * log names the client rather than the proxy. None by default: a header anyone can send is
     * worth nothing from an address not listed.
     */
    trustedproxies: z
      .array(str())
      .or(str().transform((v) => v.split(',').map((a) => a.trim()).filter(Boolean)))
      .default([])
      .refine((list) => list.every((entry) => parseProxyEntry(entry) !== undefined), { message: 'expected addresses or CIDRs (10.0.0.0/8, 127.0.0.1, fd00::/8)' }),
  })
  .prefault({});

/** Auth kinds distribution has that pullmirror does not: named, so the error says what to use. */
const unsupportedAuth = (kind: string) =>
  z.unknown().refine((v) => v === undefined, { message: `auth.${kind} is not supported by pullmirror; use auth.htpasswd or auth.token` }).optional().meta({ unsupported: true });

/** Who may pull from the mirror: distribution's auth section; htpasswd and token are supported. */
const auth = z
  .strictObject({
    htpasswd: z
      .strictObject({
        realm: str().default('pullmirror'),
        /** A file of `user:bcrypt-hash` lines (`htpasswd -B`), as distribution reads it. */
        path: str(),
        /**
         * ours: let clients without credentials pull public images too. Private upstream
         * repositories stay for authenticated clients (proxy.privaterepos).
         */
        anonymouspull: bool().default(false),
        /**
         * ours: bcrypt runs on this many worker threads, never on the event loop, so password
         * guessing cannot stall pulls; checks beyond them wait in a queue of `queue`, and when
         * that is full the client gets 429 TOOMANYREQUESTS with Retry-After.
         */
        workers: int(1, 64).default(2),
        queue: int(0, 10_000).default(64),
        /**
         * ours: after `failures` failed logins within `window` from one client address (or for
         * one user name), further logins from it (for it) are answered 429 until the window ends.
         */
        throttle: z
          .strictObject({
            failures: int(1).default(10),
            window: duration().prefault('1m'),
          })
          .prefault({}),
      })
      .optional(),
    /**
     * distribution's token authentication: clients get a Bearer challenge naming `realm` and
     * `service`, and come back with a JWT from that token server: `iss` = issuer, `aud` =
     * service, signed by a key of rootcertbundle (an x5c chain to it, or a kid) or of jwks.
     */
    token: z
      .strictObject({
        realm: str(),
        service: str(),
        issuer: str(),
        rootcertbundle: str().optional(),
        jwks: str().optional(),
        /** The JWS algorithms accepted (RS256…RS512, ES256…ES512); every one of them when absent. */
        signingalgorithms: z.array(str()).optional(),
        autoredirect: ignored(),
        autoredirectpath: ignored(),
      })
      .refine((t) => t.rootcertbundle !== undefined || t.jwks !== undefined, { message: 'auth.token needs rootcertbundle or jwks', path: ['rootcertbundle'] })
      .optional(),
    silly: unsupportedAuth('silly'),
  })
  .refine((a) => !(a.htpasswd && a.token), { message: 'one auth kind at a time: auth.htpasswd or auth.token, as distribution takes one', path: ['token'] })
  .optional();

/** A registry's name as clients say it (containerd's `ns=`): a host, with its port if any. */
const NAMESPACE = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*(:\d{1,5})?$/;
const namespace = () => str().transform((v) => v.trim().toLowerCase()).pipe(z.string().regex(NAMESPACE, 'expected a registry host, e.g. ghcr.io or registry.local:5000'));
const DOCKER_HUB_HOSTS = new Set(['registry-1.docker.io', 'index.docker.io', 'docker.io']);
/** The namespace a remote URL mirrors when none is given: docker.io for Docker Hub, else the URL's host. */
export function defaultNamespace(remoteurl: string): string {
  const url = new URL(remoteurl);
  return DOCKER_HUB_HOSTS.has(url.hostname) ? 'docker.io' : url.host;
}

/** The keys every upstream has, the default one (`proxy`) and each of `proxy.remotes`. */
const upstreamKeys = {
  username: str().optional(),
  password: str().optional(),
  /** ours: a file holding the upstream password (a mounted secret), instead of proxy.password. */
  passwordfile: str().optional(),
  ttl: duration().prefault('168h'),
  // ours: upstream timeouts, so a hung upstream gives a prompt error instead of a hang.
  timeouts: z
    .strictObject({
      connect: duration().prefault('5s'),
      headers: duration().prefault('15s'),
      bodyidle: duration().prefault('30s'),
    })
    .prefault({}),
  /** ours: how long a tag just checked upstream is served (or, upstream having none, refused) without asking again (0: always ask). */
  tagfreshness: duration().prefault('15s'),
  /** ours: resuming a blob download whose upstream connection dropped. */
  resume: z
    .strictObject({
      retries: int(0).default(3),
      backoff: duration().prefault('250ms'),
    })
    .prefault({}),
  /**
   * ours: when Docker Hub says this few pulls remain (ratelimit-remaining), tags with a
   * cached copy are served from the cache without asking upstream.
   */
  ratelimitreserve: int(0).default(10),
  /**
   * ours: repositories the upstream serves only with credentials are served only to clients
   * the mirror authenticated (protect), and a blob only through a repository that holds it.
   * checkttl: how long a repository's public/private verdict is trusted.
   */
  privaterepos: z
    .strictObject({
      protect: bool().default(true),
      checkttl: duration().prefault('10m'),
    })
    .prefault({}),
  /**
   * ours: the signature policy of this registry (src/signatures/). Each rule matches
   * repositories with the patterns of storage.eviction.keep (registry first, no tag or digest)
   * to PEM public keys (a file, or the PEM itself): a manifest of a matching repository is
   * served only when a cosign signature (`sha256-<hex>.sig`) made with one of the keys names
   * its digest and repository. `warn` serves it anyway and logs what enforce would refuse.
   * The first rule that matches a repository decides.
   */
  signatures: z
    .array(
      z.strictObject({
        repositories: z.array(z.string()).min(1).superRefine((patterns, ctx) => {
          patterns.forEach((pattern, index) => {
            const problem = signaturePatternProblem(pattern);
            if (problem) ctx.addIssue({ code: 'custom', message: problem, path: [index] });
          });
        }),
        keys: z.array(str()).min(1),
        mode: z.enum(['enforce', 'warn']).default('enforce'),
      }),
    )
    .default([]),
};

/** What is wrong with a signature rule's repository pattern (keep's grammar, without a tag or digest). */
function signaturePatternProblem(source: string): string | undefined {
  try {
    const pattern = parseKeepPattern(source);
    if (pattern.tag || pattern.digest) return `"${source}": a signature rule matches repositories: leave out the tag or digest`;
  } catch (error) {
    return (error as Error).message;
  }
  return undefined;
}

/**
 * ours: one more registry the mirror serves (ghcr.io, quay.io, registry.k8s.io, a company
 * registry), with every per-upstream key of `proxy`. Clients pick it by `?ns=<namespace>`
 * (containerd) or by the path prefix `/v2/<namespace>/…` or `/v2/<prefix>/…` (podman, docker).
 */
const remote = z
  .strictObject({
    namespace: namespace(),
    /** Default `https://<namespace>`. */
    remoteurl: z.url({ protocol: /^https?$/ }).optional(),
    /** A short path alias (`ghcr` for `/v2/ghcr/owner/image`); one name component without a dot. */
    prefix: z.string().regex(/^[a-z0-9]+((_|__|-+)[a-z0-9]+)*$/, 'expected one name component without a dot, e.g. ghcr').optional(),
    ...upstreamKeys,
  })
  .refine((r) => r.namespace.includes('.') || r.namespace.includes(':') || r.namespace === 'localhost', {
    message: 'a remote namespace must look like a registry host (a dot, a port, or localhost), so /v2/<namespace>/… can name it',
    path: ['namespace'],
  })
  .transform(({ namespace, remoteurl, ...rest }) => ({ namespace, remoteurl: remoteurl ?? `https://${namespace}`, ...rest }));

const proxy = z
  .strictObject({
    remoteurl: z.url({ protocol: /^https?$/ }).default('https://registry-1.docker.io'),
    /** ours: the registry the default remote mirrors (containerd's ns=); default docker.io for Docker Hub's URL, else the URL's host. */
    namespace: namespace().optional(),
    ...upstreamKeys,
    /**
     * ours: images refreshed through the mirror on a cron schedule (as `pullmirror warm`
     * does), so chosen tags are current and cached before anyone asks.
     */
    warm: z
      .strictObject({
        schedule: str().refine((v) => validCron(v), { message: 'not a cron expression (e.g. "0 * * * *")' }),
        images: z.array(str()).min(1),
        /** Only these platforms of an index (`linux/amd64`, `linux/arm64/v8`); every one when absent. */
        platforms: z.array(z.string().regex(/^[a-z0-9]+\/[a-z0-9_]+(\/[a-z0-9]+)?$/, 'expected os/arch[/variant]')).optional(),
        concurrency: int(1).default(4),
        /** An account of auth.htpasswd the schedule pulls with, when the mirror requires one. */
        username: str().optional(),
        password: str().optional(),
      })
      .optional(),
    /** ours: more registries, each with its own credentials and policies. */
    remotes: z.array(remote).default([]),
  })
  // namespace right after remoteurl whether given or not: config check prints the keys in this order.
  .transform(({ remoteurl, namespace, ...rest }) => ({ remoteurl, namespace: namespace ?? defaultNamespace(remoteurl), ...rest }))
  .superRefine((p, ctx) => {
    // Every name a request may be routed by: a namespace (docker.io's aliases with it) or a prefix.
    const taken = new Map<string, string>();
    const claim = (name: string, owner: string, path: (string | number)[]) => {
      const holder = taken.get(name);
      if (holder !== undefined) ctx.addIssue({ code: 'custom', message: `${JSON.stringify(name)} is already ${holder}`, path });
      else taken.set(name, owner);
    };
    const names = (ns: string) => (ns === 'docker.io' ? [...DOCKER_HUB_HOSTS] : [ns]);
    for (const name of names(p.namespace)) claim(name, 'the namespace of the default remote (proxy.namespace)', ['namespace']);
    p.remotes.forEach((r, i) => {
      for (const name of names(r.namespace)) claim(name, `the namespace of another remote`, ['remotes', i, 'namespace']);
    });
    p.remotes.forEach((r, i) => {
      if (r.prefix !== undefined) claim(r.prefix, 'a namespace or prefix of another remote', ['remotes', i, 'prefix']);
    });
    // A registry's signature rules name that registry (a pattern naming another would never match).
    const ownRules = (ns: string, rules: { repositories: string[] }[], path: (string | number)[]) =>
      rules.forEach((rule, i) =>
        rule.repositories.forEach((source, j) => {
          if (signaturePatternProblem(source)) return;
          const registry = parseKeepPattern(source).registry;
          const own = DOCKER_HUB_HOSTS.has(ns) ? 'docker.io' : ns;
          if (registry !== own) ctx.addIssue({ code: 'custom', message: `"${source}" names ${registry}, but these are the rules of ${own}`, path: [...path, i, 'repositories', j] });
        }),
      );
    ownRules(p.namespace, p.signatures, ['signatures']);
    p.remotes.forEach((r, i) => ownRules(r.namespace, r.signatures, ['remotes', i, 'signatures']));
  })
  .prefault({});

/**
 * distribution's `redis:` section (go-redis UniversalOptions): one `addr`/`addrs` entry is a
 * single server, `mastername` with `addrs` is Sentinel, several `addrs` without it a Cluster.
 * Used by `storage.cache.blobdescriptor: redis` and, whenever a Redis is configured, to
 * coordinate a fleet of instances on one store (src/fleet/).
 */
const redis = z
  .strictObject({
    /** ours: redis[s]://[user:password@]host:port[/db], overrides addr/password/db/tls (env REDIS_URL works too). */
    url: str().optional(),
    addr: str().optional(),
    addrs: z.array(str()).or(str().transform((v) => v.split(',').map((a) => a.trim()).filter(Boolean))).optional(),
    /** With addrs: the Sentinel master's name (go-redis UniversalOptions, as in distribution 3). */
    mastername: str().optional(),
    username: str().optional(),
    password: str().optional(),
    db: int(0).default(0),
    dialtimeout: duration().prefault('5s'),
    readtimeout: duration().prefault('5s'),
    writetimeout: duration().prefault('5s'),
    poolsize: int(1).optional(),
    pool: ignored(),
    tls: z
      .strictObject({
        enabled: bool().default(false),
        certificate: str().optional(),
        key: str().optional(),
        /** distribution's: CAs the server's certificate is verified with (as `ca`). */
        clientcas: z.array(str()).optional(),
        /** ours: CA bundle the server's certificate must chain to (default: the system's). */
        ca: str().optional(),
      })
      .prefault({}),
    /** ours: fleet coordination of upstream fetches through this Redis (see src/fleet/). */
    fleet: z
      .strictObject({
        enabled: bool().default(true),
        /**
         * ours: the fleet's name. Instances on one Redis with the same name are one fleet whatever
         * their stores (each instance on a disk of its own): their download leases, heartbeats and
         * the record of who holds which blob live under `pullmirror:fleet:<name>:`. Unset: under the
         * store's id, so instances on one store (a volume, a bucket) are one fleet, as before.
         */
        name: z
          .preprocess((v) => (typeof v === 'number' ? String(v) : v), z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'expected a name of letters, digits, ".", "_" and "-" (at most 63), e.g. pullmirror'))
          .optional(),
        /** How long a claim on a blob download or tag check outlives its holder's last renewal. */
        lease: duration().prefault('10s'),
        /**
         * ours: the internal listener instances stream blobs to each other through (src/fleet/peer-*.ts),
         * separate from http.addr; its requests carry an HMAC keyed by http.secret.
         */
        peers: z
          .strictObject({
            /** Where it listens (host:port); unset: no listener, no peer streaming. */
            addr: addr().optional(),
            /** The host:port other instances dial, published in the heartbeat; port 0: the port addr bound. */
            advertise: str()
              .refine((v) => parsePeerAddress(v, { anyPort: true }) !== undefined, {
                message: 'expected the host:port other instances dial (a host name or address, not 0.0.0.0, :: or an empty host)',
              })
              .optional(),
            /** How long a peer request may go without progress (connect, headers, each read of the body). */
            timeout: duration().prefault('10s'),
            /**
             * How long a follower keeps trying to reach the holder's peer listener (no live
             * heartbeat, refused, silent, 401) before it fetches the blob upstream itself: one
             * duplicate fetch (pullmirror_fleet_duplicate_fetches_total) rather than clients
             * waiting for a commit that may be minutes away. A follower whose holder's stream
             * broke waits this long for the lease to move (a dead holder's runs out within
             * redis.fleet.lease), then streams from the new holder rather than fetch upstream.
             */
            fallback: duration().prefault('3s'),
          })
          .refine((p) => p.addr === undefined || p.advertise !== undefined, { message: 'redis.fleet.peers.addr needs redis.fleet.peers.advertise (the host:port other instances dial)', path: ['advertise'] })
          .prefault({}),
      })
      .prefault({}),
  })
  .prefault({});

/** One periodic check: its answer is cached for `interval`; it fails after `threshold` failures in a row. */
const check = (enabled: boolean, interval: string, threshold: number) =>
  z
    .strictObject({
      enabled: bool().default(enabled),
      interval: duration().prefault(interval),
      threshold: int(1).default(threshold),
    })
    .prefault({});

/**
 * distribution's health section, answered at /health/ready (and /debug/health on the debug
 * address). `storagedriver` probes that the store can be read (counted) and takes a write
 * (reported); `file` entries make the instance unready while the file exists; `upstream` is
 * reported, not counted. `http` and `tcp` checks are accepted and ignored.
 */
const health = z
  .strictObject({
    // distribution's default is off; a mirror's readiness needs it, so ours is on.
    storagedriver: check(true, '5s', 1),
    file: z.array(z.strictObject({ file: str(), interval: duration().prefault('10s') })).default([]),
    http: ignored(),
    tcp: ignored(),
    /** ours: the upstream answers `GET /v2/` (any HTTP status counts as reachable). */
    upstream: z
      .strictObject({
        enabled: bool().default(true),
        interval: duration().prefault('10s'),
        threshold: int(1).default(1),
        timeout: duration().prefault('5s'),
      })
      .prefault({}),
  })
  .prefault({});

export const configSchema = z.strictObject({
  version: str().default('0.1'),
  log,
  loglevel: ignored(),
  storage,
  http,
  auth,
  proxy,
  redis,
  health,
  notifications: ignored(),
  reporting: ignored(),
  middleware: ignored(),
  validation: ignored(),
  compatibility: ignored(),
})
  // Peers authenticate each other with http.secret: a listener without one would take anyone's requests.
  .refine((c) => c.redis.fleet.peers.addr === undefined || c.http.secret !== undefined || c.http.secretfile !== undefined, {
    message: 'redis.fleet.peers.addr needs a shared secret: set http.secret (or http.secretfile, or REGISTRY_HTTP_SECRET) on every instance',
    path: ['http', 'secret'],
  })
  .refine((c) => !(c.http.secret !== undefined && c.http.secretfile !== undefined), { message: 'set either http.secret or http.secretfile, not both', path: ['http', 'secretfile'] });

export type Config = z.output<typeof configSchema>;

/** Config keys whose values are secrets: masked wherever a config is printed. */
export const SECRET_KEYS = ['storage.s3.secretkey', 'storage.s3.sessiontoken', 'proxy.password', 'proxy.remotes.*.password', 'redis.password', 'redis.url', 'http.secret', 'proxy.warm.password'];
