#!/usr/bin/env node
/**
 * The one binary: `pullmirror <command> [args]` (src/cli/commands.ts). The Node version is
 * checked first, before anything that needs a newer Node is loaded: an old Node hands over to
 * the project's own Node 24 (src/own-node.ts), or, without one, says what is needed instead of
 * failing later with a false reason (EADDRINUSE on a free port, for the SO_REUSEPORT listeners).
 */
import { nodeVersionProblem } from './node-version.ts';
import { handOver, projectNode } from './own-node.ts';

const problem = nodeVersionProblem(process.versions.node, process.execPath);
if (problem) {
  // The Node `npm ci` put next to the dependencies runs it instead, when there is one.
  const own = projectNode(import.meta.url);
  if (own) await handOver(own);
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
const { main } = await import('./cli/commands.ts');
await main(process.argv.slice(2));
