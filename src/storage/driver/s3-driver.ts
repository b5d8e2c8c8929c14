import { createReadStream } from 'node:fs';
import { rm, stat as statFile } from 'node:fs/promises';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type StorageClass,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { s3Requests } from '../../metrics/metrics.ts';
import type { ByteRange } from '../readable-blob-store.ts';
import { StagedMultipartUpload, type MultipartRequests } from './s3-staged-upload.ts';
import {
  checkKey,
  checkPrefix,
  StorageDriverError,
  type ListedObject,
  type ObjectInfo,
  type OpenedObject,
  type StagedFile,
  type StorageDriver,
  type StorageFault,
  type StorageUsage,
} from './storage-driver.ts';

/*
 * The storage driver on S3 (AWS, or anything that speaks it: Ceph's RADOS Gateway in CI, MinIO),
 * with the AWS SDK v3. Keys live under `rootDirectory` in one bucket.
 *
 * What it costs in requests, since a warm pull should cost about one GET per blob:
 * - open: one GetObject of the whole object, its ContentLength the size (no HEAD); `send` pipes
 *   that body when the whole object is asked for (a pull), else drops it and GETs the Range
 *   (a resumed download: two requests). A missing object answers undefined at open, so the layer
 *   above can fetch it from upstream instead of failing mid-response.
 * - commitFile: a single PutObject up to `partSize`, else a multipart upload whose parts are
 *   streamed from the local file (CreateMultipartUpload, one UploadPart per `partSize`,
 *   CompleteMultipartUpload). The object is visible only once Complete succeeded; on any error
 *   or on the AbortSignal the upload is aborted before commitFile returns.
 *   Why not lib-storage's Upload: it reads each part of a stream into a Buffer (partSize ×
 *   (queueSize + 1) per commit: 16 fills of 10 MiB parts is ~300 MB against the < 150 MB RSS
 *   target), SigV4 then hashes each Buffer on the event loop (~25 ms per 10 MiB over plain
 *   HTTP), and its abort() neither cancels the parts in flight nor waits for the
 *   AbortMultipartUpload (nor stops a single-part PutObject already sent). A part read from a
 *   file range holds one 64 KiB stream buffer and is sent UNSIGNED-PAYLOAD.
 * - stageFile: the same multipart upload begun while a fill downloads, each part sent once the
 *   spool holds it (s3-staged-upload.ts); only CompleteMultipartUpload waits for the digest, so
 *   a verified blob is in the bucket about one part's upload after its last byte, not a whole
 *   upload after (a follower on another instance waits for that commit). A digest that does not
 *   match, or a download that fails, aborts the upload: nothing unverified is ever visible.
 * - delete: HeadObject, then DeleteObject (S3 answers 204 for a missing key, and the layers above
 *   count what they freed): two requests, on eviction only.
 * - probe: ListObjectsV2 of one key under the root. It needs the permission the driver needs
 *   anyway (listing), and unlike HeadBucket (a HEAD: no body) its error names the cause
 *   (InvalidAccessKeyId, SignatureDoesNotMatch, NoSuchBucket), which `config check` reports.
 *
 * Every request has a deadline: `connectTimeoutMs` to connect, `requestTimeoutMs` to the
 * response headers (uploads: `uploadTimeoutMs`), and `idleTimeoutMs` without a byte moving on
 * the connection (while a body streams to a client that stopped reading, too: it should match
 * http.sendtimeout). The SDK retries what is retryable (5xx, SlowDown, network) up to
 * `maxAttempts` in all, with its backoff; streamed uploads are retried here, each attempt with a
 * fresh stream. A read (GetObject to its headers, or whole for a small object; HeadObject; a
 * listing page) has besides `readTimeoutMs` for all its attempts: a client waits on it, and a
 * hung server would otherwise hold it for `maxAttempts` × `requestTimeoutMs` before it is served
 * from upstream. Errors become StorageDriverError faults; a message names the S3 error and status,
 * never a credential.
 */

