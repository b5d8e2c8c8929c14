/**
 * The one suite every storage driver passes (issue 25; distribution's
 * registry/storage/driver/testsuites): run it with a setup that gives a fresh, empty store.
 * spec/unit/storage-driver.test.ts runs it for `filesystem` and `inmemory`, spec/e2e for `s3`.
 *
 * Each case is something the layers above the driver rely on: a blob is served whole and
 * exactly as committed, a reader never sees part of a write, two fills of one blob never mix,
 * a listing gives every key once (past one page of 1,000), a missing object is an answer and
 * not an error, a cancelled or failed commit leaves nothing, a client that leaves frees what
 * its response held, and no key read from a request can name anything outside the store.
 * Blobs are never whole in memory here either: large content is written in chunks and checked
 * by its sha256.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { open, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { describe, it } from 'node:test';
import { StorageDriverError, type StorageDriver, type StorageFault } from '../../src/storage/driver/storage-driver.ts';
import { collect, collector } from './collect.ts';
import { eventually } from './wait.ts';

export interface DriverUnderTest {
  driver: StorageDriver;
  /** A local directory for the files commitFile takes (a fill's spool). */
  spoolDir: string;
  /**
   * How many resources the store holds open now (the filesystem's descriptors under its root,
   * an S3 driver's sockets in use): compared before and after a response that failed. Omitted
   * where nothing is held (in memory).
   */
  openResources?(): Promise<number>;
  teardown(): Promise<void>;
}

const MiB = 1024 * 1024;
/** Large enough to take many reads and writes of every driver (and several S3 parts). */
const LARGE_BYTES = 64 * MiB;

