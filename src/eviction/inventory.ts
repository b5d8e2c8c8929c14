import { statSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { isNotFound } from '../storage/blob-store.ts';
import { isRegistryHost, type StorePaths } from '../storage/paths.ts';

/** A stored blob as a sweep sees it; `mtimeMs` is its last recorded use (see AccessRecorder). */
export interface StoredBlob {
  size: number;
  mtimeMs: number;
}

/** A repository's link to a manifest (the manifest's bytes are a blob). */
export interface StoredLink {
  repository: string;
  digest: string;
  mtimeMs: number;
}

export interface StoredTag {
  repository: string;
  tag: string;
  /** What the tag points at; undefined when the file does not hold a digest. */
  digest: string | undefined;
  mtimeMs: number;
}

/** A repository's bookkeeping file: a `_layers` blob link (`digest` set) or its `_access` verdict. */
export interface StoredRecord {
  repository: string;
  digest?: string;
  mtimeMs: number;
}

/** Everything a sweep decides on, read in one walk of the store. */
export interface Inventory {
  blobs: Map<string, StoredBlob>;
  links: StoredLink[];
  tags: StoredTag[];
  /** `_layers` links and `_access` files: removed with what made them (see sweeper). */
  records: StoredRecord[];
}

/** How many stat calls run at once: enough to keep the disk busy, few enough to bound memory. */
const PARALLEL = 64;

/**
 * Walks the store (layout in src/storage/paths.ts). Cost grows with the store, which is why
 * only a sweep does it, never start-up. Files that vanish during the walk are skipped.
 */
export async function readInventory(paths: StorePaths): Promise<Inventory> {
  const [blobs, repositories] = await Promise.all([readBlobs(paths.blobsDir()), readAllRepositories(paths)]);
  return { blobs, ...repositories };
}

/** The default remote's repositories and every other registry's (keys as in paths.ts repositoryKey). */
async function readAllRepositories(paths: StorePaths): Promise<{ links: StoredLink[]; tags: StoredTag[]; records: StoredRecord[] }> {
  const all = { links: [] as StoredLink[], tags: [] as StoredTag[], records: [] as StoredRecord[] };
  for (const { dir, keyPrefix } of await paths.repositoryRoots()) {
    const found = await readRepositories(dir, keyPrefix);
    all.links.push(...found.links);
    all.tags.push(...found.tags);
    all.records.push(...found.records);
  }
  return all;
}

/**
 * Blobs are stat'ed synchronously one prefix directory at a time (about 1/256 of the store),
 * yielding to the event loop between directories: a fraction of the time and garbage of one
 * promise per file (measured: 1.1 s instead of 2.9 s for 100 000 blobs), while a mirror
 * running the pass is never held for more than one directory's worth of stat calls.
 */
async function readBlobs(root: string): Promise<Map<string, StoredBlob>> {
  const blobs = new Map<string, StoredBlob>();
  for (const algorithm of await list(root)) {
    for (const prefix of await list(join(root, algorithm))) {
      const dir = join(root, algorithm, prefix);
      for (const hex of await list(dir)) {
        const info = statSync(join(dir, hex), { throwIfNoEntry: false });
        if (info?.isFile()) blobs.set(`${algorithm}:${hex}`, { size: info.size, mtimeMs: info.mtimeMs });
      }
      await new Promise((resolve) => setImmediate(resolve));
    }
  }
  return blobs;
}

async function readRepositories(root: string, keyPrefix: string): Promise<{ links: StoredLink[]; tags: StoredTag[]; records: StoredRecord[] }> {
  const links: StoredLink[] = [];
  const tags: StoredTag[] = [];
  const records: StoredRecord[] = [];
  const walk = async (dir: string, name: string): Promise<void> => {
    for (const entry of await list(dir)) {
      const path = join(dir, entry);
      if (entry === '_manifests') {
        for (const algorithm of await list(path)) {
          const hexes = await list(join(path, algorithm));
          await mapLimited(hexes, async (hex) => {
            const info = await statOrUndefined(join(path, algorithm, hex));
            if (info?.isFile()) links.push({ repository: name, digest: `${algorithm}:${hex}`, mtimeMs: info.mtimeMs });
          });
        }
      } else if (entry === '_tags') {
        await mapLimited(await list(path), async (tag) => {
          const file = join(path, tag);
          const info = await statOrUndefined(file);
          if (!info?.isFile()) return;
          const content = (await readFile(file, 'utf8').catch(() => '')).trim();
          tags.push({ repository: name, tag, digest: /^[a-z0-9]+:[a-f0-9]+$/.test(content) ? content : undefined, mtimeMs: info.mtimeMs });
        });
      } else if (entry === '_layers') {
        for (const algorithm of await list(path)) {
          await mapLimited(await list(join(path, algorithm)), async (hex) => {
            const info = await statOrUndefined(join(path, algorithm, hex));
            if (info?.isFile()) records.push({ repository: name, digest: `${algorithm}:${hex}`, mtimeMs: info.mtimeMs });
          });
        }
      } else if (entry === '_access') {
        const info = await statOrUndefined(path);
        if (info?.isFile()) records.push({ repository: name, mtimeMs: info.mtimeMs });
      } else if (!entry.startsWith('_') && !entry.startsWith('.')) {
        // Under repositories/, a first component that looks like a registry host is no key of
        // the default remote (those live under registries/): left alone, as nothing serves it.
        if (!name && !keyPrefix && isRegistryHost(entry)) continue;
        await walk(path, name ? `${name}/${entry}` : `${keyPrefix}${entry}`);
      }
    }
  };
  await walk(root, '');
  return { links, tags, records };
}

async function list(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (error) {
    if (isNotFound(error)) return [];
    throw error;
  }
}

async function statOrUndefined(path: string) {
  try {
    return await stat(path);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

/** Runs fn over items, at most PARALLEL at a time. */
export async function mapLimited<T>(items: T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(PARALLEL, items.length) }, worker));
}