export interface S3DriverOptions {
  bucket: string;
  region: string;
  /** regionendpoint: a URL (http://127.0.0.1:7480), or a host to which `secure` picks the scheme. */
  endpoint?: string;
  forcePathStyle?: boolean;
  /** Without them, the SDK's default chain (environment, shared config, web identity, instance metadata). */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** Keys live under this prefix ('' or e.g. 'registry'; slashes at either end are dropped). */
  rootDirectory?: string;
  /** For an endpoint without a scheme: https (default) or http. */
  secure?: boolean;
  /** Accept any TLS certificate from the endpoint (distribution's skipverify). */
  skipVerify?: boolean;
  /** Bytes per part of a multipart upload (≥ 5 MiB); files up to this size go in one PutObject. */
  partSize?: number;
  /** Parts of one commit uploaded at once (each streams from the file: no buffer per part). */
  partConcurrency?: number;
  storageClass?: string;
  /** Server-side encryption: KMS with `keyId`, else AES256. */
  encrypt?: boolean;
  keyId?: string;
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  uploadTimeoutMs?: number;
  /** A read's deadline, all its attempts together (storage.s3.readtimeout). */
  readTimeoutMs?: number;
  idleTimeoutMs?: number;
  maxAttempts?: number;
  /** Connections kept per client. */
  maxSockets?: number;
}

const MIB = 1024 * 1024;
const MIN_PART_SIZE = 5 * MIB;
const MAX_PARTS = 10_000;
const LIST_PAGE = 1000;
/** Sweeps of an upload a failed commit could not abort: about 2 minutes of tries, then gc's. */
const SWEEP_TRIES = 8;
/**
 * How long a redirect URL stays valid. A client follows a 307 at once, so it needs little; a
 * URL is a bearer pass to the blob, so it gets little (distribution's are 20 minutes). Five
 * minutes leave room for a clock of the bucket's that runs ahead of ours.
 */
const REDIRECT_EXPIRY_S = 5 * 60;

/** Any S3 command (the SDK types each one apart; `send` takes them all). */
type Command = { readonly input: object };

export class S3Driver implements StorageDriver {
  readonly kind = 's3';
  readonly bucket: string;
  private readonly root: string;
  private readonly client: S3Client;
  private readonly partSize: number;
  private readonly partConcurrency: number;
  private readonly maxAttempts: number;
  private readonly requestTimeoutMs: number;
  private readonly uploadTimeoutMs: number;
  private readonly readTimeoutMs: number;
  private readonly agents: HttpAgent[];
  /** Pending sweeps of uploads a failed commit could not abort (sweepLater). */
  private readonly sweeps = new Set<NodeJS.Timeout>();
  private closed = false;
  private readonly writeParams: { StorageClass?: StorageClass; ServerSideEncryption?: 'AES256' | 'aws:kms'; SSEKMSKeyId?: string };

