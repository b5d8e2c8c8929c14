/*
 * `node src/http/status-page/build-assets.ts DIR` (the first step of npm run build): writes
 * DIR/status-page.js and DIR/status-page.css for the server's bundle to serve. A file of its
 * own, not a block in ./assets.ts: the server's bundle must not carry a "run as a script" test.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { bundleAssets } from './assets.ts';

const dir = process.argv[2];
if (!dir) throw new Error('usage: node src/http/status-page/build-assets.ts OUTDIR');
const assets = await bundleAssets();
await mkdir(dir, { recursive: true });
await writeFile(path.join(dir, 'status-page.js'), assets.script);
await writeFile(path.join(dir, 'status-page.css'), assets.styles);
