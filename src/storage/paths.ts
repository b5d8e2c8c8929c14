import { join } from 'node:path';
import type { Digest } from '../registry/digest.ts';

/*
 * The on-disk layout of the store, drawn once:
 *
 *   <root>/
 *   ├── blobs/<algorithm>/<first two hex>/<hex>      verified content: layers, configs, manifests
 *   ├── repositories/<name>/
 *   │   ├── _manifests/<algorithm>/<hex>              {"mediaType","size"}: the repository has this manifest
 *   │   ├── _layers/<algorithm>/<hex>                 the repository holds this blob (a manifest of it references
 *   │   │                                             it, or upstream served it for this repository)
 *   │   ├── _access                                   "public" | "private": may an anonymous client pull it upstream
 *   │   └── _tags/<tag>                               the digest the tag pointed at when last checked
 *   ├── _tmp/<instance>/<random>                      downloads in flight, renamed into blobs/ once verified
 *   └── _store-id                                     random id of this store: instances sharing it share Redis keys
 *
 * Names and tags are validated before they get here (every name component matches
 * [a-z0-9]+(…)*, so it never starts with "_" or "."), and digests are lowercase hex, so no
 * path built here can leave the root or collide with the "_" directories.
 */
export class StorePaths {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  blob(digest: Digest): string {
    return join(this.root, 'blobs', digest.algorithm, digest.hex.slice(0, 2), digest.hex);
  }

  blobsDir(): string {
    return join(this.root, 'blobs');
  }

  manifestLink(name: string, digest: Digest): string {
    return join(this.root, 'repositories', name, '_manifests', digest.algorithm, digest.hex);
  }

  layerLink(name: string, digest: Digest): string {
    return join(this.root, 'repositories', name, '_layers', digest.algorithm, digest.hex);
  }

  accessVerdict(name: string): string {
    return join(this.root, 'repositories', name, '_access');
  }

  tag(name: string, tag: string): string {
    return join(this.root, 'repositories', name, '_tags', tag);
  }

  repositoriesDir(): string {
    return join(this.root, 'repositories');
  }

  tmpDir(): string {
    return join(this.root, '_tmp');
  }

  storeId(): string {
    return join(this.root, '_store-id');
  }
}