  constructor(options: S3DriverOptions) {
    if (!options.bucket) throw new TypeError('S3Driver: bucket is required');
    this.bucket = options.bucket;
    this.root = normalizeRoot(options.rootDirectory ?? '');
    this.partSize = options.partSize ?? 10 * MIB;
    if (!Number.isInteger(this.partSize) || this.partSize < MIN_PART_SIZE) throw new TypeError(`S3Driver: partSize must be at least ${MIN_PART_SIZE} bytes (S3's smallest part)`);
    this.partConcurrency = Math.max(1, options.partConcurrency ?? 2);
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 3);
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15_000;
    this.uploadTimeoutMs = options.uploadTimeoutMs ?? 120_000;
    this.readTimeoutMs = options.readTimeoutMs ?? 10_000;
    const storageClass = options.storageClass && options.storageClass.toUpperCase() !== 'NONE' ? (options.storageClass as StorageClass) : undefined;
    this.writeParams = {
      ...(storageClass ? { StorageClass: storageClass } : {}),
      ...(options.encrypt ? { ServerSideEncryption: options.keyId ? 'aws:kms' : 'AES256' } : {}),
      ...(options.encrypt && options.keyId ? { SSEKMSKeyId: options.keyId } : {}),
    };
    const endpoint = options.endpoint === undefined || options.endpoint === '' ? undefined : /^https?:\/\//i.test(options.endpoint) ? options.endpoint : `${options.secure === false ? 'http' : 'https'}://${options.endpoint}`;
    const httpAgent = new HttpAgent({ keepAlive: true, maxSockets: options.maxSockets ?? 64 });
    const httpsAgent = new HttpsAgent({ keepAlive: true, maxSockets: options.maxSockets ?? 64, rejectUnauthorized: options.skipVerify !== true });
    this.agents = [httpAgent, httpsAgent];
    const client = new S3Client({
      region: options.region,
      endpoint,
      forcePathStyle: options.forcePathStyle ?? false,
      credentials: options.credentials,
      maxAttempts: this.maxAttempts,
      // Failures reach the caller as StorageDriverErrors; without a logger of its own the SDK
      // writes some (a streamed upload it will not retry) to the console.
      logger: QUIET,
      // With the SDK's default a streamed PutObject goes aws-chunked with a trailing checksum,
      // which RGW (and other S3 servers) refuse with 411 MissingContentLength.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      requestHandler: {
        connectionTimeout: options.connectTimeoutMs ?? 5_000,
        requestTimeout: this.requestTimeoutMs,
        throwOnRequestTimeout: true,
        socketTimeout: options.idleTimeoutMs ?? 300_000,
        httpAgent,
        httpsAgent,
      },
    });
    // Counted per HTTP request (the deserialize step runs once per attempt, inside the retries).
    client.middlewareStack.add(
      (next, context) => (args) => {
        s3Requests.cell(context.commandName?.replace(/Command$/, '') ?? 'unknown').value++;
        return next(args);
      },
      { step: 'deserialize', name: 'pullmirrorRequestCount' },
    );
    this.client = client;
  }

  /** The object key of a driver key: under the root directory. */
  private objectKey(key: string): string {
    return this.root === '' ? key : `${this.root}/${key}`;
  }

  /** The listing prefix of a driver prefix: '' (the whole root) or 'a/b/' under the root. */
  private listPrefix(prefix: string): string {
    const trimmed = prefix.replace(/\/+$/, '');
    const full = trimmed === '' ? this.root : this.objectKey(trimmed);
    return full === '' ? '' : `${full}/`;
  }

  private async send<T>(operation: string, key: string | undefined, command: Command, options: { signal?: AbortSignal; timeoutMs?: number } = {}): Promise<T> {
    try {
      return (await this.client.send(command as never, { abortSignal: options.signal, requestTimeout: options.timeoutMs })) as T;
    } catch (error) {
      throw toDriverError(error, operation, key);
    }
  }

  /**
   * A read a client waits on: `command` and then `consume` of its answer (a small object's body)
   * within readTimeoutMs, all the SDK's attempts included. Past it the request is aborted, a body
   * that came meanwhile is let go, and the read fails 'unavailable'. Errors of the SDK are passed
   * on as they are (the callers tell a missing key from a failure).
   */
  private async read<T, R = T>(operation: string, key: string | undefined, command: Command, consume?: (answer: T) => Promise<R>): Promise<R> {
    const controller = new AbortController();
    let answer: T | undefined;
    const letGo = () => (answer as { Body?: Readable } | undefined)?.Body?.destroy();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        controller.abort();
        letGo();
        reject(new StorageDriverError('unavailable', operation, `s3 ${operation}${key ? ` ${key}` : ''}: no answer within ${this.readTimeoutMs} ms (storage.s3.readtimeout)`, { key }));
      }, this.readTimeoutMs);
    });
    const work = (async () => {
      answer = (await this.client.send(command as never, { abortSignal: controller.signal })) as T;
      // Answered just as the deadline passed: nobody takes this body.
      if (controller.signal.aborted) {
        letGo();
        throw controller.signal.reason;
      }
      return consume ? await consume(answer) : (answer as unknown as R);
    })();
    work.catch(() => {});
    try {
      return await Promise.race([work, deadline]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** A read (above) whose every failure is a StorageDriverError. */
  private async readOrFail<T>(operation: string, key: string | undefined, command: Command): Promise<T> {
    try {
      return await this.read<T>(operation, key, command);
    } catch (error) {
      throw toDriverError(error, operation, key);
    }
  }

  async getContent(key: string, maxBytes = Number.MAX_SAFE_INTEGER): Promise<Buffer | undefined> {
    checkKey(key, 'getContent');
    // The body read within the deadline too: a small object is read whole before anyone uses it.
    return this.getObject('getContent', key, undefined, async (stream, size) => {
      if (size > maxBytes) {
        stream.destroy();
        throw new StorageDriverError('too-large', 'getContent', `s3 getContent ${key}: ${size} bytes, more than ${maxBytes}`, { key });
      }
      const chunks: Buffer[] = [];
      let total = 0;
      try {
        for await (const chunk of stream) {
          total += (chunk as Buffer).length;
          if (total > maxBytes) throw new StorageDriverError('too-large', 'getContent', `s3 getContent ${key}: more than ${maxBytes} bytes`, { key });
          chunks.push(chunk as Buffer);
        }
      } catch (error) {
        stream.destroy();
        throw error;
      }
      return Buffer.concat(chunks, total);
    });
  }

  /** GetObject (whole, or a Range) to its headers: the body and the object's size; undefined when there is none. */
  private getBody(operation: string, key: string, range?: ByteRange): Promise<{ stream: Readable; size: number } | undefined> {
    return this.getObject(operation, key, range, async (stream, size) => ({ stream, size }));
  }

  /** GetObject within the read deadline, its answer handed to `consume`; undefined when there is none. */
  private async getObject<R>(operation: string, key: string, range: ByteRange | undefined, consume: (stream: Readable, size: number) => Promise<R>): Promise<R | undefined> {
    type Answer = { Body?: unknown; ContentRange?: string; ContentLength?: number };
    try {
      return await this.read<Answer, R>(operation, key, new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }), (out) => {
        const size = range ? Number(/\/(\d+)$/.exec(out.ContentRange ?? '')?.[1] ?? NaN) : Number(out.ContentLength);
        return consume(out.Body as Readable, size);
      });
    } catch (error) {
      if (errorName(error) === 'NoSuchKey') return undefined;
      throw toDriverError(error, operation, key);
    }
  }

  async putContent(key: string, content: Uint8Array | string): Promise<void> {
    checkKey(key, 'putContent');
    const body = typeof content === 'string' ? Buffer.from(content) : content;
    await this.send('putContent', key, new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Body: body, ContentLength: body.byteLength, ...this.writeParams }));
  }

  /** A PUT with `If-None-Match: *`: S3 (and RGW) answer 412 when the key holds an object. */
  async putContentIfAbsent(key: string, content: Uint8Array | string): Promise<boolean> {
    checkKey(key, 'putContentIfAbsent');
    const body = typeof content === 'string' ? Buffer.from(content) : content;
    try {
      await this.send('putContentIfAbsent', key, new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Body: body, ContentLength: body.byteLength, IfNoneMatch: '*', ...this.writeParams }));
      return true;
    } catch (error) {
      const cause = (error as StorageDriverError).cause;
      if (errorStatus(cause) === 412 || errorName(cause) === 'PreconditionFailed') return false;
      throw error;
    }
  }

  async commitFile(localPath: string, key: string, signal?: AbortSignal): Promise<void> {
    try {
      checkKey(key, 'commitFile');
      signal?.throwIfAborted();
      const { size } = await statFile(localPath);
      if (size <= this.partSize) await this.uploadWithRetries('commitFile', key, signal, () => new PutObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key), Body: fileRange(localPath, 0, size), ContentLength: size, ...this.writeParams }));
      else {
        const upload = this.multipartUpload(localPath, key, size);
        upload.grown(size);
        await upload.commit(signal);
      }
    } catch (error) {
      throw commitError(error, key, signal);
    } finally {
      await rm(localPath, { force: true });
    }
  }

  /**
   * Uploads the fill's spool while it is written: past one part, a multipart upload whose parts
   * go up as the file holds them (StagedMultipartUpload), completed by commit once the digest
   * verified; undefined for a file that fits one PutObject (commitFile then).
   */
  stageFile(localPath: string, key: string, expectedSize: number): StagedFile | undefined {
    checkKey(key, 'stageFile');
    if (expectedSize <= this.partSize) return undefined;
    const upload = this.multipartUpload(localPath, key, expectedSize);
    let cancelled = false;
    return {
      grown: (bytes) => upload.grown(bytes),
      commit: async (signal) => {
        try {
          if (cancelled) throw new StorageDriverError('unavailable', 'commitFile', `s3 commitFile ${key}: the staged upload was cancelled`, { key });
          // Staged for the size announced; a file that ended otherwise goes up whole (its writer
          // checks the size against the same announcement first: this is a safeguard).
          const { size } = await statFile(localPath);
          if (size !== expectedSize) {
            await upload.cancel();
            return await this.commitFile(localPath, key, signal);
          }
          await upload.commit(signal);
        } catch (error) {
          throw commitError(error, key, signal);
        } finally {
          await rm(localPath, { force: true });
        }
      },
      cancel: () => {
        cancelled = true;
        return upload.cancel();
      },
    };
  }

  /** A multipart upload of `localPath` (`size` bytes) to `key`, its parts sent as the file grows. */
  private multipartUpload(localPath: string, key: string, size: number): StagedMultipartUpload {
    const partSize = Math.max(this.partSize, Math.ceil(size / MAX_PARTS));
    const objectKey = this.objectKey(key);
    let startedAt = Date.now();
    const requests: MultipartRequests = {
      create: async (signal) => {
        startedAt = Date.now();
        let created: { UploadId?: string; $metadata?: { attempts?: number } };
        try {
          created = await this.send('commitFile', key, new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, ...this.writeParams }), { signal });
        } catch (error) {
          // The server may have begun uploads whose ids never reached us (a hung server answers a
          // timed-out attempt, and the SDK's retry, once it resumes; an attempt cancelled
          // locally): no Abort can name them. The same when a retry succeeded (below).
          this.sweepLater(objectKey, startedAt);
          throw error;
        }
        // Retried by the SDK: the attempts before the one answered may have begun uploads too.
        if ((created.$metadata?.attempts ?? 1) > 1) this.sweepLater(objectKey, startedAt);
        return created.UploadId!;
      },
      uploadPart: async (uploadId, partNumber, start, length, signal) => {
        const out = await this.uploadWithRetries<{ ETag?: string }>('commitFile', key, signal, () =>
          new UploadPartCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId, PartNumber: partNumber, Body: fileRange(localPath, start, length), ContentLength: length }),
        );
        return out.ETag;
      },
      complete: async (uploadId, parts, signal) => {
        await this.send('commitFile', key, new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId, MultipartUpload: { Parts: parts } }), { signal });
      },
      abort: async (uploadId) => {
        const aborted = await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: uploadId })).then(
          () => true,
          (abortError: unknown) => errorName(abortError) === 'NoSuchUpload',
        );
        if (!aborted) this.sweepLater(objectKey, startedAt);
      },
    };
    return new StagedMultipartUpload(requests, size, partSize, this.partConcurrency);
  }

  /**
   * Aborts, once the server answers again, the uploads of `objectKey` this driver began at or
   * after `since` and did not complete or could not abort (the server hung or unreachable at the time): so a fault
   * that clears leaves no upload behind without waiting for gc. Tried with a growing pause, up
   * to SWEEP_TRIES times; what is still left then is gc's (cleanup). An upload of the same key
   * another writer began meanwhile may be aborted too: its commit then fails, and its blob
   * passes through (nothing partial is ever visible either way).
   */
  private sweepLater(objectKey: string, since: number): void {
    let tries = 0;
    const sweep = async () => {
      this.sweeps.delete(timer);
      try {
        const page = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: objectKey }));
        for (const upload of page.Uploads ?? []) {
          // The server's clock and ours: a second of slack.
          if (upload.Key !== objectKey || !upload.UploadId || (upload.Initiated?.getTime() ?? 0) < since - 1_000) continue;
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: objectKey, UploadId: upload.UploadId })).catch((error: unknown) => {
            if (errorName(error) !== 'NoSuchUpload') throw error;
          });
        }
      } catch {
        if (++tries < SWEEP_TRIES && !this.closed) schedule();
      }
    };
    let timer: NodeJS.Timeout;
    const schedule = () => {
      timer = setTimeout(() => void sweep(), Math.min(30_000, 1_000 * 2 ** tries));
      timer.unref();
      this.sweeps.add(timer);
    };
    schedule();
  }

  /**
   * A request whose body streams from the file: the SDK does not retry those (a consumed stream
   * cannot be sent again), so each attempt here builds the command (and its stream) anew. Retried like the SDK retries: only
   * what may pass (the store unavailable), with a growing pause, never once cancelled.
   */
  private async uploadWithRetries<T>(operation: string, key: string, signal: AbortSignal | undefined, command: () => Command): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const built = command();
      try {
        return await this.send<T>(operation, key, built, { signal, timeoutMs: this.uploadTimeoutMs });
      } catch (error) {
        if (signal?.aborted || attempt >= this.maxAttempts || (error as StorageDriverError).fault !== 'unavailable') throw error;
        await sleep(Math.min(2_000, 100 * 2 ** attempt * (0.5 + Math.random())), undefined, { signal });
      } finally {
        const body = (built as { input: { Body?: unknown } }).input.Body;
        if (body && typeof (body as Readable).destroy === 'function') (body as Readable).destroy();
      }
    }
  }

  async stat(key: string): Promise<ObjectInfo | undefined> {
    checkKey(key, 'stat');
    try {
      const out = await this.read<{ ContentLength?: number; LastModified?: Date }>('stat', key, new HeadObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
      return { size: Number(out.ContentLength ?? 0), modifiedMs: out.LastModified?.getTime() ?? 0 };
    } catch (error) {
      // A HEAD has no body: a missing key (and a missing bucket: probe tells them apart) is NotFound.
      if (errorStatus(error) === 404) return undefined;
      throw toDriverError(error, 'stat', key);
    }
  }

  async open(key: string, _knownSize?: number): Promise<OpenedObject | undefined> {
    checkKey(key, 'open');
    // One GET whatever knownSize says: its ContentLength is the size, and a missing object is
    // known here rather than mid-response.
    const body = await this.getBody('open', key);
    if (!body) return undefined;
    let held: Readable | undefined = body.stream;
    const { size } = body;
    return {
      size,
      send: async (res: Writable, range: ByteRange) => {
        let stream = held;
        held = undefined;
        if (size === 0 || range.end < range.start) {
          stream?.destroy();
          res.end();
          return;
        }
        if (!stream || range.start !== 0 || range.end !== size - 1) {
          stream?.destroy();
          const ranged = await this.getBody('open', key, range);
          if (!ranged) throw new StorageDriverError('unavailable', 'open', `s3 open ${key}: the object went away`, { key });
          stream = ranged.stream;
        }
        // A failure of the body (S3 hung past the idle timeout, a reset) is the store's: a
        // StorageDriverError. One of the response (the client left) is passed on as it is.
        let storeError: unknown;
        stream.once('error', (error) => {
          // The response still open when the body failed: the body failed first.
          if (!res.destroyed) storeError ??= error;
        });
        try {
          await pipeline(stream, res);
        } catch (error) {
          stream.destroy();
          if (storeError !== undefined) throw toDriverError(storeError, 'send', key);
          throw error;
        }
      },
      release: () => {
        held?.destroy();
        held = undefined;
      },
    };
  }

  async *children(prefix: string): AsyncIterable<string> {
    checkPrefix(prefix, 'children');
    const listPrefix = this.listPrefix(prefix);
    for await (const page of this.pages('children', listPrefix, '/')) {
      for (const common of page.CommonPrefixes ?? []) {
        const name = common.Prefix?.slice(listPrefix.length, -1);
        if (name && isComponent(name)) yield name;
      }
      for (const object of page.Contents ?? []) {
        const name = object.Key?.slice(listPrefix.length);
        if (name && isComponent(name)) yield name;
      }
    }
  }

  async *walk(prefix: string): AsyncIterable<ListedObject> {
    checkPrefix(prefix, 'walk');
    const listPrefix = this.listPrefix(prefix);
    const rootPrefix = this.root === '' ? '' : `${this.root}/`;
    for await (const page of this.pages('walk', listPrefix, undefined)) {
      for (const object of page.Contents ?? []) {
        const key = object.Key?.slice(rootPrefix.length);
        // Only keys the driver could have written: nothing in a bucket steers an operation unchecked.
        if (!key || !isKey(key)) continue;
        yield { key, size: Number(object.Size ?? 0), modifiedMs: object.LastModified?.getTime() ?? 0 };
      }
    }
  }

  /** ListObjectsV2 pages (1,000 keys each) under `listPrefix`, following the continuation token. */
  private async *pages(operation: string, listPrefix: string, delimiter: string | undefined) {
    let token: string | undefined;
    do {
      const page = await this.readOrFail<{ Contents?: { Key?: string; Size?: number; LastModified?: Date }[]; CommonPrefixes?: { Prefix?: string }[]; IsTruncated?: boolean; NextContinuationToken?: string }>(
        operation,
        listPrefix,
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: listPrefix || undefined, Delimiter: delimiter, ContinuationToken: token, MaxKeys: LIST_PAGE }),
      );
      yield page;
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * A presigned GET of the object, valid `REDIRECT_EXPIRY_S`: for storage.redirect, off by
   * default (a fleet's clients often cannot reach the bucket). Signed locally: no request.
   */
  async redirectURL(key: string): Promise<string | undefined> {
    checkKey(key, 'redirectURL');
    try {
      return await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }), { expiresIn: REDIRECT_EXPIRY_S });
    } catch (error) {
      throw toDriverError(error, 'redirectURL', key);
    }
  }

  async delete(key: string): Promise<boolean> {
    checkKey(key, 'delete');
    if (!(await this.stat(key))) return false;
    await this.send('delete', key, new DeleteObjectCommand({ Bucket: this.bucket, Key: this.objectKey(key) }));
    return true;
  }

  async probe(): Promise<void> {
    await this.readOrFail('probe', undefined, new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.listPrefix('') || undefined, MaxKeys: 1 }));
  }

  async usage(): Promise<StorageUsage> {
    return {};
  }

  async cleanup(olderThanMs: number): Promise<number> {
    const prefix = this.listPrefix('');
    const before = Date.now() - olderThanMs;
    let removed = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    for (;;) {
      const page = await this.send<{ Uploads?: { Key?: string; UploadId?: string; Initiated?: Date }[]; IsTruncated?: boolean; NextKeyMarker?: string; NextUploadIdMarker?: string }>(
        'cleanup',
        undefined,
        new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix || undefined, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }),
      );
      for (const upload of page.Uploads ?? []) {
        if (!upload.Key || !upload.UploadId || (upload.Initiated?.getTime() ?? 0) > before) continue;
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: upload.Key, UploadId: upload.UploadId }));
          removed++;
        } catch (error) {
          // Completed or aborted by its writer meanwhile.
          if (errorName(error) !== 'NoSuchUpload') throw toDriverError(error, 'cleanup', undefined);
        }
      }
      if (!page.IsTruncated) return removed;
      keyMarker = page.NextKeyMarker;
      uploadIdMarker = page.NextUploadIdMarker;
    }
  }

  /** Connections busy with a request or a response body now (idle kept-alive ones not counted): what a leak would grow. */
  socketsInUse(): number {
    let count = 0;
    for (const agent of this.agents) for (const sockets of Object.values(agent.sockets)) count += sockets?.length ?? 0;
    return count;
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const timer of this.sweeps) clearTimeout(timer);
    this.client.destroy();
    for (const agent of this.agents) agent.destroy();
  }
}

