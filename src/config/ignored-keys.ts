import { schemaKeys } from './schema-paths.ts';

/*
 * distribution keys pullmirror accepts so a registry:2 config starts, but does nothing with.
 * Someone replacing registry:2 may rely on one (webhooks, a CDN redirect, a health check of a
 * dependency): each set one is named in a warning at start-up and by `config check`, with what
 * it did there. The list of keys itself comes from the schema (ignored() entries).
 */
const WHAT_IT_DID: Record<string, string> = {
  notifications: 'registry:2 sends webhook events to notifications.endpoints; pullmirror sends none',
  middleware: 'registry:2 runs registry, repository and storage middleware (CloudFront, redirects); pullmirror runs none',
  'health.http': 'registry:2 checks an HTTP endpoint for readiness; pullmirror does not (its own checks are health.upstream, health.storagedriver, health.file)',
  'health.tcp': 'registry:2 checks a TCP address for readiness; pullmirror does not',
  'http.host': 'registry:2 builds absolute URLs from it; pullmirror answers with relative ones',
  'http.prefix': 'registry:2 serves under this path prefix; pullmirror serves at /',
  'http.relativeurls': 'pullmirror always answers with relative URLs',
  'http.http2': 'pullmirror speaks HTTP/1.1',
  'http.debug.pprof': 'Go profiling has no Node counterpart here',
  'http.debug.tls': 'the debug address speaks plain HTTP',
  'http.tls.ciphersuites': "Node's default cipher suites are used",
  'auth.token.autoredirect': 'registry:2 rewrites the token realm to its own host; pullmirror sends the realm as configured',
  'auth.token.autoredirectpath': 'registry:2 rewrites the token realm to its own host; pullmirror sends the realm as configured',
  'http.tls.letsencrypt': 'pullmirror does not fetch certificates; give http.tls.certificate and key',
  'storage.maintenance.uploadpurging': 'a mirror takes no uploads',
  'storage.filesystem.maxthreads': "Node's file I/O threads are libuv's (UV_THREADPOOL_SIZE)",
  'storage.tag': 'tag concurrency of registry:2 storage',
  reporting: 'registry:2 reports errors to Bugsnag or New Relic; pullmirror does not',
  validation: 'manifest validation of pushes; a mirror takes no pushes',
  compatibility: 'schema1 signing; pullmirror serves manifests as upstream sends them',
  loglevel: 'the old spelling of log.level: set log.level instead',
  'log.hooks': 'registry:2 mails log events; pullmirror does not',
  'redis.pool': 'one pipelined connection is used',
  'storage.s3.v4auth': 'requests are always signed with Signature Version 4',
  'storage.s3.objectacl': "objects get the bucket's default ACL",
  'storage.s3.useragent': "the AWS SDK's user agent is sent",
  'storage.s3.usedualstack': 'the endpoint is the region\'s, or regionendpoint',
  'storage.s3.accelerate': 'the endpoint is the region\'s, or regionendpoint',
  'storage.s3.loglevel': 'S3 failures are logged by pullmirror as storage errors',
  'storage.s3.multipartcopychunksize': 'pullmirror never copies objects within the bucket',
  'storage.s3.multipartcopymaxconcurrency': 'pullmirror never copies objects within the bucket',
  'storage.s3.multipartcopythresholdsize': 'pullmirror never copies objects within the bucket',
  'storage.s3.checksumdisabled': 'checksums are sent only where S3 requires them (blobs are verified by digest before upload)',
  'storage.s3.checksumalgorithm': 'checksums are sent only where S3 requires them (blobs are verified by digest before upload)',
};

/** One warning per ignored key that `raw` (the file merged with REGISTRY_* values) sets. */
export function ignoredKeyWarnings(raw: Record<string, unknown>): string[] {
  const warnings: string[] = [];
  for (const key of schemaKeys()) {
    if (!key.ignored) continue;
    const value = key.path.split('.').reduce<unknown>((node, part) => (node !== null && typeof node === 'object' ? (node as Record<string, unknown>)[part] : undefined), raw);
    if (value === undefined || value === null) continue;
    const what = WHAT_IT_DID[key.path];
    warnings.push(`${key.path} is ignored by pullmirror${what ? ` (${what})` : ''}`);
  }
  return warnings;
}
