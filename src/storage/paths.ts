import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Digest } from '../registry/digest.ts';

/*
 * The layout of the store, drawn once: as driver keys (StoreKeys, relative to the store), which
 * the filesystem driver keeps at the same paths under the root (StorePaths):
 *
 *   <root>/
 *   ├── blobs/<algorithm>/<first two hex>/<hex>      verified content: layers, configs, manifests
 *   ├── repositories/<name>/                         a repository of the default remote (proxy.remoteurl)
 *   │   ├── _manifests/<algorithm>/<hex>              {"mediaType","size"}: the repository has this manifest
 *   │   ├── _layers/<algorithm>/<hex>                 the repository holds this blob (a manifest of it references
 *   │   │                                             it, or upstream served it for this repository)
 *   │   ├── _access                                   "public" | "private": may an anonymous client pull it upstream
 *   │   ├── _referrers/<algorithm>/<hex>              the last referrers list of that subject digest (an OCI index)
 *   │   └── _tags/<tag>                               the digest the tag pointed at when last checked
 *   ├── registries/<namespace>/repositories/<name>/  a repository of another registry (proxy.remotes), laid out
 *   │                                                 as above; blobs stay shared by digest in blobs/
 *   ├── _access-clock/journal                         last use of each item, without Redis (eviction/local-access-clock.ts)
 *   ├── _tmp/<instance>/<random>                      downloads in flight, renamed into blobs/ once verified
 *   │   └── <algorithm>-<hex>.<epoch>                 a download under a fleet lease: its name follows from the
 *   │                                                 lease (instance, epoch) and the digest, so a lease names no path
 *   └── _store-id                                     random id of this store: instances sharing it share Redis keys
 *   (and _store-probe/<random>, beside _store-id:     the last probe an instance wrote (store-probe.ts); it tells a copy
 *                                                     of the store, a cloned volume with the same id, from the store itself)
 *
 * Names and tags are validated before they get here (every name component matches
 * [a-z0-9]+(…)*, so it never starts with "_" or "."), and digests are lowercase hex, so no
 * path built here can leave the root or collide with the "_" directories.
 *
 * A repository is named here by its key (see repositoryKey): its name on the default remote,
 * `<namespace>/<name>` on any other. Registry namespaces are hosts (a dot, a port, or
 * localhost) and name components never are, so the key says which directory it is.
 */
/** Whether a first path component names a registry (as docker's reference parser decides): a dot, a port, or localhost. */
export function isRegistryHost(component: string): boolean {
  return component.includes('.') || component.includes(':') || component === 'localhost';
}

/**
 * The store's key for a repository: `name` on the default remote (where a store written before
 * several registries existed has it), `<namespace>/<name>` on another. A default-remote name
 * whose first component looks like a registry host (reachable by `?ns=` only) is keyed with the
 * default's namespace too, so two registries never share a key.
 */
export function repositoryKey(registry: { namespace: string; isDefault: boolean }, name: string): string {
  return registry.isDefault && !isRegistryHost(name.split('/', 1)[0]) ? name : `${registry.namespace}/${name}`;
}

/** The registry namespace of a key (undefined: the default remote) and the name in it. */
export function splitRepositoryKey(key: string): { namespace?: string; name: string } {
  const slash = key.indexOf('/');
  const first = slash < 0 ? key : key.slice(0, slash);
  return slash > 0 && isRegistryHost(first) ? { namespace: first, name: key.slice(slash + 1) } : { name: key };
}

/**
 * An instance's name (TempArea): `<host>-<pid>-<8 hex>`, one path component that is never
 * `.` or `..`. What a lease in Redis says of its holder must match it before it names a file.
 */
export const INSTANCE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}-[0-9]{1,10}-[0-9a-f]{8}$/;

/** The temp file name of a download under the fleet lease `epoch`, inside its instance's directory. */
export function fillFileName(digest: Digest, epoch: number): string {
  return `${digest.algorithm}-${digest.hex}.${epoch}`;
}

/**
 * The store's keys (src/storage/driver/storage-driver.ts), relative to the store: the layout
 * above, drawn once. The filesystem driver keeps the object of a key at `join(root, key)`, so a
 * store written before the driver layer is served as it is; StorePaths below gives those paths
 * for what still walks the directories.
 */
