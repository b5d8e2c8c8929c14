import { stringify } from 'yaml';
import { checkStorage } from '../config/check-storage.ts';
import { printableConfig } from '../config/printable.ts';
import { parseCommand, usageError, type CommandSpec } from './args.ts';
import { loadConfigOrExit } from './config-arg.ts';

export const CONFIG_CHECK: CommandSpec = {
  name: 'config check',
  synopsis: '[options] [config.yml]',
  description: `
Validates a config exactly as serve does before it listens (the schema, REGISTRY_* variables,
then the files it names: htpasswd, TLS certificate and key; on S3, that the bucket answers and
takes the credentials, naming the key at fault) and prints the effective config,
secrets masked; warnings (ignored registry:2 keys, stray REGISTRY_* variables) go to stderr.
Exit status 0 when serve would start, 2 otherwise. The output is itself a config file that
means the same (durations in Go syntax, sizes with a binary unit; a masked secret reads back as
"*****"). Without a file: PULLMIRROR_CONFIG, else the defaults.`,
  options: {},
  examples: ['pullmirror config check /etc/pullmirror/config.yml', 'REGISTRY_HTTP_ADDR=:5000 pullmirror config check'],
  maxPositionals: 1,
};

const CONFIG = { name: 'config' };

/** `pullmirror config check [config.yml]`: exit 0 and the effective config, or exit 2 naming the bad key. */
export async function config(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub === '--help' || sub === '-h') {
    process.stdout.write(`usage: pullmirror config check [options] [config.yml]\n\nsubcommands:\n  check   validate a config as serve does; print it, secrets masked (pullmirror config check --help)\n`);
    return;
  }
  if (sub !== 'check') usageError(CONFIG, sub === undefined ? 'missing subcommand: check' : `unknown subcommand "${sub}"`);
  const { positionals } = parseCommand(CONFIG_CHECK, rest);
  const effective = loadConfigOrExit(positionals[0], { serving: true });
  // The store must be usable as configured: on S3, the bucket reachable and the credentials accepted.
  const problem = await checkStorage(effective);
  if (problem) {
    process.stderr.write(`pullmirror: ${problem}\n`);
    process.exit(2);
  }
  process.stdout.write(stringify(printableConfig(effective)));
  process.stderr.write(`pullmirror: configuration ${positionals[0] ?? process.env.PULLMIRROR_CONFIG ?? '(defaults and environment)'} is valid\n`);
}
