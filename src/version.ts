import { readFileSync } from 'node:fs';

/**
 * package.json's version. This file sits one level below it both as a source file (src/) and
 * bundled (dist/pullmirror.mjs), so one relative path finds it either way.
 */
export function version(): string {
  try {
    const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { name?: string; version?: string };
    if (manifest.name === 'pullmirror' && manifest.version) return manifest.version;
  } catch {
    // not installed next to its package.json
  }
  return 'unknown';
}
