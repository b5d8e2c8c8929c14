/**
 * What an S3 error means to the layers above (the s3 driver's faultOf / toDriverError). RADOS
 * Gateway answers the refusals, a missing bucket and network faults for real in
 * spec/e2e/s3-driver.test.ts; what it cannot be made to answer here (503 SlowDown, 500, a
 * quota) is built as the SDK builds it: an S3ServiceException with the code as its name and the
 * HTTP status in $metadata.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { S3ServiceException } from '@aws-sdk/client-s3';
import { faultOf, toDriverError } from '../../src/storage/driver/s3-driver.ts';

const serviceError = (name: string, status: number) => new S3ServiceException({ name, $fault: status >= 500 ? 'server' : 'client', $metadata: { httpStatusCode: status }, message: 'UnknownError' });
const networkError = (code: string) => Object.assign(new Error(`connect ${code} 127.0.0.1:7480`), { code });

describe('s3 errors as storage faults', () => {
  it('maps throttling, 5xx and network faults to unavailable; refusals to denied; a missing bucket to missing-store; a quota to full', () => {
    const cases: [unknown, string][] = [
      [serviceError('SlowDown', 503), 'unavailable'],
      [serviceError('ServiceUnavailable', 503), 'unavailable'],
      [serviceError('InternalError', 500), 'unavailable'],
      [Object.assign(new Error('socket timed out'), { name: 'TimeoutError' }), 'unavailable'],
      [networkError('ECONNREFUSED'), 'unavailable'],
      [networkError('ECONNRESET'), 'unavailable'],
      [serviceError('AccessDenied', 403), 'denied'],
      [serviceError('InvalidAccessKeyId', 403), 'denied'],
      [serviceError('SignatureDoesNotMatch', 403), 'denied'],
      [serviceError('Forbidden', 403), 'denied'],
      [Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }), 'denied'],
      [serviceError('NoSuchBucket', 404), 'missing-store'],
      [serviceError('QuotaExceeded', 403), 'full'],
    ];
    for (const [error, fault] of cases) assert.equal(faultOf(error), fault, String((error as Error).name));
  });

  it('names the S3 code and status (RGW sends no message), or the network error, and the operation and key', () => {
    assert.equal(toDriverError(serviceError('SlowDown', 503), 'open', 'blobs/x').message, 's3 open blobs/x: SlowDown (HTTP 503)');
    assert.equal(toDriverError(networkError('ECONNREFUSED'), 'probe', undefined).message, 's3 probe: ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:7480');
    const driverError = toDriverError(serviceError('SlowDown', 503), 'commitFile', 'blobs/y');
    assert.equal(driverError.fault, 'unavailable');
    assert.equal(driverError.operation, 'commitFile');
    assert.equal(driverError.key, 'blobs/y');
  });
});
