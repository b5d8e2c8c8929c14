import { parseArgs } from 'node:util';

/*
 * One way every command reads its command line (node:util parseArgs) and explains itself:
 * `--help` prints usage, what the command does, each option with its default, and an example;
 * a bad option or argument is one line on stderr and exit status 2.
 */

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  /** The value shown in the option's line (`--now TIME`). */
  value?: string;
  /** What the option does; its default is shown after it. */
  help: string;
  /** Applied when the option is absent, and printed as `(default: …)`. */
  default?: string;
  /** Printed instead of `default` when the default depends on the environment. */
  defaultText?: string;
}

export interface CommandSpec {
  /** `gc`, `config check`: as typed after `pullmirror`. */
  name: string;
  /** `[options] [config.yml]`. */
  synopsis: string;
  description: string;
  options: Record<string, OptionSpec>;
  examples: string[];
  /** How many positional arguments the command takes at most (Infinity: any number). */
  maxPositionals: number;
}

export interface ParsedCommand {
  values: Record<string, string | boolean | string[] | undefined>;
  positionals: string[];
}

/** The help text: usage, description, options with defaults, examples. */
export function helpText(spec: CommandSpec): string {
  const options = { ...spec.options, help: { type: 'boolean', short: 'h', help: 'show this help' } as OptionSpec };
  const rows = Object.entries(options).map(([name, option]) => {
    const flag = `${option.short ? `-${option.short}, ` : '    '}--${name}${option.type === 'string' ? ` ${option.value ?? 'VALUE'}` : ''}`;
    const shownDefault = option.defaultText ?? option.default;
    const help = `${option.help}${option.multiple ? ' (repeatable)' : ''}${shownDefault !== undefined ? ` (default: ${shownDefault})` : ''}`;
    return [flag, help] as const;
  });
  const width = Math.max(...rows.map(([flag]) => flag.length));
  return [
    `usage: pullmirror ${spec.name} ${spec.synopsis}`.trimEnd(),
    '',
    spec.description.trim(),
    '',
    'options:',
    ...rows.map(([flag, help]) => `  ${flag.padEnd(width)}  ${help}`),
    '',
    spec.examples.length > 1 ? 'examples:' : 'example:',
    ...spec.examples.map((example) => `  ${example}`),
    '',
  ].join('\n');
}

/** Parses `args` for `spec`; prints help and exits 0 on --help, one line and exits 2 on a mistake. */
export function parseCommand(spec: CommandSpec, args: string[]): ParsedCommand {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean; default?: string }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const [name, option] of Object.entries(spec.options)) {
    options[name] = {
      type: option.type,
      ...(option.short !== undefined ? { short: option.short } : {}),
      ...(option.multiple ? { multiple: true } : {}),
      ...(option.default !== undefined ? { default: option.default } : {}),
    };
  }
  let parsed: ParsedCommand;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true }) as ParsedCommand;
  } catch (error) {
    // parseArgs says "Unknown option '--dryrun'. To specify a positional argument starting with…": its first sentence is the point.
    return usageError(spec, (error as Error).message.split('. ')[0].replace(/\.$/, ''));
  }
  if (parsed.values.help) {
    process.stdout.write(helpText(spec));
    process.exit(0);
  }
  if (parsed.positionals.length > spec.maxPositionals) usageError(spec, `unexpected argument "${parsed.positionals[spec.maxPositionals]}"`);
  return parsed;
}

/** One line naming the mistake and where the help is; exit status 2, as for any usage error. */
export function usageError(spec: { name: string }, message: string): never {
  process.stderr.write(`pullmirror ${spec.name}: ${message} (see pullmirror ${spec.name} --help)\n`);
  process.exit(2);
}
