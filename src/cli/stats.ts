import { createStorageDriver } from '../storage/driver/create-driver.ts';
import { StorePaths } from '../storage/paths.ts';
import { computeStoreFigures, type StoreFigures } from '../storage/store-stats.ts';
import { formatBytes } from '../util/format-bytes.ts';
import { pluralPlain } from '../util/plural.ts';
import { parseCommand, type CommandSpec } from './args.ts';
import { loadConfigOrExit } from './config-arg.ts';

export const STATS: CommandSpec = {
  name: 'stats',
  synopsis: '[options] [config.yml]',
  description: `
The figures of the store the config names, read from the disk (no running mirror needed):
blobs and bytes, manifests, layers and configs, repositories, tags, temporary files. The config
is the file given, else PULLMIRROR_CONFIG, else the defaults, with REGISTRY_* variables over it.`,
  options: { json: { type: 'boolean', help: 'print the figures as JSON' } },
  examples: ['pullmirror stats /etc/pullmirror/config.yml', 'REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY=/var/lib/pullmirror pullmirror stats --json'],
  maxPositionals: 1,
};

/**
 * `pullmirror stats [config.yml] [--json]`: the figures of the store the config names, read
 * from the disk (no running mirror needed).
 */
export async function stats(args: string[]): Promise<void> {
  const { values, positionals } = parseCommand(STATS, args);
  const config = loadConfigOrExit(positionals[0]);
  const paths = new StorePaths(config.storage.filesystem.rootdirectory);
  // What the figures are of: the directory, or the bucket and the prefix in it.
  const s3 = config.storage.s3;
  const root = s3 ? `s3://${s3.bucket}/${(s3.rootdirectory ?? '').replace(/^\/+/, '')}` : paths.root;
  // The store the config names (a directory or a bucket); stats only reads.
  const driver = await createStorageDriver(config, { tempDir: paths.tmpDir() });
  const figures = await computeStoreFigures({ driver, paths, spool: s3?.spooldirectory }).finally(() => driver.close());
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ root, ...figures }, null, 2)}\n`);
    return;
  }
  process.stdout.write(statsReport(root, figures, config.proxy.namespace));
}

/** The figures as `stats` prints them: a label and its value a line, the labels aligned. */
export function statsReport(root: string, figures: StoreFigures, defaultNamespace: string): string {
  const size = (n: number) => `${formatBytes(n)} (${n} bytes)`;
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
  // Other registries (proxy.remotes) each on a line of their own, once there are any.
  const counts = ({ repositories, tags }: { repositories: number; tags: number }) =>
    `${pluralPlain(repositories, 'repository', 'repositories')}, ${pluralPlain(tags, 'tag')}`;
  const others = Object.entries(figures.registries).filter(([namespace]) => namespace !== '');
  if (others.length > 0) {
    rows.push([`  ${defaultNamespace} (default)`, counts(figures.registries[''] ?? { repositories: 0, tags: 0 })]);
    for (const [namespace, registry] of others) rows.push([`  ${namespace}`, counts(registry)]);
  }
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n') + '\n';
}
