/**
 * Where the mirror keeps things on disk, as tests check it from outside.
 *
 * Why its own copy and not src/storage/paths.ts: a test that asks the code under test where a
 * blob should be cannot notice that the layout moved. This is the layout drawn in
 * src/storage/paths.ts (`blobs/<algorithm>/<first two hex>/<hex>`), written out once for every
 * test and benchmark.
 */
import path from 'node:path';

/** The committed file of a `sha256:<hex>` blob under the store root `root`. */
export function blobPath(root: string, digest: string): string {
  const hex = digest.slice('sha256:'.length);
  return path.join(root, 'blobs', 'sha256', hex.slice(0, 2), hex);
}
