import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { sendFileRange, type FileBytes } from '../../src/storage/send-file.ts';

/*
 * A client that leaves while the sender waits: what the sender waited on may still fail later
 * (a fill that turns out bad, a socket write that errors). That late failure must be nobody's
 * unhandled rejection: Node ends the process on one, and a mirror must not die because a
 * client hung up (seen in CI: blob-faults "own fill: the client leaves mid-body").
 */
describe('sendFileRange when the client has gone', () => {
  it('rejects with the client gone, and a source that fails afterwards crashes nothing', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on('unhandledRejection', onUnhandled);
    try {
      const res = new Writable({ write: (_chunk, _encoding, callback) => callback() });
      res.destroy();
      const source: FileBytes = {
        fd: -1,
        // The fill fails a moment after the client left.
        readableUpTo: () => sleep(20).then(() => Promise.reject(new Error('blob fill failed'))),
      };
      await assert.rejects(sendFileRange(source, res, 0, 1023), /client closed the connection/);
      await sleep(100);
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});
