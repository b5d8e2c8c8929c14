import { readFileSync } from 'node:fs';
import { formatBytes } from '../util/format-bytes.ts';
import { parseCommand, usageError as commandUsageError, type CommandSpec } from './args.ts';
import { parsePlatform, warmImages, type ImageResult, type WarmProgress } from '../warm/warm.ts';

export const WARM: CommandSpec = {
  name: 'warm',
  synopsis: '[options] IMAGE…',
  description: `
Pulls images through a running mirror so it caches them, as a client would: the manifest, then
every blob (a blob the mirror already holds is not downloaded again). An index is warmed for
every platform, or only the --platform ones. IMAGE is alpine:3.20, library/alpine@sha256:…,
docker.io/team/app:v1. Shows progress on a terminal, plain lines otherwise, then a summary;
exits 1 if any image failed. With --user (the mirror's own htpasswd account) the password comes
from PULLMIRROR_PASSWORD, never from the command line.`,
  options: {
    mirror: { type: 'string', value: 'URL', help: 'the mirror to warm', default: process.env.PULLMIRROR_URL ?? 'http://127.0.0.1:5000', defaultText: `${process.env.PULLMIRROR_URL ?? 'http://127.0.0.1:5000'}, or PULLMIRROR_URL` },
    platform: { type: 'string', multiple: true, value: 'OS/ARCH[/VARIANT]', help: 'only this platform of an index', defaultText: 'every platform' },
    file: { type: 'string', short: 'f', multiple: true, value: 'LIST', help: 'read more images from a file, one a line (# starts a comment)' },
    concurrency: { type: 'string', value: 'N', help: 'images warmed at once', default: '4' },
    user: { type: 'string', value: 'USER', help: "the mirror's account (auth.htpasswd); password from PULLMIRROR_PASSWORD", defaultText: process.env.PULLMIRROR_USER ? `${process.env.PULLMIRROR_USER}, from PULLMIRROR_USER` : 'none, or PULLMIRROR_USER' },
  },
  examples: ['pullmirror warm --mirror http://mirror:5000 alpine:3.20 node:24 --platform linux/amd64', 'pullmirror warm --file images.txt'],
  maxPositionals: Infinity,
};

/** `pullmirror warm IMAGE…`: pre-fetches images through a mirror's HTTP API. */
export async function warm(args: string[]): Promise<void> {
  const parsed = parseCommand(WARM, args);
  const values = parsed.values as { mirror: string; platform?: string[]; file?: string[]; concurrency: string; user?: string };
  values.user ??= process.env.PULLMIRROR_USER;
  const positionals = parsed.positionals;
  const images = [...positionals];
  for (const file of values.file ?? []) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      return usageError(`cannot read ${file}: ${(error as Error).message}`);
    }
    images.push(...text.split('\n').map((line) => line.replace(/#.*/, '').trim()).filter(Boolean));
  }
  if (images.length === 0) return usageError('no image given');
  const concurrency = Number(values.concurrency);
  if (!Number.isInteger(concurrency) || concurrency < 1) return usageError('--concurrency: expected a positive integer');
  let platforms;
  try {
    platforms = values.platform?.map(parsePlatform);
  } catch (error) {
    return usageError((error as Error).message);
  }
  try {
    new URL(values.mirror);
  } catch {
    return usageError(`--mirror: not a URL: ${values.mirror}`);
  }

  let credentials;
  if (values.user) {
    const password = process.env.PULLMIRROR_PASSWORD;
    if (password === undefined) return usageError('--user needs the password in PULLMIRROR_PASSWORD');
    credentials = { username: values.user, password };
  }

  const bar = process.stderr.isTTY ? new ProgressLine() : undefined;
  const summary = await warmImages(images, {
    mirror: values.mirror,
    platforms,
    concurrency,
    credentials,
    onProgress: (progress) => bar?.draw(progress),
    onImage: (result) => {
      bar?.clear();
      process.stdout.write(`${describeImage(result)}\n`);
    },
  });
  bar?.clear();
  const ok = summary.images.length - summary.failed;
  process.stdout.write(
    `warmed ${ok} of ${summary.images.length} image(s), ${summary.blobs} distinct blob(s): ` +
      `${formatBytes(summary.fetchedBytes)} fetched into the cache, ${formatBytes(summary.cachedBytes)} already cached, ` +
      `in ${(summary.ms / 1000).toFixed(1)} s\n`,
  );
  if (summary.failed > 0) process.exitCode = 1;
}

function describeImage(result: ImageResult): string {
  if (!result.ok) return `✗ ${result.ref}: ${result.error}`;
  const platforms = result.platforms.length === 1 && result.platforms[0] === 'image' ? '' : ` [${result.platforms.join(', ')}]`;
  const shared = result.sharedBlobs > 0 ? ` (${result.sharedBlobs} shared with an image above)` : '';
  return `✓ ${result.ref}${platforms}: ${result.blobs} blob(s)${shared}, ${formatBytes(result.fetchedBytes)} fetched, ${formatBytes(result.cachedBytes)} already cached`;
}


/** One line redrawn in place on a terminal: a bar over the bytes known so far. */
class ProgressLine {
  private last = 0;
  private shown = false;

  draw(p: WarmProgress): void {
    const now = performance.now();
    if (now - this.last < 100 && p.doneBytes < p.totalBytes) return;
    this.last = now;
    const width = 30;
    const ratio = p.totalBytes > 0 ? Math.min(1, p.doneBytes / p.totalBytes) : 0;
    const filled = Math.round(ratio * width);
    const line =
      `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(ratio * 100).toFixed(0).padStart(3)}% ` +
      `${formatBytes(p.doneBytes)} / ${formatBytes(p.totalBytes)}  blobs ${p.blobsDone}/${p.blobs}  ` +
      `images ${p.imagesDone}/${p.images}${p.current ? `  ${p.current}` : ''}`;
    const columns = process.stderr.columns || 100;
    process.stderr.write(`\r\x1b[2K${line.slice(0, columns - 1)}`);
    this.shown = true;
  }

  clear(): void {
    if (this.shown) process.stderr.write('\r\x1b[2K');
    this.shown = false;
  }
}

function usageError(message: string): never {
  return commandUsageError(WARM, message);
}
