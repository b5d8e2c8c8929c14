import { ConfigError, loadConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';

/**
 * The configuration every command starts from: the file named on the command line (or in
 * PULLMIRROR_CONFIG), else the defaults, with REGISTRY_* overrides. A bad config exits 2
 * with a message naming the key.
 */
export function loadConfigOrExit(file: string | undefined): Config {
  try {
    return loadConfig({ file: file ?? process.env.PULLMIRROR_CONFIG });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`pullmirror: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}