const ignore = () => {};
const QUIET = { trace: ignore, debug: ignore, info: ignore, warn: ignore, error: ignore };

/** Bytes [start, start + length) of a file, for a request body. */
function fileRange(localPath: string, start: number, length: number): Readable | Buffer {
  return length === 0 ? Buffer.alloc(0) : createReadStream(localPath, { start, end: start + length - 1 });
}

/** `/registry/v2/` → `registry/v2`; the root's components must be ones checkKey takes. */
function normalizeRoot(root: string): string {
  const trimmed = root.split('/').filter((part) => part !== '').join('/');
  if (trimmed !== '') checkKey(trimmed, 'rootdirectory');
  return trimmed;
}

function isKey(key: string): boolean {
  try {
    checkKey(key, 'walk');
    return true;
  } catch {
    return false;
  }
}

const isComponent = (name: string) => !name.includes('/') && isKey(name);

/** The S3 error code (NoSuchKey, SlowDown, …) or the SDK's error name (TimeoutError, AbortError). */
export function errorName(error: unknown): string {
  const e = error as { name?: string; Code?: string; code?: string };
  // Node's network errors carry their errno in `code` (ECONNREFUSED) and a bare "Error" name.
  if ((e?.name === 'Error' || e?.name === undefined) && typeof e?.code === 'string') return e.code;
  return e?.Code ?? e?.name ?? 'Error';
}

