import { stringify } from 'yaml';
import { maskSecrets } from '../config/load.ts';
import { loadConfigOrExit } from './config-arg.ts';

const USAGE = `usage: pullmirror config check [config.yml]
  Validates a config (with REGISTRY_* overrides) and prints the effective one, secrets masked.
  Durations are printed in milliseconds and sizes in bytes, as the mirror uses them.
`;

/** `pullmirror config check [config.yml]`: exit 0 and the effective config, or exit 2 naming the bad key. */
export async function config(args: string[]): Promise<void> {
  const [sub, ...rest] = args;
  if (sub !== 'check' || rest.length > 1) {
    process.stderr.write(USAGE);
    process.exitCode = 2;
    return;
  }
  const effective = loadConfigOrExit(rest[0], { serving: true });
  process.stdout.write(stringify(maskSecrets(effective)));
  process.stderr.write(`pullmirror: configuration ${rest[0] ?? process.env.PULLMIRROR_CONFIG ?? '(defaults and environment)'} is valid\n`);
}
