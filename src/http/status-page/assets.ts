/*
 * The status page's script and stylesheet. `npm run build` writes them beside the server's
 * bundle (dist/status-page.js and .css, by ./build-assets.ts); the bundle reads them from there
 * at start. Run from the sources (`node src/main.ts`, the e2e suites), the server bundles
 * ./client with esbuild's API at start instead, so the page always matches the sources and
 * needs no build step.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface StatusPageAssets {
  script: Buffer;
  styles: Buffer;
}

const FROM_SOURCES = import.meta.url.endsWith('.ts');
const CLIENT = fileURLToPath(new URL('./client/', import.meta.url));

/** Loads (the bundle) or builds (the sources) the page's script and stylesheet. */
export async function statusPageAssets(): Promise<StatusPageAssets> {
  if (FROM_SOURCES) return bundleAssets();
  const [script, styles] = await Promise.all([readFile(new URL('./status-page.js', import.meta.url)), readFile(new URL('./status-page.css', import.meta.url))]);
  return { script, styles };
}

/** esbuild over ./client: one script for browsers of the last few years, one stylesheet. */
export async function bundleAssets(): Promise<StatusPageAssets> {
  // A devDependency, imported only from the sources (the server's bundle marks it external).
  const esbuild = await import('esbuild').catch((error: Error) => {
    throw new Error(`the status page's script is built from src/http/status-page/client by esbuild, a devDependency (npm ci installs it; the bundle, npm start, needs none): ${error.message}`);
  });
  let result: Awaited<ReturnType<typeof esbuild.build<{ write: false }>>>;
  try {
    result = await esbuild.build({
      entryPoints: { 'status-page': path.join(CLIENT, 'main.ts'), 'status-page-styles': path.join(CLIENT, 'styles.css') },
      bundle: true,
      write: false,
      outdir: 'out',
      format: 'iife',
      platform: 'browser',
      target: ['es2022', 'chrome100', 'firefox100', 'safari15'],
      minify: true,
      legalComments: 'none',
      logLevel: 'warning',
    });
  } finally {
    // Its service process ends with the build: a server keeps no esbuild child around.
    await esbuild.stop();
  }
  const file = (ext: string) => {
    const out = result.outputFiles.find((f) => f.path.endsWith(ext));
    if (!out) throw new Error(`esbuild wrote no ${ext} for the status page`);
    return Buffer.from(out.contents);
  };
  return { script: file('.js'), styles: file('.css') };
}