export const StoreKeys = {
  blob(digest: Digest): string {
    return `blobs/${digest.algorithm}/${digest.hex.slice(0, 2)}/${digest.hex}`;
  },

  blobs(): string {
    return 'blobs';
  },

  /** A repository's prefix, by its key (repositoryKey). */
  repository(key: string): string {
    const { namespace, name } = splitRepositoryKey(key);
    return namespace === undefined ? `repositories/${name}` : `registries/${namespace}/repositories/${name}`;
  },

  /** The manifest links of a repository: `<prefix>/<algorithm>/<hex>`. */
  manifestLinks(key: string): string {
    return `${StoreKeys.repository(key)}/_manifests`;
  },

  manifestLink(key: string, digest: Digest): string {
    return `${StoreKeys.manifestLinks(key)}/${digest.algorithm}/${digest.hex}`;
  },

  layerLink(key: string, digest: Digest): string {
    return `${StoreKeys.repository(key)}/_layers/${digest.algorithm}/${digest.hex}`;
  },

  /** The cached referrers list of a subject digest in a repository (the referrers API while upstream is down). */
  referrers(key: string, subject: Digest): string {
    return `${StoreKeys.repository(key)}/_referrers/${subject.algorithm}/${subject.hex}`;
  },

  accessVerdict(key: string): string {
    return `${StoreKeys.repository(key)}/_access`;
  },

  tags(key: string): string {
    return `${StoreKeys.repository(key)}/_tags`;
  },

  tag(key: string, tag: string): string {
    return `${StoreKeys.tags(key)}/${tag}`;
  },

  /** The default remote's repositories. */
  repositories(): string {
    return 'repositories';
  },

  /** Other registries' repositories: `registries/<namespace>/repositories/`. */
  registries(): string {
    return 'registries';
  },

  storeId(): string {
    return '_store-id';
  },

  storeProbes(): string {
    return '_store-probe';
  },

  /** `name` is 32 lowercase hex digits (checked by StoreProbe before it gets here). */
  storeProbe(name: string): string {
    return `${StoreKeys.storeProbes()}/${name}`;
  },
};

/**
 * The store's paths on a filesystem: `join(root, key)` for every key above, where the
 * filesystem driver keeps it, plus the temporary area (`_tmp`), which is not the driver's:
 * downloads in flight are local files (and, on a shared volume, other instances' files to
 * follow).
 */
export class StorePaths {
  readonly root: string;

  constructor(root: string) {
    this.root = root;
  }

  blob(digest: Digest): string {
    return join(this.root, StoreKeys.blob(digest));
  }

  blobsDir(): string {
    return join(this.root, StoreKeys.blobs());
  }

  /** A repository's directory, by its key (repositoryKey). */
  repository(key: string): string {
    return join(this.root, StoreKeys.repository(key));
  }

  manifestLink(key: string, digest: Digest): string {
    return join(this.root, StoreKeys.manifestLink(key, digest));
  }

  layerLink(key: string, digest: Digest): string {
    return join(this.root, StoreKeys.layerLink(key, digest));
  }

  /** The cached referrers list of a subject digest in a repository (the referrers API while upstream is down). */
  referrers(key: string, subject: Digest): string {
    return join(this.root, StoreKeys.referrers(key, subject));
  }

  accessVerdict(key: string): string {
    return join(this.root, StoreKeys.accessVerdict(key));
  }

  tag(key: string, tag: string): string {
    return join(this.root, StoreKeys.tag(key, tag));
  }

  /** The default remote's repositories. */
  repositoriesDir(): string {
    return join(this.root, StoreKeys.repositories());
  }

  /** Other registries' repositories: `registries/<namespace>/repositories/`. */
  registriesDir(): string {
    return join(this.root, StoreKeys.registries());
  }

  /** Every directory of repositories, with the key prefix of the names found in it ('' for the default remote's). */
  async repositoryRoots(): Promise<{ dir: string; keyPrefix: string }[]> {
    let namespaces: string[] = [];
    try {
      namespaces = (await readdir(this.registriesDir())).filter(isRegistryHost);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    }
    return [{ dir: this.repositoriesDir(), keyPrefix: '' }, ...namespaces.sort().map((ns) => ({ dir: join(this.registriesDir(), ns, 'repositories'), keyPrefix: `${ns}/` }))];
  }

  tmpDir(): string {
    return join(this.root, '_tmp');
  }

  /** The access clock's journal without Redis (src/eviction/local-access-clock.ts): a local file, not the driver's. */
  accessClockDir(): string {
    return join(this.root, '_access-clock');
  }

  /**
   * Where the instance `instance` writes `digest` under the lease `epoch` (a followed fleet
   * download); undefined when the name or epoch (read from Redis) are not what an instance
   * writes, so nothing outside `_tmp/<instance>/` can ever be named.
   */
  fillTemp(instance: string, digest: Digest, epoch: number): string | undefined {
    if (!INSTANCE_ID.test(instance) || !Number.isSafeInteger(epoch) || epoch <= 0) return undefined;
    return join(this.tmpDir(), instance, fillFileName(digest, epoch));
  }

  storeId(): string {
    return join(this.root, StoreKeys.storeId());
  }

  storeProbeDir(): string {
    return join(this.root, StoreKeys.storeProbes());
  }

  /** `name` is 32 lowercase hex digits (checked by StoreProbe before it gets here). */
  storeProbe(name: string): string {
    return join(this.root, StoreKeys.storeProbe(name));
  }
}
