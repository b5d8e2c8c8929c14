/**
 * The e2e world: a Docker-Hub-style token server, a real docker-registry behind it as the
 * upstream, a counting/fault-injecting proxy in front of that registry, and pullmirror pointed
 * at the proxy with its own upstream account.
 */
import { skipUnlessBinaries } from '../support/processes.ts';
import { startMirror, type MirrorOptions, type RunningMirror } from '../support/mirror.ts';
import { startUpstreamRegistry, type RegistryServer } from '../support/registry.ts';
import { startTokenServer, type TokenServer } from '../support/token-server.ts';
import { startUpstreamProxy, type UpstreamProxy } from '../support/upstream-proxy.ts';

export const PUSHER = { username: 'pusher', password: 'push-secret-4711' };
export const MIRROR_ACCOUNT = { username: 'mirror', password: 'mirror-secret-0815' };

export interface World {
  tokens: TokenServer;
  registry: RegistryServer;
  proxy: UpstreamProxy;
  startMirror(options?: Partial<MirrorOptions>): Promise<RunningMirror>;
  close(): Promise<void>;
}

/** Skip reason when the real servers are missing locally (CI fails instead). */
export const missingBinaries = skipUnlessBinaries(['docker-registry', 'skopeo', 'openssl']);

export async function startWorld(options: { privateRepos?: string[] } = {}): Promise<World> {
  const tokens = await startTokenServer({
    users: { [PUSHER.username]: PUSHER.password, [MIRROR_ACCOUNT.username]: MIRROR_ACCOUNT.password },
    privateRepos: options.privateRepos,
  });
  const registry = await startUpstreamRegistry({ tokenServer: tokens });
  const proxy = await startUpstreamProxy(registry.url);
  const mirrors: RunningMirror[] = [];
  return {
    tokens,
    registry,
    proxy,
    async startMirror(mirrorOptions = {}) {
      const mirror = await startMirror({ remoteurl: proxy.url, ...MIRROR_ACCOUNT, ...mirrorOptions });
      mirrors.push(mirror);
      return mirror;
    },
    async close() {
      await Promise.all(mirrors.map((mirror) => mirror.stop()));
      await proxy.close();
      await registry.stop();
      await tokens.close();
    },
  };
}
