import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import { MemoryDescriptorCache } from './cache/memory-descriptor-cache.ts';
import type { DescriptorCache } from './cache/descriptor-cache.ts';
import type { Config } from './config/schema.ts';
import { errorHandler } from './http/middleware/error-handler.ts';
import { requestContext } from './http/middleware/request-context.ts';
import { registryRouter } from './http/registry-router.ts';
import type { RegistryContext } from './http/context.ts';
import type { Logger } from './logging/logger.ts';
import { ProxyBlobStore } from './proxy/proxy-blob-store.ts';
import { ProxyManifestStore } from './proxy/proxy-manifest-store.ts';
import { RegistryError } from './registry/errors.ts';
import { FilesystemBlobStore } from './storage/blob-store.ts';
import { FilesystemManifestStore } from './storage/manifest-store.ts';
import { StorePaths } from './storage/paths.ts';
import { UpstreamRegistry } from './upstream/upstream-registry.ts';

/** Everything a running mirror is made of; main.ts listens with `app` and closes the rest. */
export interface Mirror {
  app: Express;
  context: RegistryContext;
  upstream: UpstreamRegistry;
  close(): Promise<void>;
}

/** The composition root: config → storage → caches → upstream → routes. */
export function createMirror(config: Config, logger: Logger): Mirror {
  const paths = new StorePaths(config.storage.filesystem.rootdirectory);
  const blobStore = new FilesystemBlobStore(paths);
  const manifestStore = new FilesystemManifestStore(paths, blobStore);
  const descriptors: DescriptorCache = createDescriptorCache(config, logger);
  const upstream = new UpstreamRegistry({
    url: config.proxy.remoteurl,
    username: config.proxy.username,
    password: config.proxy.password,
    timeouts: config.proxy.timeouts,
    logger: logger.child({ component: 'upstream' }),
  });
  const context: RegistryContext = {
    blobs: new ProxyBlobStore({ blobs: blobStore, cache: descriptors, logger: logger.child({ component: 'blobs' }) }),
    manifests: new ProxyManifestStore({ manifests: manifestStore, logger: logger.child({ component: 'manifests' }) }),
    // One upstream today; `ns` (containerd) must name it when present.
    upstreamFor: (ns) => (ns === undefined || upstream.servesNamespace(ns) ? upstream : undefined),
    logger,
  };

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(requestContext(logger, { accessLog: !config.log.accesslog.disabled }));
  app.use((_req: Request, res: Response, next: NextFunction) => {
    res.setHeader('Docker-Distribution-API-Version', 'registry/2.0');
    for (const [name, values] of Object.entries(config.http.headers)) res.setHeader(name, values);
    next();
  });
  app.use('/v2', registryRouter(context));
  app.use(() => {
    throw new RegistryError('NOT_FOUND', 'no such endpoint');
  });
  app.use(errorHandler(logger));

  return {
    app,
    context,
    upstream,
    async close() {
      await upstream.close();
      await descriptors.close();
    },
  };
}

function createDescriptorCache(config: Config, logger: Logger): DescriptorCache {
  if (config.storage.cache.blobdescriptor === 'redis') {
    logger.warn('redis descriptor cache not available yet; using the in-process cache');
  }
  return new MemoryDescriptorCache(config.storage.cache.blobdescriptorsize);
}
