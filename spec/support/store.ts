/**
 * Where the mirror keeps things on disk, as tests check it from outside.
 *
 * Why its own copy and not src/storage/paths.ts: a test that asks the code under test where a
 * blob should be cannot notice that the layout moved. This is the layout drawn in
 * src/storage/paths.ts (`blobs/<algorithm>/<first two hex>/<hex>`), written out once for every
 * test and benchmark.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { eventually } from './wait.ts';

/** The committed file of a `sha256:<hex>` blob under the store root `root`. */
export function blobPath(root: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return path.join(root, 'blobs', 'sha256', hex.slice(0, 2), hex);
}

/**
 * Whether the blob lands in the store within `ms`. A client gets a blob's last byte once it has
 * verified, a moment before the file is flushed and renamed into the store, so a test that
 * looks right after a pull polls for it.
 */
export function stored(root: string, digest: string, ms = 5_000): Promise<boolean> {
  return eventually(() => existsSync(blobPath(root, digest)), ms, 20);
}