export function describeDriverConformance(name: string, setup: () => Promise<DriverUnderTest>): void {
  /** Each case gets a fresh, empty store, torn down whatever the outcome. */
  const withStore = (fn: (store: DriverUnderTest) => Promise<void>) => async () => {
    const store = await setup();
    try {
      await fn(store);
    } finally {
      await store.teardown();
    }
  };

  describe(`storage driver conformance: ${name}`, () => {
    it('small objects: what putContent wrote is read back whole by getContent, stat and open, and a put replaces it', withStore(async ({ driver }) => {
      const before = Date.now();
      await driver.putContent('repositories/library/alpine/_tags/latest', `sha256:${'a'.repeat(64)}`);
      const bytes = randomBytes(3000);
      await driver.putContent('blobs/sha256/ab/small', bytes);
      await driver.putContent('empty/object', new Uint8Array(0));

      assert.equal((await driver.getContent('repositories/library/alpine/_tags/latest'))?.toString(), `sha256:${'a'.repeat(64)}`);
      assert.deepEqual(await driver.getContent('blobs/sha256/ab/small'), bytes);
      assert.deepEqual(await driver.getContent('empty/object'), Buffer.alloc(0));

      const info = await driver.stat('blobs/sha256/ab/small');
      assert.equal(info?.size, 3000);
      // Clocks of a remote store may differ a little, and S3 keeps whole seconds.
      assert.ok(info.modifiedMs >= before - 5_000 && info.modifiedMs <= Date.now() + 5_000, `modifiedMs ${info.modifiedMs} is not about now`);
      assert.equal((await driver.stat('empty/object'))?.size, 0);

      assert.deepEqual(await readWhole(driver, 'blobs/sha256/ab/small'), bytes);
      assert.deepEqual(await readWhole(driver, 'empty/object'), Buffer.alloc(0));

      // The caller's buffer is its own: changing it afterwards changes nothing stored.
      bytes.fill(0);
      assert.notDeepEqual(await driver.getContent('blobs/sha256/ab/small'), bytes);

      await driver.putContent('blobs/sha256/ab/small', 'replaced');
      assert.equal((await driver.getContent('blobs/sha256/ab/small'))?.toString(), 'replaced');
      assert.equal((await driver.stat('blobs/sha256/ab/small'))?.size, 'replaced'.length);
    }));

    it(`large objects: ${LARGE_BYTES / MiB} MiB through commitFile are served whole and in order, and the spool file is gone`, withStore(async ({ driver, spoolDir }) => {
      const spool = path.join(spoolDir, 'large');
      const content = new Pattern(LARGE_BYTES);
      await content.writeTo(spool);
      await driver.commitFile(spool, 'blobs/sha256/cd/large');
      assert.equal(existsSync(spool), false, 'the spool file is gone after a commit');

      assert.equal((await driver.stat('blobs/sha256/cd/large'))?.size, LARGE_BYTES);
      const opened = await driver.open('blobs/sha256/cd/large');
      assert.ok(opened);
      assert.equal(opened.size, LARGE_BYTES);
      const sink = new HashingSink();
      try {
        await opened.send(sink, { start: 0, end: LARGE_BYTES - 1 });
      } finally {
        opened.release();
      }
      assert.equal(sink.bytes, LARGE_BYTES);
      assert.equal(sink.digest(), content.sha256(0, LARGE_BYTES - 1));

      // A range across chunk boundaries, far into the object (a resumed pull).
      const start = 40 * MiB - 12_345;
      const end = 41 * MiB + 777;
      const ranged = await sendRange(driver, 'blobs/sha256/cd/large', start, end);
      assert.equal(ranged.bytes, end - start + 1);
      assert.equal(ranged.digest(), content.sha256(start, end));
    }));

    it('ranges: the first byte, the last byte, a span in the middle and the whole object are exactly those bytes', withStore(async ({ driver }) => {
      // Larger than any one chunk a driver sends, so a range spans several.
      const bytes = randomBytes(300_001);
      await driver.putContent('blobs/sha256/ef/ranged', bytes);
      const cases = [
        { start: 0, end: 0 },
        { start: bytes.length - 1, end: bytes.length - 1 },
        { start: 131_071, end: 262_145 },
        { start: 0, end: bytes.length - 1 },
      ];
      for (const range of cases) {
        const sent = await collectRange(driver, 'blobs/sha256/ef/ranged', range.start, range.end);
        assert.deepEqual(sent, bytes.subarray(range.start, range.end + 1), `range ${range.start}-${range.end}`);
      }
    }));

    it('concurrent commitFile of one key from two files: the key holds one of them whole, never a mix, and both files are gone', withStore(async ({ driver, spoolDir }) => {
      const size = 8 * MiB;
      for (let round = 0; round < 3; round++) {
        const first = new Pattern(size, 1 + round * 2);
        const second = new Pattern(size, 2 + round * 2);
        const firstFile = path.join(spoolDir, `first-${round}`);
        const secondFile = path.join(spoolDir, `second-${round}`);
        await Promise.all([first.writeTo(firstFile), second.writeTo(secondFile)]);
        await Promise.all([driver.commitFile(firstFile, 'blobs/sha256/12/same'), driver.commitFile(secondFile, 'blobs/sha256/12/same')]);
        const stored = await sendRange(driver, 'blobs/sha256/12/same', 0, size - 1);
        assert.ok([first.sha256(0, size - 1), second.sha256(0, size - 1)].includes(stored.digest()), `round ${round}: the object is neither file whole`);
        assert.equal(existsSync(firstFile) || existsSync(secondFile), false, 'both spool files are gone');
      }
    }));

    it('concurrent putContent and getContent: every read is the old content or the new, whole', withStore(async ({ driver }) => {
      const size = 256 * 1024;
      const versions = [Buffer.alloc(size, 'a'), Buffer.alloc(size + 4096, 'b')];
      await driver.putContent('repositories/x/_manifests/sha256/ff', versions[0]);
      let writing = true;
      const writer = (async () => {
        try {
          for (let i = 1; i <= 40; i++) await driver.putContent('repositories/x/_manifests/sha256/ff', versions[i % 2]);
        } finally {
          writing = false;
        }
      })();
      const reader = async (): Promise<number> => {
        let reads = 0;
        while (writing) {
          const read = await driver.getContent('repositories/x/_manifests/sha256/ff');
          assert.ok(read, 'the object is always there while it is replaced');
          assert.ok(read.equals(versions[0]) || read.equals(versions[1]), `a read of ${read.length} bytes is neither version whole`);
          reads++;
        }
        return reads;
      };
      const [, ...reads] = await Promise.all([writer, reader(), reader()]);
      assert.ok(reads.every((count) => count > 0), 'the readers read while the writer wrote');
    }));

    it('children and walk list 1,100 keys each once and nothing else, whatever the page size', withStore(async ({ driver }) => {
      const flat = Array.from({ length: 1100 }, (_, i) => `k${String(i).padStart(4, '0')}`);
      const nested = Array.from({ length: 30 }, (_, i) => `d${i % 3}/n${i}`);
      await forEachLimited([...flat.map((name) => `many/flat/${name}`), ...nested.map((name) => `many/${name}`)], (key) => driver.putContent(key, key));
      // Neighbours a prefix must not take in: a key that only starts alike, and another tree.
      await driver.putContent('many/flatter/x', 'x');
      await driver.putContent('manyx/y', 'y');

      const children = await collect(driver.children('many/flat'));
      assert.deepEqual([...children].sort(), flat);
      assert.deepEqual([...(await collect(driver.children('many/flat/')))].sort(), flat, 'a trailing slash lists the same');
      assert.deepEqual([...(await collect(driver.children('many')))].sort(), ['d0', 'd1', 'd2', 'flat', 'flatter']);

      const walked = await collect(driver.walk('many/flat'));
      assert.deepEqual(walked.map((object) => object.key).sort(), flat.map((name) => `many/flat/${name}`));
      for (const object of walked) assert.equal(object.size, object.key.length, `${object.key}: size`);

      const all = (await collect(driver.walk('many'))).map((object) => object.key).sort();
      const expected = [...flat.map((name) => `many/flat/${name}`), ...nested.map((name) => `many/${name}`), 'many/flatter/x'].sort();
      assert.deepEqual(all, expected);
      assert.ok((await collect(driver.children(''))).includes('manyx'), 'the whole store lists its top level');
      assert.ok((await collect(driver.walk(''))).some((object) => object.key === 'manyx/y'), 'the whole store walks');
    }));

    it('missing keys are answers, not errors: undefined, false or nothing', withStore(async ({ driver }) => {
      await driver.putContent('present/object', 'here');
      await driver.putContent('present/dir/inner', 'inside');
      // Never written; under an object (a file on disk: ENOTDIR); a "directory" that holds objects.
      for (const key of ['absent/object', 'present/object/below', 'present/dir']) {
        assert.equal(await driver.getContent(key), undefined, `getContent ${key}`);
        assert.equal(await driver.stat(key), undefined, `stat ${key}`);
        assert.equal(await driver.open(key), undefined, `open ${key}`);
        assert.equal(await driver.delete(key), false, `delete ${key}`);
      }
      assert.deepEqual(await collect(driver.children('absent')), []);
      assert.deepEqual(await collect(driver.walk('absent')), []);
      assert.deepEqual(await collect(driver.children('present/object')), [], 'an object has no children');
      assert.deepEqual(await collect(driver.walk('present/object')), []);
      assert.equal((await driver.getContent('present/dir/inner'))?.toString(), 'inside', 'deleting a "directory" key removed nothing');
    }));

    it('delete removes the object and only it', withStore(async ({ driver }) => {
      for (const name of ['one', 'two', 'three']) await driver.putContent(`repositories/r/_layers/sha256/${name}`, name);
      assert.equal(await driver.delete('repositories/r/_layers/sha256/two'), true);
      assert.equal(await driver.getContent('repositories/r/_layers/sha256/two'), undefined);
      assert.equal(await driver.stat('repositories/r/_layers/sha256/two'), undefined);
      assert.equal(await driver.open('repositories/r/_layers/sha256/two'), undefined);
      assert.deepEqual((await collect(driver.children('repositories/r/_layers/sha256'))).sort(), ['one', 'three']);
      assert.deepEqual((await collect(driver.walk('repositories/r'))).map((object) => object.key).sort(), ['repositories/r/_layers/sha256/one', 'repositories/r/_layers/sha256/three']);
      assert.equal((await driver.getContent('repositories/r/_layers/sha256/one'))?.toString(), 'one');
      assert.equal(await driver.delete('repositories/r/_layers/sha256/two'), false, 'a second delete finds nothing');
      // The key can be written again.
      await driver.putContent('repositories/r/_layers/sha256/two', 'again');
      assert.equal((await driver.getContent('repositories/r/_layers/sha256/two'))?.toString(), 'again');
    }));

    it('commitFile cancelled by its signal: nothing new is visible, an older object stays whole, the file is gone', withStore(async ({ driver, spoolDir }) => {
      await driver.putContent('blobs/sha256/aa/kept', 'the old content');
      const cancelled = path.join(spoolDir, 'cancelled');
      await new Pattern(6 * MiB).writeTo(cancelled);
      await assert.rejects(driver.commitFile(cancelled, 'blobs/sha256/aa/kept', AbortSignal.abort()));
      assert.equal(existsSync(cancelled), false, 'the cancelled file is gone');
      assert.equal((await driver.getContent('blobs/sha256/aa/kept'))?.toString(), 'the old content');

      const fresh = path.join(spoolDir, 'fresh');
      await new Pattern(6 * MiB).writeTo(fresh);
      await assert.rejects(driver.commitFile(fresh, 'blobs/sha256/aa/never', AbortSignal.abort()));
      assert.equal(await driver.stat('blobs/sha256/aa/never'), undefined);
      assert.deepEqual(await collect(driver.walk('blobs/sha256/aa')).then((objects) => objects.map((object) => object.key)), ['blobs/sha256/aa/kept']);

      // Cancelled while it runs: it either finished (the object whole) or left nothing.
      const content = new Pattern(24 * MiB, 7);
      const racing = path.join(spoolDir, 'racing');
      await content.writeTo(racing);
      const controller = new AbortController();
      const commit = driver.commitFile(racing, 'blobs/sha256/aa/raced', controller.signal);
      setImmediate(() => controller.abort());
      const outcome = await commit.then(() => 'committed', () => 'cancelled');
      const info = await driver.stat('blobs/sha256/aa/raced');
      if (outcome === 'cancelled') assert.equal(info, undefined, 'a cancelled commit left an object');
      else assert.equal((await sendRange(driver, 'blobs/sha256/aa/raced', 0, content.size - 1)).digest(), content.sha256(0, content.size - 1));
      assert.equal(existsSync(racing), false, 'the file is gone');
    }));

    it('stageFile, where a driver has it: a file taken in while it is written is invisible until its commit and whole after; a cancelled one leaves nothing, and its file to its writer', withStore(async ({ driver, spoolDir }) => {
      // The filesystem has none: it renames the complete file.
      const content = new Pattern(24 * MiB, 9);
      const spool = path.join(spoolDir, 'staged');
      const staged = driver.stageFile?.(spool, 'blobs/sha256/dd/staged', content.size);
      if (!staged) return;
      await content.writeGrowing(spool, (bytes) => staged.grown(bytes));
      assert.equal(await driver.stat('blobs/sha256/dd/staged'), undefined, 'nothing is visible before the commit');
      await staged.commit();
      assert.equal((await sendRange(driver, 'blobs/sha256/dd/staged', 0, content.size - 1)).digest(), content.sha256(0, content.size - 1));
      assert.equal(existsSync(spool), false, 'the committed file is gone');

      const other = new Pattern(24 * MiB, 10);
      const cancelledFile = path.join(spoolDir, 'cancelled');
      const cancelled = driver.stageFile!(cancelledFile, 'blobs/sha256/dd/cancelled', other.size)!;
      await other.writeGrowing(cancelledFile, (bytes) => cancelled.grown(bytes), { upTo: 16 * MiB });
      await cancelled.cancel();
      assert.equal(await driver.stat('blobs/sha256/dd/cancelled'), undefined, 'a cancelled file is never visible');
      assert.equal(existsSync(cancelledFile), true, 'the file stays for its writer to remove');
      await assert.rejects(cancelled.commit(), 'a cancelled upload cannot be committed');
    }));

    it('commitFile of a missing file fails and leaves the key as it was', withStore(async ({ driver, spoolDir }) => {
      await assert.rejects(driver.commitFile(path.join(spoolDir, 'never-written'), 'blobs/sha256/bb/none'));
      assert.equal(await driver.stat('blobs/sha256/bb/none'), undefined);
      await driver.putContent('blobs/sha256/bb/old', 'old');
      await assert.rejects(driver.commitFile(path.join(spoolDir, 'never-written'), 'blobs/sha256/bb/old'));
      assert.equal((await driver.getContent('blobs/sha256/bb/old'))?.toString(), 'old');
    }));

    it('a response that fails midway rejects, and what it held is freed', withStore(async (store) => {
      const { driver } = store;
      const size = 8 * MiB;
      const spool = path.join(store.spoolDir, 'served');
      await new Pattern(size).writeTo(spool);
      await driver.commitFile(spool, 'blobs/sha256/cc/served');
      const baseline = await store.openResources?.();

      // A client whose connection fails after 1 MiB, and one that goes away (destroyed) after 1 MiB.
      const failing = new CountingSink(MiB, (sink) => sink.destroy(new Error('connection reset')));
      const leaving = new CountingSink(MiB, (sink) => sink.destroy());
      for (const sink of [failing, leaving]) {
        sink.on('error', () => {});
        const opened = await driver.open('blobs/sha256/cc/served');
        assert.ok(opened);
        try {
          await assert.rejects(opened.send(sink, { start: 0, end: size - 1 }));
        } finally {
          opened.release();
        }
        assert.ok(sink.bytes < size, 'the response stopped short');
      }
      // Opened and released without a send (a HEAD, a request that failed before its body).
      (await driver.open('blobs/sha256/cc/served'))?.release();

      if (baseline !== undefined) {
        let now = -1;
        const freed = await eventually(async () => (now = await store.openResources!()) <= baseline, 5_000, 20);
        assert.ok(freed, `the store holds ${now} resources, ${baseline} before the responses`);
      }
      // The object itself is unharmed.
      assert.equal((await driver.stat('blobs/sha256/cc/served'))?.size, size);
    }));

    it("getContent refuses an object larger than maxBytes ('too-large') and takes one of exactly maxBytes", withStore(async ({ driver }) => {
      await driver.putContent('repositories/big/_manifests/sha256/00', Buffer.alloc(4097, 'm'));
      await assert.rejects(driver.getContent('repositories/big/_manifests/sha256/00', 4096), isFault('too-large'));
      assert.equal((await driver.getContent('repositories/big/_manifests/sha256/00', 4097))?.length, 4097);
    }));

    it("names that could leave the store or that paths.ts never draws are refused by every method ('invalid-key')", withStore(async ({ driver, spoolDir }) => {
      const refused = ['', '..', '.', 'a//b', '/abs', 'a/../b', 'a/./b', '../outside', 'a/b/', 'a\u0000b', 'a\\b', '.hidden', 'a/.hidden', 'a/b c', 'x'.repeat(1025)];
      await driver.putContent('a/b', 'inside');
      for (const key of refused) {
        const label = JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}…` : key);
        await assert.rejects(driver.getContent(key), isFault('invalid-key'), `getContent ${label}`);
        await assert.rejects(driver.putContent(key, 'x'), isFault('invalid-key'), `putContent ${label}`);
        const spool = path.join(spoolDir, 'refused');
        await writeFile(spool, 'x');
        await assert.rejects(driver.commitFile(spool, key), isFault('invalid-key'), `commitFile ${label}`);
        assert.equal(existsSync(spool), false, `commitFile ${label}: the file is gone (a refused commit is a failed one)`);
        await assert.rejects(driver.stat(key), isFault('invalid-key'), `stat ${label}`);
        await assert.rejects(driver.open(key), isFault('invalid-key'), `open ${label}`);
        await assert.rejects(driver.delete(key), isFault('invalid-key'), `delete ${label}`);
        // A prefix may be '' (the whole store) or end in one '/'.
        if (key !== '' && key !== 'a/b/') {
          await assert.rejects(collect(driver.children(key)), isFault('invalid-key'), `children ${label}`);
          await assert.rejects(collect(driver.walk(key)), isFault('invalid-key'), `walk ${label}`);
        }
      }
      assert.equal((await driver.getContent('a/b'))?.toString(), 'inside', 'nothing refused touched the store');
      assert.deepEqual((await collect(driver.walk('a'))).map((object) => object.key), ['a/b']);
    }));

    it('probe resolves on a healthy store, and usage answers sizes that make sense', withStore(async ({ driver }) => {
      await driver.probe();
      const usage = await driver.usage();
      if (usage.totalBytes !== undefined) {
        assert.ok(usage.totalBytes > 0);
        assert.ok(usage.freeBytes !== undefined && usage.freeBytes >= 0 && usage.freeBytes <= usage.totalBytes);
      }
    }));
  });
}

/** A StorageDriverError with this fault. */
export function isFault(fault: StorageFault): (error: unknown) => boolean {
  return (error: unknown) => {
    if (error instanceof StorageDriverError && error.fault === fault) return true;
    throw new assert.AssertionError({ message: `expected a StorageDriverError '${fault}', got ${String(error)}`, actual: error });
  };
}

/** Runs fn over items, 16 at a time (1,100 puts one after another are slow on a remote store). */
async function forEachLimited<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: 16 }, async () => {
    while (next < items.length) await fn(items[next++]);
  }));
}

/**
 * Content of any size, made of 1 MiB blocks that each differ (a block index in front of one
 * random block), so a part sent twice, out of order or from another file shows in the sha256.
 * Any range's sha256 is computed from the pattern, never from a copy in memory.
 */
export class Pattern {
  readonly size: number;
  private readonly block: Buffer;
  private readonly seed: number;

  constructor(size: number, seed = 0) {
    this.size = size;
    this.seed = seed;
    this.block = randomBytes(MiB);
  }

  /** Block `index`, stamped with its index and the seed (the one buffer, changed in place). */
  private stamped(index: number): Buffer {
    this.block.writeUInt32BE(index, 0);
    this.block.writeUInt32BE(this.seed, 4);
    return this.block;
  }

  async writeTo(file: string): Promise<void> {
    const out = createWriteStream(file, { flags: 'wx' });
    for (let offset = 0; offset < this.size; offset += MiB) {
      const piece = Buffer.from(this.stamped(offset / MiB).subarray(0, Math.min(MiB, this.size - offset)));
      if (!out.write(piece)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
    }
    out.end();
    await finished(out);
  }

  /**
   * Appends bytes [from, upTo) a MiB at a time, as a fill does (from 0: a new file), telling
   * `written` how far the file holds them after each.
   */
  async writeGrowing(file: string, written: (bytes: number) => void, { from = 0, upTo = this.size } = {}): Promise<void> {
    const handle = await open(file, from === 0 ? 'wx' : 'r+');
    try {
      for (let offset = from; offset < upTo; offset += MiB) {
        const length = Math.min(MiB, upTo - offset);
        await handle.write(this.stamped(offset / MiB), 0, length, offset);
        written(offset + length);
      }
    } finally {
      await handle.close();
    }
  }

  sha256(start: number, end: number): string {
    const hash = createHash('sha256');
    for (let offset = start - (start % MiB); offset <= end; offset += MiB) {
      const block = this.stamped(offset / MiB);
      hash.update(block.subarray(Math.max(0, start - offset), Math.min(MiB, end + 1 - offset)));
    }
    return hash.digest('hex');
  }
}

/** A client that hashes what it receives, and keeps up (each write taken at once). */
class HashingSink extends Writable {
  bytes = 0;
  private readonly hash = createHash('sha256');

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    callback();
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

/** A client that counts bytes and does `onPast` to itself once it received `limit` of them. */
class CountingSink extends Writable {
  bytes = 0;
  private readonly limit: number;
  private readonly onPast: (sink: CountingSink) => void;

  constructor(limit: number, onPast: (sink: CountingSink) => void) {
    // A small buffer: the sender feels the backpressure.
    super({ highWaterMark: 16 * 1024 });
    this.limit = limit;
    this.onPast = onPast;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.bytes += chunk.length;
    if (this.bytes >= this.limit) {
      this.onPast(this);
      return;
    }
    // Taken a moment later, as a socket would.
    setImmediate(callback);
  }
}

export async function sendRange(driver: StorageDriver, key: string, start: number, end: number): Promise<HashingSink> {
  const opened = await driver.open(key);
  assert.ok(opened, `${key} is stored`);
  const sink = new HashingSink();
  try {
    await opened.send(sink, { start, end });
  } finally {
    opened.release();
  }
  return sink;
}

/** A small object's bytes as `open().send` writes them. */
async function collectRange(driver: StorageDriver, key: string, start: number, end: number): Promise<Buffer> {
  const opened = await driver.open(key);
  assert.ok(opened, `${key} is stored`);
  const sent = collector();
  try {
    await opened.send(sent.res, { start, end });
  } finally {
    opened.release();
  }
  return sent.body();
}

async function readWhole(driver: StorageDriver, key: string): Promise<Buffer> {
  const size = (await driver.stat(key))?.size;
  assert.ok(size !== undefined, `${key} is stored`);
  return size === 0 ? collectRange(driver, key, 0, -1) : collectRange(driver, key, 0, size - 1);
}
