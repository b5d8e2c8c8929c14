import assert from 'node:assert/strict';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import winston from 'winston';
import { loadConfig } from '../../src/config/load.ts';
import { RegistryError } from '../../src/registry/errors.ts';
import { parseDigest } from '../../src/registry/digest.ts';
import { repositoryKey, splitRepositoryKey, StorePaths } from '../../src/storage/paths.ts';
import { Remotes } from '../../src/upstream/remotes.ts';

const logger = winston.createLogger({ silent: true });

describe('routing a request to one of several registries', () => {
  const config = loadConfig({
    env: {
      REGISTRY_PROXY_REMOTEURL: 'http://127.0.0.1:9',
      REGISTRY_PROXY_NAMESPACE: 'docker.io',
      REGISTRY_PROXY_REMOTES: '[{namespace: ghcr.io, remoteurl: "http://127.0.0.1:9", prefix: ghcr}, {namespace: "registry.local:5000", remoteurl: "http://127.0.0.1:9"}]',
    },
  });
  const remotes = new Remotes(config, logger);
  after(() => remotes.close());
  const route = (ns: string | undefined, name: string) => {
    const { remote, name: routed } = remotes.route(ns, name);
    return `${remote.namespace} ${routed} ${remote.key(routed)}`;
  };
  const code = (fn: () => unknown) => {
    try {
      fn();
      return 'routed';
    } catch (error) {
      return error instanceof RegistryError ? error.code : String(error);
    }
  };

  it('takes ?ns= first, then a registry host or alias as first component, else the default', () => {
    assert.equal(route(undefined, 'alpine'), 'docker.io library/alpine library/alpine');
    assert.equal(route(undefined, 'team/app'), 'docker.io team/app team/app');
    assert.equal(route('docker.io', 'alpine'), 'docker.io library/alpine library/alpine');
    assert.equal(route('index.docker.io', 'team/app'), 'docker.io team/app team/app');
    assert.equal(route('registry-1.docker.io', 'team/app'), 'docker.io team/app team/app');
    assert.equal(route('ghcr.io', 'owner/image'), 'ghcr.io owner/image ghcr.io/owner/image');
    assert.equal(route(undefined, 'ghcr.io/owner/image'), 'ghcr.io owner/image ghcr.io/owner/image');
    assert.equal(route(undefined, 'ghcr/owner/image'), 'ghcr.io owner/image ghcr.io/owner/image');
    assert.equal(route(undefined, 'docker.io/alpine'), 'docker.io library/alpine library/alpine');
    // library/ is Docker Hub's rule only.
    assert.equal(route(undefined, 'ghcr.io/image'), 'ghcr.io image ghcr.io/image');
    assert.equal(route(undefined, 'registry.local:5000/team/app'), 'registry.local:5000 team/app registry.local:5000/team/app');
    // A default-registry name that looks like a registry host (by ?ns= only) keeps a key of its own.
    assert.equal(route('docker.io', 'foo.bar/app'), 'docker.io foo.bar/app docker.io/foo.bar/app');
  });

  it('answers NAME_UNKNOWN for a registry it does not serve, NAME_INVALID for a bad name', () => {
    assert.equal(code(() => remotes.route('quay.io', 'team/app')), 'NAME_UNKNOWN');
    assert.equal(code(() => remotes.route('quay.io', '../app')), 'NAME_INVALID', 'a bad name first');
    assert.equal(code(() => remotes.route(undefined, 'quay.io/../app')), 'NAME_INVALID');
    assert.equal(code(() => remotes.route(undefined, 'quay.io/team/app')), 'NAME_UNKNOWN');
    assert.equal(code(() => remotes.route(undefined, 'ghcr.io/Bad')), 'NAME_INVALID');
    assert.equal(code(() => remotes.route(undefined, '../etc/passwd')), 'NAME_INVALID', 'a dot does not make .. a registry');
    assert.equal(code(() => remotes.route(undefined, 'a..b/x')), 'NAME_INVALID');
    assert.equal(code(() => remotes.route(undefined, 'ghcr.io')), 'routed', 'one component: a name on the default remote');
  });

  it('gives each remote its own upstream client, credentials and policies', () => {
    const [hub, ghcr] = remotes.all;
    assert.notEqual(hub.upstream, ghcr.upstream);
    assert.equal(ghcr.upstream.namespace, 'ghcr.io');
    assert.equal(hub.upstream.namespace, 'docker.io');
    assert.equal(ghcr.policy.tagFreshnessMs, 15_000);
  });
});

describe('store keys of repositories', () => {
  it('keep the default remote at repositories/<name> and others under registries/<namespace>/', () => {
    const paths = new StorePaths('/store');
    const digest = parseDigest(`sha256:${'a'.repeat(64)}`);
    const hub = { namespace: 'docker.io', isDefault: true };
    const ghcr = { namespace: 'ghcr.io', isDefault: false };
    assert.equal(paths.tag(repositoryKey(hub, 'library/alpine'), '3'), path.join('/store/repositories/library/alpine/_tags/3'));
    assert.equal(paths.manifestLink(repositoryKey(ghcr, 'owner/image'), digest), path.join(`/store/registries/ghcr.io/repositories/owner/image/_manifests/sha256/${'a'.repeat(64)}`));
    assert.equal(paths.accessVerdict(repositoryKey(hub, 'foo.bar/app')), path.join('/store/registries/docker.io/repositories/foo.bar/app/_access'));
    assert.deepEqual(splitRepositoryKey('ghcr.io/owner/image'), { namespace: 'ghcr.io', name: 'owner/image' });
    assert.deepEqual(splitRepositoryKey('library/alpine'), { name: 'library/alpine' });
    assert.deepEqual(splitRepositoryKey('alpine'), { name: 'alpine' });
  });
});
