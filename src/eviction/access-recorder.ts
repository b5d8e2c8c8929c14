import { utimes } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import type { Logger } from '../logging/logger.ts';
import { parseDigest } from '../registry/digest.ts';
import type { StorePaths } from '../storage/paths.ts';

/** The longest an access may go unrecorded: the resolution of "last access". */
const MAX_DEBOUNCE_MS = 60 * 60 * 1000;

export interface AccessRecorderOptions {
  paths: StorePaths;
  /** proxy.ttl in ms: the debounce interval is a small fraction of it. */
  ttlMs: number;
  logger: Logger;
  now?: () => number;
  /** Told when a touched file is not there: in-memory knowledge of it is stale. */
  gone?: { manifest(name: string, digest: string): void; blob(digest: string): void };
}

/**
 * Records when stored content was last used, as the modification time of the file that
 * already stands for it: a repository's manifest link, a tag file, a blob.
 *
 * Why mtimes rather than a log or a database: the record is the file itself, so it cannot
 * disagree with the store, a crash loses at most the touches in flight (never the whole
 * record, unlike distribution's one scheduler JSON file), deleting an item deletes its record,
 * and start-up reads nothing: cost appears only when a sweep walks the store, which it does
 * anyway. Nothing in a blob's content changes, so content addressing is untouched.
 *
 * Touches are fire-and-forget (never awaited by a request) and debounced per file in an
 * in-process LRU: a hot item costs one utimes per debounce interval, not one per request.
 */
export class AccessRecorder {
  private readonly paths: StorePaths;
  private readonly now: () => number;
  private readonly debounceMs: number;
  private readonly logger: Logger;
  /** item (`b:digest`, `m:name@digest`, `t:name:tag`) → when this process last touched its file. */
  private readonly touched = new LRUCache<string, number>({ max: 20_000 });
  private readonly gone: AccessRecorderOptions['gone'];
  private warned = false;

  constructor(options: AccessRecorderOptions) {
    this.paths = options.paths;
    this.gone = options.gone;
    this.now = options.now ?? Date.now;
    this.logger = options.logger;
    // A small fraction of the TTL, so that debouncing never makes a used item look expired.
    this.debounceMs = options.ttlMs > 0 ? Math.min(MAX_DEBOUNCE_MS, Math.floor(options.ttlMs / 24)) : MAX_DEBOUNCE_MS;
  }

  // Called on every warm request: the debounce check comes first, the path is built only when
  // the file is really touched.
  manifest(name: string, digest: string): void {
    this.touch(`m:${name}@${digest}`, () => this.paths.manifestLink(name, parseDigest(digest)), () => this.gone?.manifest(name, digest));
  }

  tag(name: string, tag: string): void {
    this.touch(`t:${name}:${tag}`, () => this.paths.tag(name, tag));
  }

  blob(digest: string): void {
    this.touch(`b:${digest}`, () => this.paths.blob(parseDigest(digest)), () => this.gone?.blob(digest));
  }

  private touch(key: string, pathOf: () => string, whenGone?: () => void): void {
    const now = this.now();
    const last = this.touched.get(key);
    if (last !== undefined && now - last < this.debounceMs && now >= last) return;
    this.touched.set(key, now);
    const path = pathOf();
    const at = now / 1000;
    utimes(path, at, at).catch((error: NodeJS.ErrnoException) => {
      // Not stored (yet, or passed through uncached, or evicted by a `gc` in another process
      // while this one still knew it): nothing to record; forget it so it is stored again.
      this.touched.delete(key);
      if (error.code === 'ENOENT' || error.code === 'ENOTDIR') {
        whenGone?.();
        return;
      }
      if (this.warned) return;
      this.warned = true;
      this.logger.warn('cannot record access times', { error: error.message, code: error.code });
    });
  }
}
