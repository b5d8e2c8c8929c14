import { join } from 'node:path';
import type { Config } from '../../config/schema.ts';
import type { Logger } from '../../logging/logger.ts';
import { BreakerDriver } from './breaker-driver.ts';
import { FilesystemDriver } from './filesystem-driver.ts';
import { MeteredDriver } from './metered-driver.ts';
import type { S3DriverOptions } from './s3-driver.ts';
import type { StorageDriver } from './storage-driver.ts';

/*
 * The one place a config becomes a storage driver: `storage.s3` set → the bucket, else the
 * filesystem store at storage.filesystem.rootdirectory (the bucket behind a BreakerDriver); either wrapped by the MeteredDriver, so
 * every driver's operations are counted alike.
 *
 * The s3 driver (and the AWS SDK under it) is imported only for a store on S3, and the build
 * puts it in chunks of its own (esbuild --splitting): the SDK's code and its evaluation cost a
 * filesystem mirror ~15 MB of RSS for nothing (idle RSS 108 MB with it, 93 MB without).
 */

/** What the process decides, not the config: the filesystem driver's temp directory (TempArea.dir, on the store's file system). */
export interface DriverContext {
  tempDir: string;
  /**
   * The serving process's own: storage.s3.readcache in front of the bucket. A CLI (gc, stats)
   * leaves it out, so it never empties the cache directory of a mirror that is running.
   */
  readCache?: { logger?: Logger };
}

export async function createStorageDriver(config: Config, context: DriverContext): Promise<StorageDriver> {
  const s3 = s3DriverOptions(config);
  if (!s3) return new MeteredDriver(new FilesystemDriver({ root: config.storage.filesystem.rootdirectory, tempDir: context.tempDir }));
  const { S3Driver } = await import('./s3-driver.ts');
  // A bucket is behind a network: once it failed, the requests clients wait on fail at once for
  // a moment (BreakerDriver) instead of each paying its deadline.
  const bucket = new BreakerDriver(new S3Driver(s3));
  // The read cache outside the breaker: a cached blob is served while the bucket is failing.
  const readcache = config.storage.s3?.readcache;
  if (!readcache || !context.readCache) return new MeteredDriver(bucket);
  const { ReadCacheDriver } = await import('./read-cache-driver.ts');
  const directory = readcache.directory ?? join(config.storage.s3!.spooldirectory, '_read-cache');
  try {
    return new MeteredDriver(await ReadCacheDriver.create(bucket, { directory, maxBytes: readcache.size, logger: context.readCache.logger }));
  } catch (error) {
    // A cache is an optimisation: a directory that cannot be used leaves the mirror serving from the bucket.
    context.readCache.logger?.error(`storage.s3.readcache.directory: cannot use ${directory} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}); serving without the read cache`);
    return new MeteredDriver(bucket);
  }
}

/** The S3 driver's options from `storage.s3` (undefined when the store is not on S3). */
export function s3DriverOptions(config: Config): S3DriverOptions | undefined {
  const s3 = config.storage.s3;
  if (!s3) return undefined;
  return {
    bucket: s3.bucket,
    region: s3.region,
    endpoint: s3.regionendpoint,
    forcePathStyle: s3.forcepathstyle,
    // Without accesskey: the SDK's default credential chain.
    credentials: s3.accesskey !== undefined && s3.secretkey !== undefined ? { accessKeyId: s3.accesskey, secretAccessKey: s3.secretkey, sessionToken: s3.sessiontoken } : undefined,
    rootDirectory: s3.rootdirectory,
    secure: s3.secure,
    skipVerify: s3.skipverify,
    partSize: s3.chunksize,
    storageClass: s3.storageclass,
    encrypt: s3.encrypt,
    keyId: s3.keyid,
    readTimeoutMs: s3.readtimeout,
    // A response body streams from S3 to a client: no byte moving for as long as a client may
    // stall (http.sendtimeout) before the connection counts as hung.
    idleTimeoutMs: config.http.sendtimeout,
  };
}
