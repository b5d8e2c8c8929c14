#!/usr/bin/env node
/**
 * The one binary: `pullmirror <command> [args]`. Each command lives in src/cli/ and is
 * registered here; with no command (or a config file path first) it serves.
 */
import { serve } from './cli/serve.ts';

type Command = (args: string[]) => Promise<void>;

const COMMANDS: Record<string, Command> = {
  serve,
  // Loaded on demand: a maintenance pass need not load the HTTP stack.
  gc: (args) => import('./cli/gc.ts').then((command) => command.gc(args)),
  warm: (args) => import('./cli/warm.ts').then((command) => command.warm(args)),
  stats: (args) => import('./cli/stats.ts').then((command) => command.stats(args)),
  config: (args) => import('./cli/config.ts').then((command) => command.config(args)),
};

const USAGE = `usage: pullmirror [command] [args]
commands:
  serve [config.yml]   run the mirror (the default)
  gc [--dry-run] [--now TIME] [config.yml]   one eviction pass; prints what it removes
  warm IMAGE…          pull images through a running mirror so it caches them (--help for options)
  stats [config.yml]   the store's figures: blobs, bytes, manifests, repositories, tags
  config check [file]  validate a config and print the effective one, secrets masked
`;

async function main(argv: string[]): Promise<void> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h' || first === 'help') {
    process.stdout.write(USAGE);
    return;
  }
  if (first !== undefined && Object.hasOwn(COMMANDS, first)) return COMMANDS[first](rest);
  // `pullmirror config.yml` and `pullmirror` keep meaning serve, as they always did.
  if (first === undefined || first.endsWith('.yml') || first.endsWith('.yaml') || first.includes('/')) return serve(argv);
  process.stderr.write(`pullmirror: unknown command "${first}"\n${USAGE}`);
  process.exit(2);
}

await main(process.argv.slice(2));
