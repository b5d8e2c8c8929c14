/**
 * `pullmirror <command> [args]`: each command lives in src/cli/ and is registered here; with no
 * command (or a config file path first) it serves. Loaded by src/main.ts once the Node version
 * is known to be new enough.
 */
import { version } from '../version.ts';
import { parseCommand, type CommandSpec } from './args.ts';

type Command = (args: string[]) => Promise<void>;

export const SERVE: CommandSpec = {
  name: 'serve',
  synopsis: '[options] [config.yml]',
  description: `
Runs the mirror. The config is the file given (distribution's config.yml shape), else
PULLMIRROR_CONFIG, else the defaults (127.0.0.1:5000 → https://registry-1.docker.io, store in
./data), with REGISTRY_* variables over it. Stops cleanly on SIGTERM, letting transfers in
flight finish within http.draintimeout. \`pullmirror config.yml\` and \`pullmirror\` alone serve too.`,
  options: {},
  examples: ['pullmirror serve /etc/pullmirror/config.yml', 'REGISTRY_HTTP_ADDR=:5000 REGISTRY_PROXY_REMOTEURL=https://ghcr.io pullmirror serve'],
  maxPositionals: 1,
};

const serve: Command = async (args) => {
  const { positionals } = parseCommand(SERVE, args);
  const command = await import('./serve.ts');
  return command.serve(positionals);
};

const COMMANDS: Record<string, Command> = {
  serve,
  // Loaded on demand: a maintenance pass need not load the HTTP stack.
  gc: (args) => import('./gc.ts').then((command) => command.gc(args)),
  warm: (args) => import('./warm.ts').then((command) => command.warm(args)),
  stats: (args) => import('./stats.ts').then((command) => command.stats(args)),
  config: (args) => import('./config.ts').then((command) => command.config(args)),
  'client-config': (args) => import('./client-config.ts').then((command) => command.clientConfig(args)),
};

const USAGE = `usage: pullmirror [command] [options] [args]

A pull-through cache mirror for container registries.

commands:
  serve [config.yml]          run the mirror (the default)
  gc [--dry-run] [config.yml] one eviction pass; prints what it removes
  warm IMAGE…                 pull images through a running mirror so it caches them
  stats [config.yml]          the store's figures: blobs, bytes, manifests, repositories, tags
  config check [config.yml]   validate a config as serve does; print it, secrets masked
  client-config KIND --mirror URL [config.yml]
                              what docker, containerd or podman need to pull through the mirror

options:
  -h, --help       this help; \`pullmirror COMMAND --help\` for a command's options
  -v, --version    the version

example:
  pullmirror serve /etc/pullmirror/config.yml
`;


export async function main(argv: string[]): Promise<void> {
  const [first, ...rest] = argv;
  if (first === '--help' || first === '-h' || first === 'help') {
    if (rest[0] && Object.hasOwn(COMMANDS, rest[0])) return COMMANDS[rest[0]](['--help']);
    process.stdout.write(USAGE);
    return;
  }
  if (first === '--version' || first === '-v' || first === 'version') {
    process.stdout.write(`pullmirror ${version()} (Node ${process.versions.node})\n`);
    return;
  }
  if (first !== undefined && Object.hasOwn(COMMANDS, first)) return COMMANDS[first](rest);
  // `pullmirror config.yml` and `pullmirror` keep meaning serve, as they always did.
  if (first === undefined || first.endsWith('.yml') || first.endsWith('.yaml') || first.includes('/')) return serve(argv);
  process.stderr.write(`pullmirror: unknown ${first.startsWith('-') ? 'option' : 'command'} "${first}" (see pullmirror --help)\n`);
  process.exit(2);
}
