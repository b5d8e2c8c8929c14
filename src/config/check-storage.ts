import { s3DriverOptions } from '../storage/driver/create-driver.ts';
import { StorageDriverError } from '../storage/driver/storage-driver.ts';
import type { Config } from './schema.ts';

/*
 * What `config check` (and a start that wants to say why the store is unusable) tells of a store
 * it cannot use: one line naming the key to fix and the server's own reason, e.g.
 * `storage.s3.accesskey: refused by the server (InvalidAccessKeyId)`. Never a secret: the
 * reasons are S3 error codes and network error codes.
 */

/** Probes the configured bucket (reachable, credentials accepted, listable); the problem line, or undefined when it works. */
export async function checkStorage(config: Config): Promise<string | undefined> {
  const options = s3DriverOptions(config);
  if (!options) return undefined;
  // Loaded only for a store on S3 (see create-driver.ts).
  const { S3Driver } = await import('../storage/driver/s3-driver.ts');
  const driver = new S3Driver(options);
  try {
    await driver.probe();
    return undefined;
  } catch (error) {
    return await storageProblem(config, error);
  } finally {
    await driver.close();
  }
}

/** The key at fault and why, for an error of the s3 driver. */
export async function storageProblem(config: Config, error: unknown): Promise<string> {
  const { errorName, errorStatus } = await import('../storage/driver/s3-driver.ts');
  const s3 = config.storage.s3;
  const cause = error instanceof StorageDriverError ? error.cause : error;
  const name = errorName(cause);
  const status = errorStatus(cause);
  if (!s3) return `storage: ${(error as Error).message}`;
  const why = `${name}${status ? `, HTTP ${status}` : ''}`;
  const secretKey = s3.secretkeyfile !== undefined ? 'storage.s3.secretkeyfile' : 'storage.s3.secretkey';
  const endpoint = s3.regionendpoint ?? `the AWS endpoint of region ${s3.region}`;
  switch (name) {
    case 'InvalidAccessKeyId':
      return `storage.s3.accesskey: refused by the server (${why})`;
    case 'SignatureDoesNotMatch':
      return `${secretKey}: refused by the server: the signature does not match (${why})`;
    case 'CredentialsProviderError':
      return `storage.s3.accesskey: not set, and the AWS SDK's default credential chain found no credentials (${name})`;
    case 'NoSuchBucket':
      return `storage.s3.bucket: no bucket ${JSON.stringify(s3.bucket)} at ${endpoint} (${why})`;
    case 'AccessDenied':
    case 'AllAccessDisabled':
      return `storage.s3.bucket: these credentials may not list bucket ${JSON.stringify(s3.bucket)} (${why})`;
    case 'PermanentRedirect':
    case 'AuthorizationHeaderMalformed':
    case 'IllegalLocationConstraintException':
      return `storage.s3.region: the bucket is not in region ${JSON.stringify(s3.region)} (${why})`;
    default:
      break;
  }
  if (status === 403) return `storage.s3.accesskey: refused by the server (${why})`;
  if (status === undefined) return `${s3.regionendpoint !== undefined ? 'storage.s3.regionendpoint' : 'storage.s3.region'}: cannot reach ${endpoint} (${name})`;
  return `storage.s3: ${endpoint} answered ${why}`;
}
