/**
 * The one suite every AccessClock implementation passes: run it with a factory of stores, each
 * of which opens clocks on one shared record (as instances, or an instance and `gc`, share one).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { accessItem, lastUsesOf, LOOKUP_BATCH, type AccessClock } from '../../src/eviction/access-clock.ts';

export interface ClockStore {
  /** A clock on this store's records, as a new process (an instance restarted, another instance, `gc`) opens it. */
  open(): Promise<AccessClock>;
  close(): Promise<void>;
}

const digest = (c: string) => `sha256:${c.repeat(64)}`;
const T0 = Date.UTC(2026, 0, 1);

export function accessClockSuite(name: string, createStore: () => Promise<ClockStore>): void {
  describe(`access clock: ${name}`, () => {
    let store: ClockStore;
    const opened: AccessClock[] = [];
    const open = async () => {
      const clock = await store.open();
      opened.push(clock);
      return clock;
    };
    before(async () => {
      store = await createStore();
    });
    after(async () => {
      await Promise.all(opened.map((clock) => clock.close()));
      await store?.close();
    });

    it('knows nothing of an item never touched', async () => {
      const clock = await open();
      assert.deepEqual(await clock.lastUses([accessItem.blob(digest('0')), accessItem.tag('library/alpine', 'latest')]), [undefined, undefined]);
      assert.deepEqual(await clock.lastUses([]), []);
    });

    it('answers its own touches at once, before they are written', async () => {
      const clock = await open();
      const item = accessItem.manifest('library/alpine', digest('1'));
      clock.touch(item, T0 + 5);
      assert.deepEqual(await clock.lastUses([item]), [T0 + 5]);
    });

    it('another clock on the same records (a restart, another instance, gc) sees the touches once written', async () => {
      const writer = await open();
      const items = [accessItem.blob(digest('2')), accessItem.manifest('team/app', digest('2')), accessItem.tag('team/app', 'v1.2')];
      items.forEach((item, i) => writer.touch(item, T0 + 1000 * (i + 1)));
      await writer.flush();
      const reader = await open();
      assert.deepEqual(await reader.lastUses(items), [T0 + 1000, T0 + 2000, T0 + 3000]);
      // And the other way round: the reader's touch reaches the writer.
      reader.touch(items[0], T0 + 9000);
      await reader.flush();
      assert.deepEqual(await writer.lastUses([items[0]]), [T0 + 9000]);
    });

    it('keeps the latest use: a touch older than the record, from a batch that arrives late, does not move it back', async () => {
      const one = await open();
      const two = await open();
      const item = accessItem.blob(digest('3'));
      one.touch(item, T0 + 50_000);
      await one.flush();
      two.touch(item, T0 + 10_000);
      await two.flush();
      assert.deepEqual(await (await open()).lastUses([item]), [T0 + 50_000]);
      two.touch(item, T0 + 60_000);
      two.touch(item, T0 + 55_000);
      await two.flush();
      assert.deepEqual(await (await open()).lastUses([item]), [T0 + 60_000]);
    });

    it('survives a close and a reopen (a restart)', async () => {
      const first = await open();
      const item = accessItem.tag('library/redis', '7');
      first.touch(item, T0 + 123_456);
      await first.close();
      const again = await open();
      assert.deepEqual(await again.lastUses([item]), [T0 + 123_456]);
    });

    it('forgets deleted items, for every clock on the records; forgetting twice or an unknown item is harmless', async () => {
      const one = await open();
      const kept = accessItem.blob(digest('4'));
      const gone = accessItem.blob(digest('5'));
      one.touch(kept, T0 + 1);
      one.touch(gone, T0 + 2);
      await one.flush();
      const two = await open();
      assert.deepEqual(await two.lastUses([kept, gone]), [T0 + 1, T0 + 2]);
      await two.forget([gone, accessItem.blob(digest('6'))]);
      await two.forget([gone]);
      assert.deepEqual(await two.lastUses([kept, gone]), [T0 + 1, undefined]);
      assert.deepEqual(await (await open()).lastUses([kept, gone]), [T0 + 1, undefined]);
      assert.deepEqual(await one.lastUses([kept, gone]), [T0 + 1, undefined], 'the clock that wrote it sees it forgotten too');
      // A use after the deletion (the item stored again) is recorded anew.
      one.touch(gone, T0 + 3);
      await one.flush();
      assert.deepEqual(await two.lastUses([gone]), [T0 + 3]);
    });

    it(`looks up thousands of items in batches of ${LOOKUP_BATCH} (a pass over a large store)`, async () => {
      const writer = await open();
      const count = 2 * LOOKUP_BATCH + 345;
      const item = (i: number) => accessItem.blob(`sha256:${i.toString(16).padStart(64, '0')}`);
      for (let i = 0; i < count; i += 2) writer.touch(item(i), T0 + i);
      await writer.flush();
      const reader = await open();
      const found = new Map<number, number>();
      await lastUsesOf(reader, count, item, (i, ms) => found.set(i, ms));
      assert.equal(found.size, Math.ceil(count / 2));
      for (const [i, ms] of found) assert.equal(ms, T0 + i, `item ${i}`);
      await assert.rejects(reader.lastUses(Array.from({ length: LOOKUP_BATCH + 1 }, (_, i) => item(i))), RangeError);
    });
  });
}
