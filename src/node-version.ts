/**
 * The oldest Node pullmirror runs on. Not in package.json's `engines`: the project brings its
 * own Node 24 (the `node` devDependency), so the machine's Node need not be new, and npm would
 * warn about it at every `npm ci` and `npx pullmirror` (a test keeps that dependency new enough). Type
 * stripping of the sources and net's reusePort (the SO_REUSEPORT acceptors; older Nodes fail to
 * listen with a misleading EADDRINUSE). Written without imports or newer syntax, so that an old
 * Node gets as far as this check.
 */
export const REQUIRED_NODE = '22.18.0';

/** A sentence saying what is needed, or undefined when `version` (process.versions.node) is new enough. */
export function nodeVersionProblem(version: string, execPath: string): string | undefined {
  const have = version.split('.').map(Number);
  const need = REQUIRED_NODE.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    if ((have[i] || 0) > need[i]) return undefined;
    if ((have[i] || 0) < need[i]) {
      return (
        `pullmirror needs Node.js ${REQUIRED_NODE} or newer; this is Node ${version} (${execPath}). ` +
        'npm ci installs Node 24 next to the dependencies (node_modules/.bin/node; npm start and npm run use it), ' +
        'or install Node 24 LTS from nodejs.org or your distribution.'
      );
    }
  }
  return undefined;
}
