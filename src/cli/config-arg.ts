import { checkFiles } from '../config/check.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import type { Logger } from '../logging/logger.ts';

const warningsOf = new WeakMap<Config, string[]>();

/**
 * The configuration every command starts from: the file named on the command line (or in
 * PULLMIRROR_CONFIG), else the defaults, with REGISTRY_* overrides. A bad config exits 2
 * with a message naming the key. With `serving` (serve and config check: one validation path
 * for both) the files the config names are checked too; with `secrets: false` password files
 * are not read (a command that needs none). Warnings (stray REGISTRY_* variables,
 * ignored registry:2 keys) go to stderr, or to the log of a server (logConfigWarnings).
 */
export function loadConfigOrExit(file: string | undefined, options: { serving?: boolean; logWarnings?: boolean; secrets?: boolean } = {}): Config {
  const warnings: string[] = [];
  let config: Config;
  try {
    config = loadConfig({ file: file ?? process.env.PULLMIRROR_CONFIG, warnings, secrets: options.secrets });
  } catch (error) {
    if (error instanceof ConfigError) exitWith(error.message);
    throw error;
  }
  if (options.serving) {
    const problems = checkFiles(config);
    if (problems.length > 0) exitWith(`invalid configuration:\n  ${problems.join('\n  ')}`);
  }
  if (options.logWarnings) warningsOf.set(config, warnings);
  else for (const warning of warnings) process.stderr.write(`pullmirror: warning: ${warning}\n`);
  return config;
}

/** The server's warnings about its config, once each, as log lines (after the logger exists). */
export function logConfigWarnings(config: Config, logger: Logger): void {
  for (const warning of warningsOf.get(config) ?? []) logger.warn('configuration', { warning });
  warningsOf.delete(config);
}

function exitWith(message: string): never {
  process.stderr.write(`pullmirror: ${message}\n`);
  process.exit(2);
}