export function errorStatus(error: unknown): number | undefined {
  return (error as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
}

const DENIED = new Set(['AccessDenied', 'InvalidAccessKeyId', 'SignatureDoesNotMatch', 'Forbidden', 'AllAccessDisabled', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired', 'AccountProblem', 'CredentialsProviderError', 'InvalidClientTokenId']);
const FULL = new Set(['QuotaExceeded', 'TooManyBuckets']);

/** What an S3 error means to the layers above. */
export function faultOf(error: unknown): StorageFault {
  const name = errorName(error);
  if (FULL.has(name)) return 'full';
  if (name === 'NoSuchBucket') return 'missing-store';
  if (DENIED.has(name) || errorStatus(error) === 403) return 'denied';
  // SlowDown, 5xx, timeouts, refused or reset connections, and anything else: try again later.
  return 'unavailable';
}

/**
 * An SDK error as a StorageDriverError: the S3 code and HTTP status (RGW's error bodies have an
 * empty message), or a network error's own message. Nothing of the request: no credential.
 */
export function toDriverError(error: unknown, operation: string, key: string | undefined): StorageDriverError {
  if (error instanceof StorageDriverError) return error;
  const name = errorName(error);
  const status = errorStatus(error);
  const network = status === undefined && name !== (error as Error)?.name ? `: ${(error as Error).message}` : '';
  const timeout = name === 'TimeoutError' ? ': no answer in time' : '';
  const message = `s3 ${operation}${key ? ` ${key}` : ''}: ${name}${status ? ` (HTTP ${status})` : ''}${network}${timeout}`;
  return new StorageDriverError(faultOf(error), operation, message, { key, cause: error });
}

/** A commit's failure (one upload or a staged one) as the driver reports it: cancelled when its signal was. */
function commitError(error: unknown, key: string, signal: AbortSignal | undefined): StorageDriverError {
  if (error instanceof StorageDriverError) return error;
  if (signal?.aborted) return new StorageDriverError('unavailable', 'commitFile', `s3 commitFile ${key}: cancelled`, { key, cause: error });
  return toDriverError(error, 'commitFile', key);
}
