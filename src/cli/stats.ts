import { parseArgs } from 'node:util';
import parseBytes from 'bytes';
import { StorePaths } from '../storage/paths.ts';
import { computeStoreFigures } from '../storage/store-stats.ts';
import { loadConfigOrExit } from './config-arg.ts';

/**
 * `pullmirror stats [config.yml] [--json]`: the figures of the store the config names, read
 * from the disk (no running mirror needed).
 */
export async function stats(args: string[]): Promise<void> {
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { json: { type: 'boolean' } } });
  const config = loadConfigOrExit(positionals[0]);
  const root = config.storage.filesystem.rootdirectory;
  const figures = await computeStoreFigures(new StorePaths(root));
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ root, ...figures }, null, 2)}\n`);
    return;
  }
  const size = (n: number) => `${parseBytes.format(n, { unitSeparator: ' ', decimalPlaces: 1 })} (${n} bytes)`;
  const layerCount = figures.blobs - figures.manifests;
  const rows: [string, string][] = [
    ['store', root],
    ['blobs', `${figures.blobs}, ${size(figures.bytes)}`],
    ['  manifests', `${figures.manifests}, ${size(figures.manifestBytes)}`],
    ['  layers and configs', `${layerCount}, ${size(figures.bytes - figures.manifestBytes)}`],
    ['repositories', String(figures.repositories)],
    ['tags', String(figures.tags)],
    ['temporary files', `${figures.tempFiles}, ${size(figures.tempBytes)}`],
  ];
  const width = Math.max(...rows.map(([label]) => label.length));
  process.stdout.write(rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n') + '\n');
}
