#!/usr/bin/env node
/**
 * The one binary: `pullmirror <command> [args]` (src/cli/commands.ts). The Node version is
 * checked first, before anything that needs a newer Node is loaded: an old Node would otherwise
 * fail later with a false reason (EADDRINUSE on a free port, for the SO_REUSEPORT listeners).
 */
import { nodeVersionProblem } from './node-version.ts';

const problem = nodeVersionProblem(process.versions.node, process.execPath);
if (problem) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
const { main } = await import('./cli/commands.ts');
await main(process.argv.slice(2));
