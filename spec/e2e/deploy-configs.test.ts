/**
 * Every config this repository ships is one a platform team runs as it is: compose.yaml,
 * deploy/fleet/compose.yaml, the Kubernetes variants (rendered by `kubectl kustomize`), the
 * systemd unit, the Dockerfile and deploy/config.yml each pass `pullmirror config check` (the
 * built bundle) with exactly the variables they set, and without a warning; a renamed key or
 * variable fails. The Kubernetes manifests keep what a user would check (probes, grace, volumes,
 * the Secret, scrape annotations) and render without a warning, alone and with each optional
 * component, whose objects do what they are for (the ServiceMonitor scrapes the metrics port, the
 * NetworkPolicies admit clients and scrapes, the node DaemonSet's script writes hosts.toml, the
 * warm CronJob's command line warms its list); the Prometheus rules pass promtool and their unit
 * tests; and every metric the rules and the Grafana dashboard name is exported by a running mirror.
 */
import assert from 'node:assert/strict';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { parse, parseAllDocuments, stringify } from 'yaml';
import { configSchema } from '../../src/config/schema.ts';
import { pushImage, randomLayer } from '../support/images.ts';
import { cleanEnv, isCI, requireBinary, tempDir } from '../support/processes.ts';
import { skipUnlessS3, startS3 } from '../support/s3.ts';
import { skopeoCopy } from '../support/skopeo.ts';
import { eventually } from '../support/wait.ts';
import { missingBinaries, PUSHER, startWorld, type World } from './fixtures.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BUNDLE = path.join(ROOT, 'dist/pullmirror.mjs');
const run = promisify(execFile);
const work = tempDir('pullmirror-deploy-configs');
after(() => work.cleanup());

type Env = Record<string, string>;
interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

async function exec(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<Result> {
  try {
    const { stdout, stderr } = await run(cmd, args, { env, timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

let fileCount = 0;
function writeTemp(name: string, text: string): string {
  const file = path.join(work.path, `${fileCount++}-${name}`);
  writeFileSync(file, text);
  return file;
}

/**
 * `pullmirror config check FILE` run by the built bundle (what the image and the unit run) with
 * only `env` (none of this machine's REGISTRY_*, PULLMIRROR_* or REDIS_* variables).
 */
async function configCheck(file: string, env: Env): Promise<Result & { effective?: any }> {
  const result = await exec(process.execPath, [BUNDLE, 'config', 'check', file], { ...cleanEnv(['REGISTRY_', 'PULLMIRROR_', 'REDIS_']), ...env });
  // What it prints is a config (durations in Go syntax, sizes with a unit): read back through
  // the schema, it gives milliseconds and bytes, as the mirror uses them.
  return { ...result, effective: result.code === 0 ? configSchema.parse(parse(result.stdout)) : undefined };
}

/**
 * What is wrong with a config as shipped: a refusal (exit 2 naming the key) or any warning. A
 * warning counts, because a misspelt REGISTRY_* variable is only warned about at start (it could
 * be Kubernetes' own REGISTRY_PORT) and would silently configure nothing.
 */
function problemsOf(result: Result): string[] {
  const warnings = result.stderr.split('\n').filter((line) => /^pullmirror: warning:/.test(line));
  return result.code === 0 ? warnings : [`exit ${result.code}: ${result.stderr.trim()}`, ...warnings];
}

async function assertPasses(what: string, file: string, env: Env) {
  const result = await configCheck(file, env);
  assert.deepEqual(problemsOf(result), [], `${what}: config check ${file} with ${JSON.stringify(env)}`);
  return result.effective;
}

/** Milliseconds as config check prints durations. */
const seconds = (ms: number) => ms / 1000;
const portOf = (addr: string) => Number(addr.slice(addr.lastIndexOf(':') + 1));

// ---- The Dockerfile -------------------------------------------------------------------------

interface Dockerfile {
  env: Env;
  copies: { from?: string; src: string; dest: string }[];
  cmd: string[];
  user?: string;
  workdir?: string;
  volumes: string[];
  exposed: number[];
}

/** The final stage of deploy/Dockerfile, instruction by instruction (continuations joined). */
function readDockerfile(): Dockerfile {
  const text = readFileSync(path.join(ROOT, 'deploy/Dockerfile'), 'utf8').replace(/\\\n/g, ' ');
  const lines = text.split('\n').map((line) => line.trim()).filter((line) => line && !line.startsWith('#'));
  const stages: string[][] = [];
  for (const line of lines) {
    if (/^FROM\s/i.test(line)) stages.push([]);
    stages.at(-1)?.push(line);
  }
  const out: Dockerfile = { env: {}, copies: [], cmd: [], volumes: [], exposed: [] };
  for (const line of stages.at(-1) ?? []) {
    const [, instruction, rest] = /^(\w+)\s+(.*)$/.exec(line) ?? [];
    switch (instruction?.toUpperCase()) {
      case 'ENV':
        for (const [, key, value] of rest.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)) out.env[key] = value.replace(/^"|"$/g, '');
        break;
      case 'COPY': {
        const words = rest.split(/\s+/);
        const from = words[0].startsWith('--from=') ? words.shift()!.slice('--from='.length) : undefined;
        out.copies.push({ from, src: words[0], dest: words.at(-1)! });
        break;
      }
      case 'CMD':
        out.cmd = JSON.parse(rest);
        break;
      case 'USER':
        out.user = rest;
        break;
      case 'WORKDIR':
        out.workdir = rest;
        break;
      case 'VOLUME':
        out.volumes.push(...(rest.startsWith('[') ? JSON.parse(rest) : rest.split(/\s+/)));
        break;
      case 'EXPOSE':
        out.exposed.push(...rest.split(/\s+/).map((port) => Number(port.split('/')[0])));
        break;
    }
  }
  return out;
}

/** The config file the image serves (its CMD's), and the repository file COPY puts there. */
function imageConfig(image: Dockerfile): { containerPath: string; source: string } {
  const containerPath = image.cmd.at(-1)!;
  const copy = image.copies.find((c) => c.from === undefined && c.dest === containerPath);
  assert.ok(copy, `the image's CMD serves ${containerPath}, which a COPY of the repository must provide`);
  return { containerPath, source: path.join(ROOT, copy.src) };
}

// ---- Compose --------------------------------------------------------------------------------

/** Compose's interpolation for variables the user has not set: `${X:-default}` → default, `${X}` → "". */
function interpolateUnset(value: string): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}/g, (whole, _name, fallback) => (whole === '$$' ? '$' : (fallback ?? '')));
}

function composeEnvironment(service: any): Env {
  const environment = service.environment ?? {};
  const entries: [string, string][] = Array.isArray(environment)
    ? environment.map((item: string) => [item.split('=')[0], item.split('=').slice(1).join('=')])
    : Object.entries(environment).map(([key, value]) => [key, typeof value === 'string' ? value : JSON.stringify(value ?? '')]);
  return Object.fromEntries(entries.map(([key, value]) => [key, interpolateUnset(value)]));
}

/** Services of a compose file built from deploy/Dockerfile: the mirror's instances. */
function mirrorServices(file: string): [string, any][] {
  const compose = parse(readFileSync(path.join(ROOT, file), 'utf8'), { merge: true });
  return Object.entries<any>(compose.services).filter(([, service]) => service.build?.dockerfile === 'deploy/Dockerfile');
}

// ---- Kubernetes -----------------------------------------------------------------------------

let kubectlMinor: number | undefined;

/**
 * kubectl, new enough for the manifests' kustomize syntax: resources naming directories,
 * `patches:` and `components:` need kubectl 1.21 (kustomize v4); Debian 12's kubernetes-client is
 * 1.20. Too old is treated as missing: skipped here, a failure in CI.
 */
function requireKubectl(t: { skip(message?: string): void }): boolean {
  if (!requireBinary('kubectl', t)) return false;
  kubectlMinor ??= Number.parseInt(JSON.parse(execFileSync('kubectl', ['version', '--client', '-o', 'json'], { encoding: 'utf8' })).clientVersion.minor, 10);
  if (kubectlMinor >= 21) return true;
  const message = `kubectl 1.${kubectlMinor} is older than 1.21: its kustomize cannot read deploy/kubernetes (README, "Kubernetes")`;
  if (isCI()) throw new Error(message);
  t.skip(message);
  return false;
}

/** The optional parts under deploy/kubernetes/components, each a directory a variant may list. */
const COMPONENTS = readdirSync(path.join(ROOT, 'deploy/kubernetes/components')).sort();

/**
 * `kubectl kustomize` of a variant as a user renders it: as shipped, or with `components`
 * switched on the way its kustomization.yaml says (uncommenting their lines), in a copy of
 * deploy/kubernetes, which `edit` may change first (given the copy's root). Nothing on stderr:
 * a deprecation warning (bases:, patchesStrategicMerge:) fails it as an error does.
 */
async function kustomize(variant: string, components: string[] = [], edit?: (root: string) => void): Promise<any[]> {
  let dir = path.join(ROOT, 'deploy/kubernetes', variant);
  if (components.length > 0 || edit) {
    const copy = path.join(work.path, `kubernetes-${fileCount++}`);
    cpSync(path.join(ROOT, 'deploy/kubernetes'), copy, { recursive: true });
    edit?.(copy);
    dir = path.join(copy, variant);
    const file = path.join(dir, 'kustomization.yaml');
    let text = readFileSync(file, 'utf8');
    assert.match(text, /^# components:$/m, `${variant}/kustomization.yaml offers the components, commented out`);
    text = text.replace(/^# components:$/m, 'components:');
    for (const component of components) {
      const line = new RegExp(`^#( {3}- \\.\\./components/${component})(\\s|$)`, 'm');
      assert.match(text, line, `${variant}/kustomization.yaml lists ../components/${component}`);
      text = text.replace(line, ' $1$2');
    }
    writeFileSync(file, text);
  }
  const result = await exec('kubectl', ['kustomize', dir]);
  const what = `kubectl kustomize ${variant}${components.length ? ` with ${components.join(', ')}` : ''}`;
  assert.equal(result.code, 0, `${what}: ${result.stderr}`);
  assert.equal(result.stderr.trim(), '', `${what} warns`);
  return parseAllDocuments(result.stdout).map((doc) => doc.toJS());
}

/**
 * An edit for kustomize(): the mirror's Service on another port than the shipped 5000, as a
 * user may move it. What reaches the mirror through the Service (the node DaemonSet, the warm
 * CronJob) must follow it, not a port of its own.
 */
function serviceOnPort(port: number): (root: string) => void {
  return (root) => {
    const file = path.join(root, 'base/service.yaml');
    const text = readFileSync(file, 'utf8');
    assert.match(text, /^ {6}port: 5000$/m);
    writeFileSync(file, text.replace(/^ {6}port: 5000$/m, `      port: ${port}`));
  };
}

/** A container's arguments as the kubelet runs them: each `$(NAME)` of its env replaced by the value (`$$` is a `$`). */
function argsOf(container: any): string[] {
  const env = new Map<string, string>((container.env ?? []).filter((v: any) => typeof v.value === 'string').map((v: any) => [v.name, v.value]));
  return (container.args ?? []).map((arg: string) => arg.replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name: string | undefined) => (name === undefined ? '$' : env.get(name) ?? whole)));
}

const find = (objects: any[], kind: string, name: string) => objects.find((o) => o.kind === kind && o.metadata?.name === name);

function secretValues(secret: any): Env {
  const decoded = Object.fromEntries(Object.entries<string>(secret.data ?? {}).map(([key, value]) => [key, Buffer.from(value, 'base64').toString('utf8')]));
  return { ...decoded, ...(secret.stringData ?? {}) };
}

/** The downward API's fields as the kubelet gives them to the pod reproduced here: the second pod of a StatefulSet in namespace `mirrors`. */
const POD_FIELDS: Record<string, string> = { 'metadata.name': 'pullmirror-1', 'metadata.namespace': 'mirrors' };

interface Pod {
  deployment: any;
  container: any;
  /** The container's environment as the pod gets it: the image's ENV, then the container's env. */
  env: Env;
  /** The config file a check can read, with mounted paths rewritten into `root`. */
  configFile: string;
  /** Where each configMap/secret volume's files were written: mount path → temp directory. */
  mounts: Map<string, string>;
}

/**
 * The mirror's pod of a rendered variant, reproduced on this machine: each ConfigMap and Secret
 * volume is written into a temp directory as the kubelet would mount it (its items, or every
 * key), and the config's paths into those mounts (the config file itself, proxy.passwordfile's
 * /run/secrets/…, which do not exist here) are rewritten to point into that directory. Nothing
 * else is changed: a key the Secret lacks is a file that is missing, and the check fails.
 */
function podOf(objects: any[], variant: string, edit: (config: any) => void = () => {}): Pod {
  // fleet-peers runs the mirror as a StatefulSet (a claim per pod); its pod template is the same.
  const deployment = find(objects, 'Deployment', 'pullmirror') ?? find(objects, 'StatefulSet', 'pullmirror');
  assert.ok(deployment, `${variant}: a Deployment (or StatefulSet) named pullmirror`);
  const spec = deployment.spec.template.spec;
  const container = spec.containers.find((c: any) => c.name === 'pullmirror');
  const root = path.join(work.path, `pod-${variant}-${fileCount++}`);
  const mounts = new Map<string, string>();
  for (const mount of container.volumeMounts ?? []) {
    const volume = spec.volumes.find((v: any) => v.name === mount.name);
    // A StatefulSet's volumeClaimTemplates are no volume of the template: a claim, nothing to write.
    if (!volume) continue;
    const source = volume.configMap ? find(objects, 'ConfigMap', volume.configMap.name)?.data : volume.secret ? secretValues(find(objects, 'Secret', volume.secret.secretName) ?? {}) : undefined;
    if (!source) continue;
    const items: { key: string; path: string }[] = (volume.configMap ?? volume.secret).items ?? Object.keys(source).map((key) => ({ key, path: key }));
    const dir = path.join(root, mount.mountPath);
    mkdirSync(dir, { recursive: true });
    for (const item of items) {
      if (source[item.key] !== undefined) writeFileSync(path.join(dir, item.path), source[item.key]);
    }
    mounts.set(mount.mountPath, dir);
  }
  const inMount = (p: string) => [...mounts].find(([mountPath]) => p.startsWith(`${mountPath}/`));
  const configPath: string = container.args.at(-1);
  const mounted = inMount(configPath);
  assert.ok(mounted, `${variant}: the config ${configPath} comes from a ConfigMap volume`);
  const config = parse(readFileSync(path.join(mounted[1], configPath.slice(mounted[0].length)), 'utf8'));
  const rewrite = (value: any): any => {
    if (typeof value === 'string') {
      const hit = inMount(value);
      return hit ? path.join(hit[1], value.slice(hit[0].length)) : value;
    }
    if (Array.isArray(value)) return value.map(rewrite);
    if (value && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, rewrite(v)]));
    return value;
  };
  const rewritten = rewrite(config);
  edit(rewritten);
  const env: Env = { ...readDockerfile().env };
  for (const variable of container.env ?? []) {
    // Kubernetes expands $(NAME) from the variables listed before (left as is when there is none).
    if (variable.value !== undefined) env[variable.name] = String(variable.value).replace(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g, (whole, name) => env[name] ?? whole);
    else if (variable.valueFrom?.fieldRef) {
      const value = POD_FIELDS[variable.valueFrom.fieldRef.fieldPath];
      assert.ok(value !== undefined, `${variant}: ${variable.name}: the field ${variable.valueFrom.fieldRef.fieldPath} is not reproduced here`);
      env[variable.name] = value;
    }
    else if (variable.valueFrom?.secretKeyRef) {
      const { name, key } = variable.valueFrom.secretKeyRef;
      const value = secretValues(find(objects, 'Secret', name) ?? {})[key];
      assert.ok(value !== undefined, `${variant}: ${variable.name} names key ${key} of Secret ${name}, which it must hold`);
      env[variable.name] = value;
    } else assert.fail(`${variant}: ${variable.name}: only value and secretKeyRef are reproduced here`);
  }
  return { deployment, container, env, configFile: writeTemp(`${variant}-config.yml`, stringify(rewritten)), mounts };
}

/** A named or numbered container port, as a number. */
function containerPort(container: any, port: string | number): number {
  if (typeof port === 'number') return port;
  const named = container.ports.find((p: any) => p.name === port);
  assert.ok(named, `port ${port} is one of the container's`);
  return named.containerPort;
}

const matches = (selector: Record<string, string>, labels: Record<string, string>) => Object.entries(selector).every(([k, v]) => labels[k] === v);

/** Kubernetes storage quantities in bytes (Gi, G, Mi, M, …). */
function quantity(text: string): number {
  const [, number, unit = ''] = /^(\d+(?:\.\d+)?)([KMGTP]i?)?$/.exec(text) ?? [];
  const units: Record<string, number> = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50 };
  assert.ok(number !== undefined, `a quantity: ${text}`);
  return Number(number) * units[unit];
}

// ---- PromQL ---------------------------------------------------------------------------------

/** Words of PromQL that are not metric names: aggregations, set and grouping operators, constants. */
const PROMQL_WORDS = new Set(
  ['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'offset', 'bool', 'and', 'or', 'unless', 'atan2', 'inf', 'nan']
    .concat(['sum', 'min', 'max', 'avg', 'group', 'stddev', 'stdvar', 'count', 'count_values', 'bottomk', 'topk', 'quantile', 'limitk', 'limit_ratio']),
);

/**
 * The metric names a PromQL expression reads: strings, label matchers, range and subquery
 * brackets, grouping label lists, offsets and Grafana variables are removed; what remains is
 * function calls (a name before `(`), operator words, numbers and the metric names.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, ' ')
    .replace(/\{[^{}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/gi, ' ')
    .replace(/\boffset\s+-?[\w.]+/gi, ' ');
  const names = new Set<string>();
  for (const [, name, call] of stripped.matchAll(/(?<![\w.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?/g)) {
    if (call || PROMQL_WORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return [...names];
}

/** A Grafana templating query: `label_values(EXPR, label)` reads EXPR's metrics; other queries are PromQL. */
function templateQueryNames(query: string): string[] {
  const labelValues = /^\s*label_values\((.*),\s*[a-zA-Z_][a-zA-Z0-9_]*\s*\)\s*$/s.exec(query);
  return metricNames(labelValues ? labelValues[1] : query);
}

/** Every PromQL expression of the dashboard: panel targets (in rows too) and templating queries. */
function dashboardNames(dashboard: any): string[] {
  const names: string[] = [];
  const panels = (list: any[]): void => {
    for (const panel of list ?? []) {
      for (const target of panel.targets ?? []) if (target.expr) names.push(...metricNames(target.expr));
      panels(panel.panels);
    }
  };
  panels(dashboard.panels);
  for (const variable of dashboard.templating?.list ?? []) {
    if (variable.type !== 'query') continue;
    names.push(...templateQueryNames(typeof variable.query === 'string' ? variable.query : variable.query.query));
  }
  return names;
}

/**
 * The metric families of an exposition that have at least one sample (a family declared by
 * `# TYPE` but without a sample is a series no query finds).
 */
function exportedFamilies(exposition: string): { withSamples: Set<string>; types: Map<string, string> } {
  const types = new Map<string, string>();
  for (const [, name, type] of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) types.set(name, type);
  const withSamples = new Set<string>();
  for (const line of exposition.split('\n')) {
    const name = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{\s]/.exec(line)?.[1];
    if (!name) continue;
    const base = name.replace(/_(bucket|sum|count)$/, '');
    withSamples.add(types.has(name) ? name : base);
  }
  return { withSamples, types };
}

/** A histogram's `_bucket`, `_sum` and `_count` series are its family's. */
function familyOf(name: string, types: Map<string, string>): string {
  const base = name.replace(/_(bucket|sum|count)$/, '');
  return base !== name && ['histogram', 'summary'].includes(types.get(base) ?? '') ? base : name;
}

/**
 * Series Prometheus makes itself rather than scraping them: `up` (whether the scrape worked) is
 * what the instance-down alert and panel read, and no exporter can export it.
 */
const PROMETHEUS_OWN = new Set(['up']);

// ---- The tests ------------------------------------------------------------------------------

describe('every shipped config passes config check as it is run', () => {
  before(() => assert.ok(readFileSync(BUNDLE).length > 0, 'dist/pullmirror.mjs is built (npm run build)'));

  it('deploy/config.yml as it is', async () => {
    const effective = await assertPasses('deploy/config.yml', path.join(ROOT, 'deploy/config.yml'), {});
    assert.equal(effective.http.addr, ':5000');
  });

  it('the Dockerfile: its ENV, its CMD serving the config it COPYs', async () => {
    const image = readDockerfile();
    const { containerPath, source } = imageConfig(image);
    assert.equal(image.env.PULLMIRROR_CONFIG, containerPath, 'PULLMIRROR_CONFIG names the file CMD serves');
    assert.equal(image.cmd[0], 'serve');
    const effective = await assertPasses('Dockerfile', source, image.env);
    assert.ok(image.volumes.includes(effective.storage.filesystem.rootdirectory), `VOLUME ${image.volumes.join(', ')} holds the store ${effective.storage.filesystem.rootdirectory}`);
    assert.deepEqual(image.exposed, [portOf(effective.http.addr)], 'EXPOSE is the port http.addr listens on');
    assert.equal(image.user, 'node', 'runs as the base image\'s unprivileged node user (uid 1000, which the Kubernetes manifests name)');
  });

  for (const file of ['compose.yaml', 'deploy/fleet/compose.yaml']) {
    it(`${file}: each mirror service's environment over the image's config`, async () => {
      const image = readDockerfile();
      const services = mirrorServices(file);
      assert.ok(services.length >= (file.includes('fleet') ? 2 : 1), `${file}: mirror services built from deploy/Dockerfile`);
      for (const [name, service] of services) {
        const env = { ...image.env, ...composeEnvironment(service) };
        const effective = await assertPasses(`${file} ${name}`, imageConfig(image).source, env);
        assert.equal(effective.storage.cache.blobdescriptor, 'redis', `${name}: Redis as the descriptor cache`);
        const redisHost = String(effective.redis.addr).split(':')[0];
        assert.ok(parse(readFileSync(path.join(ROOT, file), 'utf8'), { merge: true }).services[redisHost], `${name}: redis.addr names the compose service ${redisHost}`);
        assert.ok(service.volumes.some((v: string) => v.split(':')[1] === effective.storage.filesystem.rootdirectory), `${name}: the store's volume is mounted at rootdirectory`);
        assert.ok(quantitySeconds(service.stop_grace_period) > seconds(effective.http.draintimeout), `${name}: stop_grace_period outlasts http.draintimeout`);
      }
    });
  }

  it('deploy/pullmirror.service: its Environment= and the config its ExecStart serves', async () => {
    const unit = readFileSync(path.join(ROOT, 'deploy/pullmirror.service'), 'utf8');
    const values = (key: string) => [...unit.matchAll(new RegExp(`^${key}=(.*)$`, 'gm'))].map((m) => m[1].trim());
    const env: Env = {};
    for (const line of values('Environment')) for (const [, key, value] of line.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)) env[key] = value.replace(/^"|"$/g, '');
    const exec = values('ExecStart')[0].split(/\s+/);
    assert.equal(exec[0], '/opt/pullmirror/node_modules/.bin/node', 'the Node the install provides, not the distribution one');
    assert.equal(exec.at(-2), '/opt/pullmirror/dist/pullmirror.mjs', 'the bundle');
    const configPath = exec.at(-1)!;
    // The unit serves /etc/pullmirror/config.yml, the file the image has at that path too:
    // deploy/config.yml (the unit's EnvironmentFile is the user's own and optional, `-`).
    assert.equal(configPath, imageConfig(readDockerfile()).containerPath);
    const effective = await assertPasses('pullmirror.service', imageConfig(readDockerfile()).source, env);
    // ProtectSystem=strict leaves only ReadWritePaths writable: the store must be one of them.
    assert.ok(values('ReadWritePaths').join(' ').split(/\s+/).includes(effective.storage.filesystem.rootdirectory), 'the store is writable under ProtectSystem=strict');
    assert.ok(Number(values('TimeoutStopSec')[0]) > seconds(effective.http.draintimeout), 'TimeoutStopSec outlasts http.draintimeout');
  });

  for (const variant of ['single', 'fleet']) {
    it(`Kubernetes ${variant}: the ConfigMap's config.yml with the container's REGISTRY_* variables and mounted Secret`, async (t) => {
      if (!requireKubectl(t)) return;
      const objects = await kustomize(variant);
      const pod = podOf(objects, variant);
      assert.ok(Object.keys(pod.env).some((key) => key.startsWith('REGISTRY_')), `${variant}: REGISTRY_* variables are part of what is checked`);
      const effective = await assertPasses(`kubernetes/${variant}`, pod.configFile, pod.env);
      assert.equal(effective.storage.cache.blobdescriptor, variant === 'fleet' ? 'redis' : 'inmemory');
    });
  }
});

/** compose's durations (`90s`, `1m30s`) in seconds. */
function quantitySeconds(text: string): number {
  let total = 0;
  for (const [, n, unit] of String(text).matchAll(/(\d+(?:\.\d+)?)(h|m|s|ms)/g)) total += Number(n) * { h: 3600, m: 60, s: 1, ms: 0.001 }[unit]!;
  return total;
}

describe('the check is real: a renamed key or variable fails it', () => {
  it('a misspelt key in a copy of deploy/config.yml stops config check naming it', async () => {
    const text = readFileSync(path.join(ROOT, 'deploy/config.yml'), 'utf8');
    assert.match(text, /^ {2}filesystem:$/m);
    const result = await configCheck(writeTemp('typo.yml', text.replace(/^ {2}filesystem:$/m, '  filesytem:')), {});
    assert.equal(result.code, 2);
    assert.match(problemsOf(result).join('\n'), /storage\.filesytem/);
  });

  it('a misspelt REGISTRY_* variable of the fleet variant is named, and so fails the shipped-config check', async (t) => {
    if (!requireKubectl(t)) return;
    const pod = podOf(await kustomize('fleet'), 'fleet');
    const { REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR: value, ...rest } = pod.env;
    assert.equal(value, 'redis');
    const result = await configCheck(pod.configFile, { ...rest, REGISTRY_STORAGE_CACHE_BLOBDESCRPTOR: value });
    assert.match(problemsOf(result).join('\n'), /REGISTRY_STORAGE_CACHE_BLOBDESCRPTOR names no configuration key/);
    assert.equal(result.effective?.storage.cache.blobdescriptor, 'inmemory', 'the misspelt variable configured nothing');
  });

  it('a passwordfile that names no key of the mounted Secret fails', async (t) => {
    if (!requireKubectl(t)) return;
    const objects = await kustomize('single');
    const pod = podOf(objects, 'single', (config) => {
      config.proxy.passwordfile = config.proxy.passwordfile.replace(/[^/]+$/, 'password');
    });
    const result = await configCheck(pod.configFile, pod.env);
    assert.equal(result.code, 2);
    assert.match(problemsOf(result).join('\n'), /proxy\.passwordfile: cannot read .*\/password: ENOENT/);
  });
});

describe('the Kubernetes variants keep what a platform team checks', () => {
  const variants = { single: { replicas: 1, accessModes: ['ReadWriteOnce'] }, fleet: { replicas: 3, accessModes: ['ReadWriteMany'] } };
  for (const [variant, expected] of Object.entries(variants)) {
    it(`${variant}: replicas, volume, probes, drain, Secret, scrape annotations, security, Service`, async (t) => {
      if (!requireKubectl(t)) return;
      const objects = await kustomize(variant);
      const pod = podOf(objects, variant);
      const effective = (await configCheck(pod.configFile, pod.env)).effective;
      assert.ok(effective, 'the variant passes config check');
      const { deployment, container } = pod;
      const spec = deployment.spec.template.spec;
      const labels = deployment.spec.template.metadata.labels;
      const port = portOf(effective.http.addr);

      assert.equal(deployment.spec.replicas, expected.replicas);
      if (variant === 'single') assert.equal(deployment.spec.strategy?.type, 'Recreate', 'the old pod lets go of the ReadWriteOnce volume first');
      assert.ok(!/^pullmirror(:|$)/.test(container.image), `the image placeholder is replaced by kustomize images: (${container.image})`);

      // The store: the claim, mounted where rootdirectory says, large enough for maxsize.
      const storeMount = container.volumeMounts.find((m: any) => m.mountPath === effective.storage.filesystem.rootdirectory);
      assert.ok(storeMount, 'the store is a volume mount');
      const claimName = spec.volumes.find((v: any) => v.name === storeMount.name).persistentVolumeClaim?.claimName;
      const claim = find(objects, 'PersistentVolumeClaim', claimName);
      assert.ok(claim, `the PersistentVolumeClaim ${claimName} is rendered`);
      assert.deepEqual(claim.spec.accessModes, expected.accessModes);
      assert.ok(
        quantity(claim.spec.resources.requests.storage) >= effective.storage.eviction.maxsize + effective.storage.filesystem.minfreespace,
        'the claim holds maxsize plus minfreespace',
      );
      assert.ok(effective.storage.eviction.maxsize > 0, 'a size cap, so the store cannot fill the claim');

      // Probes on the port the mirror listens on.
      assert.equal(container.ports[0].containerPort, port, 'containerPort is http.addr\'s port');
      assert.equal(container.livenessProbe.httpGet.path, '/health');
      assert.equal(container.readinessProbe.httpGet.path, '/health/ready');
      for (const probe of [container.livenessProbe, container.readinessProbe]) assert.equal(containerPort(container, probe.httpGet.port), port);

      // Drain: the endpoint goes (preStop) before SIGTERM, and SIGKILL waits for the drain.
      const preStop = container.lifecycle.preStop.exec.command;
      assert.equal(preStop[0], 'sleep');
      const preStopSeconds = Number(preStop[1]);
      assert.ok(preStopSeconds > 0);
      assert.ok(
        spec.terminationGracePeriodSeconds > preStopSeconds + seconds(effective.http.draintimeout),
        `grace ${spec.terminationGracePeriodSeconds}s > preStop ${preStopSeconds}s + draintimeout ${seconds(effective.http.draintimeout)}s`,
      );

      // The upstream password: a Secret key mounted as the file passwordfile names.
      const passwordfile: string = parse(readFileSync(pod.configFile, 'utf8')).proxy.passwordfile;
      const original = [...pod.mounts].find(([, dir]) => passwordfile.startsWith(`${dir}/`))!;
      assert.ok(original, 'proxy.passwordfile lies in a mounted volume');
      const mount = container.volumeMounts.find((m: any) => m.mountPath === original[0]);
      const secretVolume = spec.volumes.find((v: any) => v.name === mount.name).secret;
      assert.ok(secretVolume, 'the passwordfile volume is a Secret');
      const secret = find(objects, 'Secret', secretVolume.secretName);
      const item = (secretVolume.items ?? []).find((i: any) => i.path === path.basename(passwordfile)) ?? { key: path.basename(passwordfile) };
      assert.equal(item.key, path.basename(passwordfile), 'the Secret key is the passwordfile\'s name');
      assert.ok(Object.hasOwn(secretValues(secret), item.key), `Secret ${secret.metadata.name} has the key ${item.key}`);
      assert.ok(!(container.env ?? []).some((e: any) => /PASSWORD/.test(e.name)), 'no password in the environment');

      // Prometheus scrapes the port and path the metrics are served on.
      const annotations = deployment.spec.template.metadata.annotations;
      assert.equal(annotations['prometheus.io/scrape'], 'true');
      assert.equal(Number(annotations['prometheus.io/port']), effective.http.debug.addr ? portOf(effective.http.debug.addr) : containerPort(container, container.ports[0].containerPort));
      assert.equal(annotations['prometheus.io/path'], effective.http.debug.prometheus.path);

      // Non-root, read-only root, and every path the mirror writes on a writable volume.
      assert.equal(spec.securityContext.runAsNonRoot, true);
      assert.equal(spec.securityContext.runAsUser, 1000, "the image's node user");
      assert.equal(container.securityContext.readOnlyRootFilesystem, true);
      assert.equal(container.securityContext.allowPrivilegeEscalation, false);
      const writable = container.volumeMounts.filter((m: any) => !m.readOnly).map((m: any) => m.mountPath);
      for (const written of [effective.storage.filesystem.rootdirectory, ...effective.health.file.map((f: any) => path.dirname(f.file))]) {
        assert.ok(writable.some((dir: string) => written === dir || written.startsWith(`${dir}/`)), `${written} is on a writable volume`);
      }
      assert.equal(spec.enableServiceLinks, false, 'no Service variables (REGISTRY_PORT, REDIS_PORT, …) in the environment');

      // Memory: a request and a limit with headroom above it.
      const { requests, limits } = container.resources;
      assert.ok(quantity(limits.memory) >= 2 * quantity(requests.memory), 'the limit leaves headroom above the request');
      assert.ok(quantity(requests.memory) >= 150 * 2 ** 20, 'the request covers the ~150 MB peak under 16 clients');

      // The Service reaches these pods on that port.
      const service = find(objects, 'Service', 'pullmirror');
      assert.ok(matches(service.spec.selector, labels), 'the Service selects the mirror pods');
      assert.equal(containerPort(container, service.spec.ports[0].targetPort), port);

      // Disruptions: a fleet loses at most one replica at a time; nothing blocks a drain forever.
      const budgets = objects.filter((o) => o.kind === 'PodDisruptionBudget' && matches(o.spec.selector.matchLabels, labels));
      if (variant === 'fleet') {
        assert.equal(budgets.length, 1, 'a PodDisruptionBudget for the fleet');
        const budget = budgets[0].spec;
        assert.ok(budget.maxUnavailable === 1 || budget.minAvailable === expected.replicas - 1, JSON.stringify(budget));
      }
      for (const budget of budgets) assert.ok(budget.spec.maxUnavailable > 0 || budget.spec.minAvailable < expected.replicas, 'a drain can always evict a pod');

      // The fleet's Redis: the address it is told is a rendered Service selecting a Redis pod.
      if (variant === 'fleet') {
        const [host, redisPort] = String(effective.redis.addr).split(':');
        const redisService = find(objects, 'Service', host);
        assert.ok(redisService, `redis.addr ${effective.redis.addr} names a Service`);
        const redis = objects.find((o) => o.kind === 'Deployment' && matches(redisService.spec.selector, o.spec.template.metadata.labels));
        assert.ok(redis, 'a Redis Deployment behind that Service');
        assert.equal(redisService.spec.ports[0].port, Number(redisPort));
        assert.equal(containerPort(redis.spec.template.spec.containers[0], redisService.spec.ports[0].targetPort), 6379);
        assert.ok(!matches(service.spec.selector, redis.spec.template.metadata.labels), "the mirror's Service does not send clients to Redis");
      } else {
        assert.equal(effective.storage.cache.blobdescriptor, 'inmemory');
      }
    });
  }
});

describe('the Kubernetes fleet on S3: no volume claim, the spool on an emptyDir, the bucket keys from a Secret', { skip: skipUnlessS3() }, () => {
  it('fleet-s3: passes config check against a real bucket (RADOS Gateway) with the keys of its Secret, and renders no PersistentVolumeClaim', async (t) => {
    if (!requireKubectl(t)) return;
    const objects = await kustomize('fleet-s3');
    assert.deepEqual(objects.filter((o) => o.kind === 'PersistentVolumeClaim').map((o) => o.metadata.name), [], 'no claim: nothing needs ReadWriteMany');
    const pod = podOf(objects, 'fleet-s3');
    const { deployment, container } = pod;
    const spec = deployment.spec.template.spec;
    assert.equal(deployment.spec.replicas, 3);
    assert.ok(spec.volumes.every((v: any) => !v.persistentVolumeClaim), 'no volume of the pod is a claim');

    // The user's part, done here with a real bucket: its endpoint in the config, its keys in the
    // Secret pullmirror-s3 (the mounted secretkey file and the accesskey variable).
    const s3 = await startS3({ memMiB: 256 });
    try {
      const bucket = await s3.createBucket('fleet-s3');
      const secretMount = pod.mounts.get('/run/secrets/pullmirror-s3');
      assert.ok(secretMount, 'the Secret pullmirror-s3 is mounted at /run/secrets/pullmirror-s3');
      writeFileSync(path.join(secretMount, 'secretkey'), s3.secretAccessKey);
      assert.equal(pod.env.REGISTRY_STORAGE_S3_ACCESSKEY, secretValues(find(objects, 'Secret', 'pullmirror-s3')).accesskey, 'the access key comes from the Secret');
      const env = { ...pod.env, REGISTRY_STORAGE_S3_ACCESSKEY: s3.accessKeyId, REGISTRY_STORAGE_S3_REGIONENDPOINT: s3.endpoint, REGISTRY_STORAGE_S3_BUCKET: bucket };
      const effective = await assertPasses('kubernetes/fleet-s3', pod.configFile, env);
      assert.equal(effective.storage.s3.bucket, bucket);
      assert.equal(effective.storage.cache.blobdescriptor, 'redis', 'the fleet shares descriptors and leases through Redis');
      assert.ok(!(container.env ?? []).some((e: any) => /SECRET/.test(e.name)), 'no secret key in the environment');

      // The shipped placeholders are refused by the bucket, naming the key to fix.
      const placeholders = await configCheck(pod.configFile, { ...pod.env, REGISTRY_STORAGE_S3_REGIONENDPOINT: s3.endpoint, REGISTRY_STORAGE_S3_BUCKET: bucket });
      assert.equal(placeholders.code, 2);
      assert.match(placeholders.stderr, /storage\.s3\.accesskey: refused by the server/);

      // The spool: on a writable emptyDir with a size limit.
      const spool: string = effective.storage.s3.spooldirectory;
      const mount = container.volumeMounts.find((m: any) => !m.readOnly && (spool === m.mountPath || spool.startsWith(`${m.mountPath}/`)));
      assert.ok(mount, `the spool ${spool} is on a writable volume`);
      const volume = spec.volumes.find((v: any) => v.name === mount.name);
      assert.ok(volume.emptyDir?.sizeLimit, `the spool's volume is an emptyDir with a sizeLimit (${JSON.stringify(volume)})`);
    } finally {
      await s3.close();
    }
  });
});

describe('the Kubernetes fleet on disks of its own: a StatefulSet, a ReadWriteOnce claim per pod, peers by name, Redis behind Sentinel', () => {
  it('fleet-peers: no ReadWriteMany claim, a headless Service naming each pod, the peer keys from the pod\'s own name, http.secret from a Secret, Sentinel by its pods\' names', async (t) => {
    if (!requireKubectl(t)) return;
    const objects = await kustomize('fleet-peers');
    assert.equal(find(objects, 'Deployment', 'pullmirror'), undefined, "the base's Deployment gives way to the StatefulSet");
    assert.deepEqual(objects.filter((o) => o.kind === 'PersistentVolumeClaim').map((o) => o.metadata.name), [], 'no shared claim');
    const pod = podOf(objects, 'fleet-peers');
    const { deployment: statefulSet, container } = pod;
    assert.equal(statefulSet.kind, 'StatefulSet');
    assert.equal(statefulSet.spec.replicas, 3);
    const labels = statefulSet.spec.template.metadata.labels;
    assert.ok(!/^pullmirror(:|$)/.test(container.image), `the image placeholder is replaced (${container.image})`);

    // The config as the pod runs it, the peer listener's keys and http.secret included.
    const secret = secretValues(find(objects, 'Secret', 'pullmirror-http'));
    const env: Env = { ...pod.env, REGISTRY_HTTP_SECRET: 'a'.repeat(64) };
    const effective = await assertPasses('kubernetes/fleet-peers', pod.configFile, env);
    assert.equal(effective.storage.cache.blobdescriptor, 'redis');

    // A disk per pod: one ReadWriteOnce claim template, mounted where the store is, holding maxsize.
    const spec = statefulSet.spec.template.spec;
    assert.ok(spec.volumes.every((v: any) => !v.persistentVolumeClaim), 'no volume of the pod names a shared claim');
    const storeMount = container.volumeMounts.find((m: any) => m.mountPath === effective.storage.filesystem.rootdirectory);
    assert.ok(storeMount, 'the store is a volume mount');
    const template = statefulSet.spec.volumeClaimTemplates.find((c: any) => c.metadata.name === storeMount.name);
    assert.ok(template, `the store's volume ${storeMount.name} is a claim template`);
    assert.deepEqual(template.spec.accessModes, ['ReadWriteOnce']);
    assert.ok(quantity(template.spec.resources.requests.storage) >= effective.storage.eviction.maxsize + effective.storage.filesystem.minfreespace, 'each claim holds maxsize plus minfreespace');

    // The peers' names: the StatefulSet's headless Service selects these pods on the peer port.
    const peers = find(objects, 'Service', statefulSet.spec.serviceName);
    assert.ok(peers, `serviceName ${statefulSet.spec.serviceName} is a rendered Service`);
    assert.equal(peers.spec.clusterIP, 'None', 'headless: a DNS name per pod');
    assert.ok(matches(peers.spec.selector, labels));
    const peerPort = containerPort(container, peers.spec.ports[0].targetPort);
    assert.equal(peers.spec.ports[0].port, peerPort);
    assert.notEqual(peerPort, portOf(effective.http.addr), 'the peer listener is not the client port');
    assert.equal(pod.env.REGISTRY_REDIS_FLEET_PEERS_ADDR, `0.0.0.0:${peerPort}`, 'the peer listener on the pod\'s peer port');
    // What the kubelet makes of the advertised address for pod pullmirror-1 in namespace mirrors.
    assert.equal(pod.env.REGISTRY_REDIS_FLEET_PEERS_ADVERTISE, `pullmirror-1.${peers.metadata.name}.mirrors.svc:${peerPort}`, "the pod's own name under the headless Service");
    assert.equal(effective.redis.fleet.peers.advertise, `pullmirror-1.${peers.metadata.name}.mirrors.svc:${peerPort}`);
    assert.equal(effective.redis.fleet.peers.addr, `0.0.0.0:${peerPort}`);
    // Each pod's store has an id of its own: the pods are one fleet by name (redis.fleet.name), the same on every pod.
    assert.ok(effective.redis.fleet.name, 'redis.fleet.name: one fleet across the pods\' own disks');
    assert.equal(container.env.find((e: any) => e.name === 'REGISTRY_REDIS_FLEET_NAME')?.value, effective.redis.fleet.name, 'a literal, not from the pod');
    // Only the mirror's pods reach the peer port; clients reach the client port.
    const admitted = admittedPeers(objects, labels, container, peerPort);
    assert.ok(admitted.length > 0 && admitted.every((peer) => peer !== 'anywhere' && matches(peer, labels)), `peer port from the mirror pods only: ${JSON.stringify(admitted)}`);
    assert.ok(admitsFromAnywhere(objects, labels, container, portOf(effective.http.addr)), 'clients reach the client port');

    // http.secret from a Secret, never a literal in the manifest.
    const secretVariable = container.env.find((e: any) => e.name === 'REGISTRY_HTTP_SECRET');
    assert.deepEqual(secretVariable?.valueFrom?.secretKeyRef, { name: 'pullmirror-http', key: 'secret' });
    assert.ok(Object.hasOwn(secret, 'secret'), 'the Secret pullmirror-http has the key secret');

    // Redis behind Sentinel: each address is a sentinel of the Redis StatefulSet by its pod's name.
    assert.ok(effective.redis.mastername, 'redis.mastername: Sentinel');
    const redis = find(objects, 'StatefulSet', 'pullmirror-redis');
    assert.ok(redis, 'a Redis StatefulSet');
    const redisService = find(objects, 'Service', redis.spec.serviceName);
    assert.equal(redisService.spec.clusterIP, 'None');
    const sentinel = redis.spec.template.spec.containers.find((c: any) => c.name === 'sentinel');
    assert.ok(sentinel, 'a sentinel in each Redis pod');
    const sentinelPort = containerPort(sentinel, 'sentinel');
    assert.equal(effective.redis.addrs.length, redis.spec.replicas, 'every sentinel is named');
    for (const [i, addr] of effective.redis.addrs.entries()) assert.equal(addr, `${redis.metadata.name}-${i}.${redisService.metadata.name}:${sentinelPort}`);
    const scripts = find(objects, 'ConfigMap', 'pullmirror-redis').data;
    assert.match(scripts['sentinel.sh'], new RegExp(`sentinel monitor ${effective.redis.mastername} \\$master 6379 2`), 'the sentinels watch the master the mirror names');
    assert.ok(!matches(find(objects, 'Service', 'pullmirror').spec.selector, redis.spec.template.metadata.labels), "the mirror's Service does not send clients to Redis");
    const redisPeers = admittedPeers(objects, redis.spec.template.metadata.labels, redis.spec.template.spec.containers[0], 6379);
    assert.ok(redisPeers.length > 0 && redisPeers.every((peer) => peer !== 'anywhere'), `Redis takes connections from the fleet's pods only: ${JSON.stringify(redisPeers)}`);

    // The pod is base/deployment.yaml's (probes, drain, security, resources), which a StatefulSet cannot patch: kept in step here.
    const base = podOf(await kustomize('single'), 'single');
    const baseSpec = base.deployment.spec.template.spec;
    for (const field of ['args', 'livenessProbe', 'readinessProbe', 'startupProbe', 'lifecycle', 'resources', 'securityContext']) {
      assert.deepEqual(container[field], base.container[field], `the container's ${field} is base/deployment.yaml's`);
    }
    for (const field of ['securityContext', 'terminationGracePeriodSeconds', 'enableServiceLinks', 'automountServiceAccountToken']) {
      assert.deepEqual(spec[field], baseSpec[field], `the pod's ${field} is base/deployment.yaml's`);
    }
    assert.deepEqual(statefulSet.spec.template.metadata.annotations, base.deployment.spec.template.metadata.annotations, 'the scrape annotations');
    assert.deepEqual(
      container.volumeMounts.map((m: any) => m.mountPath),
      base.container.volumeMounts.map((m: any) => m.mountPath),
      'the same mounts (the store from the claim template)',
    );

    // Disruptions: one mirror and one Redis at a time.
    const budgets = objects.filter((o) => o.kind === 'PodDisruptionBudget');
    assert.ok(budgets.some((b) => matches(b.spec.selector.matchLabels, labels) && b.spec.maxUnavailable === 1));
    assert.ok(budgets.some((b) => matches(b.spec.selector.matchLabels, redis.spec.template.metadata.labels) && b.spec.maxUnavailable === 1));
  });

  it('fleet-peers renders with the components it offers, and every pod of ours runs the image it sets', async (t) => {
    if (!requireKubectl(t)) return;
    for (const components of [[], ['node-config'], ['warm'], ['node-config', 'warm']]) {
      const objects = await kustomize('fleet-peers', components);
      const image = find(objects, 'StatefulSet', 'pullmirror').spec.template.spec.containers[0].image;
      for (const object of objects) {
        const spec = object.spec?.jobTemplate?.spec.template.spec ?? object.spec?.template?.spec;
        for (const container of spec?.containers ?? []) {
          if (container.image.startsWith('redis:')) continue;
          assert.equal(container.image, image, `[${components.join(', ')}]: ${object.kind} ${object.metadata.name} runs the mirror's image`);
        }
      }
    }
  });
});

/**
 * The volumes of a pod template reproduced on this machine: each ConfigMap volume written into a
 * temp directory as the kubelet mounts it, each hostPath an empty temp directory standing for the
 * node's. Answers mount path → directory.
 */
function mountVolumes(objects: any[], spec: any, container: any): Map<string, string> {
  const root = path.join(work.path, `pod-${fileCount++}`);
  const mounts = new Map<string, string>();
  for (const mount of container.volumeMounts ?? []) {
    const volume = spec.volumes.find((v: any) => v.name === mount.name);
    const dir = path.join(root, mount.mountPath);
    mkdirSync(dir, { recursive: true });
    if (volume.configMap) {
      const data = find(objects, 'ConfigMap', volume.configMap.name)?.data;
      assert.ok(data, `the ConfigMap ${volume.configMap.name} of volume ${volume.name} is rendered`);
      for (const key of Object.keys(data)) writeFileSync(path.join(dir, key), data[key]);
    } else assert.ok(volume.hostPath || volume.emptyDir, `${volume.name}: only ConfigMap, hostPath and emptyDir volumes are reproduced here`);
    mounts.set(mount.mountPath, dir);
  }
  return mounts;
}

/** A text with every mount path in it replaced by the directory standing for it (longest first). */
function intoMounts(text: string, mounts: Map<string, string>): string {
  let out = text;
  for (const [mountPath, dir] of [...mounts].sort(([a], [b]) => b.length - a.length)) out = out.split(mountPath).join(dir);
  return out;
}

/** Whether the NetworkPolicies let a connection from anywhere reach `port` of pods with `labels`. */
function admitsFromAnywhere(objects: any[], labels: Record<string, string>, container: any, port: number): boolean {
  const policies = objects.filter((o) => o.kind === 'NetworkPolicy' && matches(o.spec.podSelector.matchLabels ?? {}, labels) && (o.spec.policyTypes ?? ['Ingress']).includes('Ingress'));
  if (policies.length === 0) return true;
  return policies.some((policy) =>
    (policy.spec.ingress ?? []).some(
      (rule: any) =>
        (rule.from ?? []).length === 0 && (!rule.ports || rule.ports.some((p: any) => (p.protocol ?? 'TCP') === 'TCP' && containerPort(container, p.port) === port)),
    ),
  );
}

/** The pod labels a NetworkPolicy admits to `port` (each rule's `from` pod selectors), or 'anywhere'. */
function admittedPeers(objects: any[], labels: Record<string, string>, container: any, port: number): (Record<string, string> | 'anywhere')[] {
  const peers: (Record<string, string> | 'anywhere')[] = [];
  for (const policy of objects.filter((o) => o.kind === 'NetworkPolicy' && matches(o.spec.podSelector.matchLabels ?? {}, labels))) {
    for (const rule of policy.spec.ingress ?? []) {
      if (rule.ports && !rule.ports.some((p: any) => containerPort(container, p.port) === port)) continue;
      if ((rule.from ?? []).length === 0) peers.push('anywhere');
      for (const from of rule.from ?? []) peers.push(from.podSelector && !from.namespaceSelector && !from.ipBlock ? from.podSelector.matchLabels ?? {} : 'anywhere');
    }
  }
  return peers;
}

describe('the Kubernetes components: each renders with each variant, and does what it is for', () => {
  it('every variant renders without a warning, alone, with each component and with all of them', async (t) => {
    if (!requireKubectl(t)) return;
    assert.deepEqual(COMPONENTS, ['node-config', 'service-monitor', 'warm']);
    for (const variant of ['single', 'fleet', 'fleet-s3']) {
      for (const components of [[], ...COMPONENTS.map((c) => [c]), COMPONENTS]) {
        const objects = await kustomize(variant, components);
        const deployment = find(objects, 'Deployment', 'pullmirror');
        // Every pod of ours runs the image the variant sets, not the placeholder.
        for (const object of objects) {
          const spec = object.spec?.jobTemplate?.spec.template.spec ?? object.spec?.template?.spec;
          for (const container of spec?.containers ?? []) {
            if (container.image.startsWith('redis:')) continue;
            assert.equal(container.image, deployment.spec.template.spec.containers[0].image, `${variant} [${components.join(', ')}]: ${object.kind} ${object.metadata.name} runs the mirror's image`);
          }
        }
      }
    }
  });

  for (const variant of ['single', 'fleet']) {
    it(`${variant}: the NetworkPolicy admits clients and the metrics scrape on the mirror's port${variant === 'fleet' ? ', and Redis to the mirror only' : ''}`, async (t) => {
      if (!requireKubectl(t)) return;
      const objects = await kustomize(variant);
      const pod = podOf(objects, variant);
      const effective = (await configCheck(pod.configFile, pod.env)).effective;
      const labels = pod.deployment.spec.template.metadata.labels;
      assert.ok(objects.some((o) => o.kind === 'NetworkPolicy' && matches(o.spec.podSelector.matchLabels, labels)), 'a NetworkPolicy selects the mirror pods');
      const service = find(objects, 'Service', 'pullmirror');
      const clientPort = containerPort(pod.container, service.spec.ports[0].targetPort);
      assert.equal(clientPort, portOf(effective.http.addr));
      assert.ok(admitsFromAnywhere(objects, labels, pod.container, clientPort), 'clients, nodes and the warm job reach the client port');
      const scrapePort = Number(pod.deployment.spec.template.metadata.annotations['prometheus.io/port']);
      assert.ok(admitsFromAnywhere(objects, labels, pod.container, scrapePort), 'Prometheus reaches the port the annotations name');
      assert.ok(!admitsFromAnywhere(objects, labels, pod.container, 22), 'no other port is open');
      if (variant === 'fleet') {
        const redis = objects.find((o) => o.kind === 'Deployment' && o.metadata.name === 'pullmirror-redis');
        const redisLabels = redis.spec.template.metadata.labels;
        const peers = admittedPeers(objects, redisLabels, redis.spec.template.spec.containers[0], 6379);
        assert.ok(peers.length > 0 && peers.every((peer) => peer !== 'anywhere' && matches(peer, labels)), `Redis takes connections from the mirror pods only: ${JSON.stringify(peers)}`);
      }
    });
  }

  it('service-monitor: selects the Service, scrapes the port and path the metrics are on, and turns the annotations off', async (t) => {
    if (!requireKubectl(t)) return;
    for (const variant of ['single', 'fleet']) {
      const objects = await kustomize(variant, ['service-monitor']);
      const pod = podOf(objects, variant);
      const effective = (await configCheck(pod.configFile, pod.env)).effective;
      const monitors = objects.filter((o) => o.kind === 'ServiceMonitor');
      assert.equal(monitors.length, 1);
      const monitor = monitors[0];
      assert.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
      const service = find(objects, 'Service', 'pullmirror');
      assert.ok(matches(monitor.spec.selector.matchLabels, service.metadata.labels), 'its selector matches the Service');
      const selected = objects.filter((o) => o.kind === 'Service' && matches(monitor.spec.selector.matchLabels, o.metadata.labels ?? {}));
      assert.deepEqual(selected.map((o) => o.metadata.name), ['pullmirror'], 'and no other Service (not Redis)');
      const [endpoint] = monitor.spec.endpoints;
      const servicePort = service.spec.ports.find((p: any) => p.name === endpoint.port);
      assert.ok(servicePort, `endpoint port ${endpoint.port} is a named port of the Service`);
      const metricsPort = effective.http.debug.addr ? portOf(effective.http.debug.addr) : portOf(effective.http.addr);
      assert.equal(containerPort(pod.container, servicePort.targetPort), metricsPort, 'the port the metrics are served on');
      assert.equal(endpoint.path, effective.http.debug.prometheus.path);
      assert.equal(pod.deployment.spec.template.metadata.annotations['prometheus.io/scrape'], 'false', 'no second scrape by a kubernetes-pods job');
      assert.ok(admitsFromAnywhere(objects, pod.deployment.spec.template.metadata.labels, pod.container, metricsPort), 'the NetworkPolicy admits the scrape');
    }
  });

  it("node-config: a DaemonSet writes each registry's hosts.toml into the node's /etc/containerd/certs.d, for the Service's ClusterIP", async (t) => {
    if (!requireKubectl(t)) return;
    const objects = await kustomize('fleet', ['node-config'], serviceOnPort(5123));
    const daemonSet = objects.find((o) => o.kind === 'DaemonSet');
    assert.ok(daemonSet, 'a DaemonSet');
    const spec = daemonSet.spec.template.spec;
    assert.ok((spec.tolerations ?? []).some((toleration: any) => toleration.operator === 'Exists' && !toleration.key), 'on every node, tainted ones included');
    const [container] = spec.containers;
    const certsVolume = spec.volumes.find((v: any) => v.hostPath);
    assert.equal(certsVolume.hostPath.path, '/etc/containerd/certs.d', "the node's containerd config_path (README)");
    const deployment = find(objects, 'Deployment', 'pullmirror');
    const configVolume = (s: any) => s.volumes.find((v: any) => v.configMap)?.configMap.name;
    assert.equal(configVolume(spec), configVolume(deployment.spec.template.spec), "the mirror's own config, so the registries it serves");

    // Run the container's script as it is, on this machine: the volumes stand in temp
    // directories, `dist/pullmirror.mjs` is the built bundle as the image's WORKDIR holds it,
    // and `getent` is the one thing faked (there is no cluster DNS here): it answers a
    // ClusterIP for the Service's name only.
    const image = readDockerfile();
    assert.ok(image.copies.some((c) => c.from === 'build' && c.dest === './dist'), "the image's WORKDIR holds dist/");
    const service = find(objects, 'Service', 'pullmirror');
    assert.equal(service.spec.ports[0].port, 5123, 'rendered with the Service on a port of its own');
    const mounts = mountVolumes(objects, spec, container);
    const bin = path.join(work.path, `fake-dns-${fileCount++}`);
    mkdirSync(bin);
    writeFileSync(path.join(bin, 'getent'), `#!/bin/sh\n[ "$1" = hosts ] && [ "$2" = ${service.metadata.name} ] && echo "10.96.0.50      ${service.metadata.name}.mirror.svc.cluster.local" && exit 0\nexit 2\n`, { mode: 0o755 });
    const [shell, flag] = container.command;
    const script = intoMounts(argsOf(container)[0], mounts);
    const env: NodeJS.ProcessEnv = { ...cleanEnv(['REGISTRY_', 'PULLMIRROR_']), PATH: `${bin}:${path.dirname(process.execPath)}:/usr/bin:/bin` };
    for (const variable of container.env ?? []) env[variable.name] = intoMounts(String(variable.value), mounts);
    const child = spawn(shell, [flag, script], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const nodeDir = mounts.get(container.volumeMounts.find((m: any) => m.name === certsVolume.name).mountPath)!;
    const hub = path.join(nodeDir, 'docker.io', 'hosts.toml');
    try {
      // The note (stderr) comes before the files: both are in once the file is.
      assert.ok(await eventually(() => existsSync(hub) && output.includes('config_path'), 20_000, 100), `the script wrote ${hub}:\n${output}`);
    } finally {
      // The script loops (sleep 600): its whole process group goes, the sleep included.
      process.kill(-child.pid!, 'SIGKILL');
    }
    const toml = readFileSync(hub, 'utf8');
    assert.match(toml, /^server = "https:\/\/registry-1\.docker\.io"$/m);
    assert.match(toml, new RegExp(`^\\[host\\."http://10\\.96\\.0\\.50:${service.spec.ports[0].port}"\\]$`, 'm'), `the mirror at the ClusterIP and the Service's port:\n${toml}`);
    assert.match(toml, /capabilities = \["pull", "resolve"\]/);
    assert.match(output, new RegExp(`config_path = "${certsVolume.hostPath.path}"`), `its note names the node's directory, not the pod's mount:\n${output}`);
  });

  it("warm: a CronJob runs `pullmirror warm` (the image's entrypoint) against the Service, with the list it mounts", async (t) => {
    if (!requireKubectl(t)) return;
    const objects = await kustomize('single', ['warm'], serviceOnPort(5123));
    const cronJob = objects.find((o) => o.kind === 'CronJob');
    assert.ok(cronJob, 'a CronJob');
    assert.equal(cronJob.spec.concurrencyPolicy, 'Forbid', 'one run at a time');
    const spec = cronJob.spec.jobTemplate.spec.template.spec;
    const [container] = spec.containers;
    assert.equal(container.command, undefined, "the image's entrypoint, pullmirror, runs the arguments");
    const commandLine = argsOf(container);
    assert.equal(commandLine[0], 'warm');
    const mirror = new URL(commandLine[commandLine.indexOf('--mirror') + 1]);
    const service = find(objects, 'Service', 'pullmirror');
    assert.equal(mirror.hostname, service.metadata.name, 'the Service by its name (pods resolve cluster DNS)');
    assert.equal(service.spec.ports[0].port, 5123, 'rendered with the Service on a port of its own');
    assert.equal(Number(mirror.port), service.spec.ports[0].port, "the Service's port");
    const mounts = mountVolumes(objects, spec, container);
    const list = intoMounts(commandLine[commandLine.indexOf('--file') + 1], mounts);
    assert.ok(existsSync(list), `--file names a file of the mounted ConfigMap (${list})`);
    assert.ok(readFileSync(list, 'utf8').split('\n').some((line) => /^[a-z]/.test(line)), 'the list names images');
    // The built bundle accepts the arguments: `--help` of that command answers 0, and the whole
    // command line with the mirror's address unreachable gets as far as connecting (exit 1, not a usage error, 2).
    const help = await exec(process.execPath, [BUNDLE, commandLine[0], '--help']);
    assert.equal(help.code, 0, help.stderr);
    const args = commandLine.map((arg: string) => intoMounts(arg, mounts)).map((arg: string) => (arg === mirror.href.replace(/\/$/, '') ? 'http://127.0.0.1:9' : arg));
    const offline = await exec(process.execPath, [BUNDLE, ...args], cleanEnv(['REGISTRY_', 'PULLMIRROR_']));
    assert.equal(offline.code, 1, `${args.join(' ')}: ${offline.stderr}${offline.stdout}`);
  });
});

describe('the warm CronJob warms its list through a running mirror', { skip: missingBinaries }, () => {
  let world: World;
  before(async () => {
    world = await startWorld();
  });
  after(async () => {
    await world?.close();
  });

  it('its command line, run by the bundle against a mirror holding the listed images, warms each of them', async (t) => {
    if (!requireKubectl(t)) return;
    const objects = await kustomize('fleet', ['warm']);
    const spec = objects.find((o) => o.kind === 'CronJob').spec.jobTemplate.spec.template.spec;
    const [container] = spec.containers;
    const commandLine = argsOf(container);
    const mounts = mountVolumes(objects, spec, container);
    const listFile = intoMounts(commandLine[commandLine.indexOf('--file') + 1], mounts);
    const images = readFileSync(listFile, 'utf8').split('\n').map((line) => line.replace(/#.*/, '').trim()).filter(Boolean);
    assert.ok(images.length > 0);
    // The upstream holds every listed image (as Docker Hub does): `alpine:3.20` is library/alpine.
    for (const [n, reference] of images.entries()) {
      const [name, tag] = reference.split(':');
      await pushImage(world.registry.url, PUSHER, { name: name.includes('/') ? name : `library/${name}`, tag, layers: [randomLayer(`deploy-warm-${n}`, 16 * 1024)], format: 'docker' });
    }
    // The test's upstream stands for Docker Hub, as a company's Hub proxy would (proxy.namespace).
    const mirror = await world.startMirror({ bundle: true, config: { proxy: { namespace: 'docker.io' } } });
    const serviceUrl = commandLine[commandLine.indexOf('--mirror') + 1];
    const args = commandLine.map((arg: string) => (arg === serviceUrl ? mirror.url : intoMounts(arg, mounts)));
    const result = await exec(process.execPath, [BUNDLE, ...args], cleanEnv(['REGISTRY_', 'PULLMIRROR_']));
    assert.equal(result.code, 0, result.stderr + result.stdout);
    assert.match(result.stdout, new RegExp(`warmed ${images.length} of ${images.length} image\\(s\\)`));
    world.proxy.reset();
    for (const reference of images) await skopeoCopy(`docker://127.0.0.1:${mirror.port}/${reference.includes('/') ? reference : `library/${reference}`}`, `dir:${path.join(work.path, `warmed-${fileCount++}`)}`);
    assert.equal(world.proxy.count('GET', /\/blobs\//), 0, 'the listed images were in the store');
  });
});

describe('Prometheus rules: promtool checks them and their unit tests pass', () => {
  const alerts = () => parse(readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8'));

  it('promtool check rules deploy/prometheus/alerts.yml', async (t) => {
    if (!requireBinary('promtool', t)) return;
    const result = await exec('promtool', ['check', 'rules', path.join(ROOT, 'deploy/prometheus/alerts.yml')]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    const count = alerts().groups.flatMap((g: any) => g.rules).length;
    assert.match(result.stdout, new RegExp(`SUCCESS: ${count} rules found`));
  });

  it('promtool test rules: every alert shown firing and not firing', async (t) => {
    if (!requireBinary('promtool', t)) return;
    const tests = parse(readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.test.yml'), 'utf8')).tests.flatMap((test: any) => test.alert_rule_test ?? []);
    for (const rule of alerts().groups.flatMap((g: any) => g.rules)) {
      const cases = tests.filter((c: any) => c.alertname === rule.alert);
      assert.ok(cases.some((c: any) => c.exp_alerts?.length > 0), `${rule.alert}: a case where it fires`);
      assert.ok(cases.some((c: any) => (c.exp_alerts ?? []).length === 0), `${rule.alert}: a case where it does not`);
    }
    const result = await exec('promtool', ['test', 'rules', path.join(ROOT, 'deploy/prometheus/alerts.test.yml')]);
    assert.equal(result.code, 0, result.stdout + result.stderr);
    assert.match(result.stdout, /SUCCESS/);
  });

  it('the PromQL name reader finds metric names, not functions, labels or keywords', () => {
    assert.deepEqual(metricNames('histogram_quantile(0.99, sum by (le, registry) (rate(a_seconds_bucket{registry=~"x|y", le!="+Inf"}[5m] offset 1h)))'), ['a_seconds_bucket']);
    assert.deepEqual(metricNames('b / on (instance) group_left (window) c_total > 0.1 and d{job="$job"} unless absent(e[$__rate_interval])'), ['b', 'c_total', 'd', 'e']);
    assert.deepEqual(templateQueryNames('label_values(f_total{x="1"}, instance)'), ['f_total']);
  });
});

describe('the dashboard and the alerts read metrics a running mirror exports', { skip: missingBinaries }, () => {
  let world: World;
  before(async () => {
    world = await startWorld();
  });
  after(async () => {
    await world?.close();
  });

  it('after a miss, a hit and an eviction pass, /metrics has a sample of every metric they name', async () => {
    const image = await pushImage(world.registry.url, PUSHER, { name: 'team/dash', tag: '1', layers: [randomLayer('deploy-dash-0', 64 * 1024), randomLayer('deploy-dash-1', 8 * 1024)], format: 'docker' });
    // Docker Hub's allowance headers, as Docker Hub sends them on every answer.
    world.proxy.setFault({ kind: 'headers', headers: { 'ratelimit-limit': '100;w=21600', 'ratelimit-remaining': '76;w=21600' }, match: () => true });
    // One eviction pass ~12 s from now (node-cron, local time, a second each field): after the
    // pulls, so they meet a miss and a hit; with a 1 s TTL and no grace it evicts what they stored.
    const at = new Date(Date.now() + 12_000);
    const mirror = await world.startMirror({
      bundle: true,
      config: {
        proxy: { ttl: '1s' },
        storage: { delete: { enabled: true }, eviction: { schedule: `${at.getSeconds()} ${at.getMinutes()} ${at.getHours()} * * *`, grace: '0s', maxsize: '1GB' } },
      },
    });
    const pull = (n: number) => skopeoCopy(`docker://127.0.0.1:${mirror.port}/team/dash:1`, `dir:${path.join(work.path, `pull-${n}`)}`);
    await pull(1);
    await pull(2);
    const metrics = async () => (await fetch(`${mirror.url}/metrics`)).text();
    const first = exportedFamilies(await metrics());
    assert.ok(first.withSamples.has('pullmirror_cache_requests_total'), 'requests were counted');
    assert.ok(Date.now() < at.getTime() - 1000, 'the pulls were over before the eviction pass (slow machine: raise the delay)');
    let exposition = '';
    const evicted = await eventually(async () => {
      exposition = await metrics();
      return /^pullmirror_evictions_total\{kind="blob"\} [1-9]/m.test(exposition);
    }, 30_000, 500);
    assert.ok(evicted, `the eviction pass removed blobs:\n${mirror.logLines().filter((l) => /evict|pass/i.test(l.message)).map((l) => JSON.stringify(l)).join('\n')}`);
    const blobHits = Number(/^pullmirror_cache_requests_total\{kind="blob",result="hit",registry="[^"]*"\} (\S+)$/m.exec(exposition)?.[1]);
    assert.ok(blobHits >= image.layerDigests.length + 1, `the second pull took its config and layers from the cache (${blobHits} blob hits)`);

    const { withSamples, types } = exportedFamilies(exposition);
    const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/pullmirror.json'), 'utf8'));
    const rules = parse(readFileSync(path.join(ROOT, 'deploy/prometheus/alerts.yml'), 'utf8')).groups.flatMap((g: any) => g.rules);
    const used = new Map<string, string>();
    for (const name of dashboardNames(dashboard)) used.set(name, 'deploy/grafana/pullmirror.json');
    for (const rule of rules) for (const name of metricNames(rule.expr)) used.set(name, `alert ${rule.alert}`);
    assert.ok(used.size >= 15, `the expressions name metrics: ${[...used.keys()].join(', ')}`);
    const missing = [...used].filter(([name]) => !PROMETHEUS_OWN.has(name) && !withSamples.has(familyOf(name, types)));
    assert.deepEqual(missing, [], 'metrics named by the dashboard or the alerts that /metrics lacks');

    // The memory request of the Kubernetes pods is above what this mirror, the bundle as the image runs it, holds.
    const rss = Number(/^process_resident_memory_bytes (\S+)$/m.exec(exposition)?.[1]);
    const request = parse(readFileSync(path.join(ROOT, 'deploy/kubernetes/base/deployment.yaml'), 'utf8')).spec.template.spec.containers[0].resources.requests.memory;
    assert.ok(rss > 0 && rss < quantity(request), `RSS ${(rss / 2 ** 20).toFixed(1)} MiB is below the pods' memory request ${request}`);
    console.log(`# mirror RSS after two pulls and an eviction pass: ${(rss / 2 ** 20).toFixed(1)} MiB`);
  });

  it('the metrics the alerts added move as their events happen: an upstream that resets, a fill that fails, the cap', async () => {
    const image = await pushImage(world.registry.url, PUSHER, { name: 'team/flaky', tag: '1', layers: [randomLayer('deploy-flaky-0', 32 * 1024)], format: 'docker' });
    const mirror = await world.startMirror({ bundle: true, config: { storage: { eviction: { maxsize: '10GiB', highwatermark: 85 } }, proxy: { resume: { retries: 1, backoff: '10ms' } } } });
    const manifest = await fetch(`${mirror.url}/v2/team/flaky/manifests/1`, { headers: { accept: image.mediaType } });
    assert.equal(manifest.status, 200);
    await manifest.arrayBuffer();
    const blob = `${mirror.url}/v2/team/flaky/blobs/${image.layerDigests[0]}`;
    const metric = async (pattern: RegExp) => Number(pattern.exec(await (await fetch(`${mirror.url}/metrics`)).text())?.[1]);
    const failed = /^pullmirror_blob_fills_total\{result="failed"\} (\S+)$/m;
    const committed = /^pullmirror_blob_fills_total\{result="committed"\} (\S+)$/m;
    const reachable = /^pullmirror_upstream_reachable\{registry="[^"]+"\} (\S+)$/m;
    assert.equal(await metric(failed), 0, 'the failed series exists before any failure');
    assert.equal(await metric(reachable), 1, 'the manifest came from upstream');

    const outcome = () =>
      fetch(blob).then(
        async (response) => (response.status === 200 ? response.arrayBuffer().then(() => 'complete', () => 'cut') : `status ${response.status}`),
        () => 'cut',
      );
    try {
      // The upstream closes the connection without an answer: unreachable. No download started,
      // so no fill failed either (a fill is a download that got its first bytes).
      world.proxy.setFault({ kind: 'reset', match: (method, p) => method === 'GET' && p.includes('/blobs/') });
      assert.notEqual(await outcome(), 'complete');
      assert.equal(await metric(reachable), 0, 'the reset upstream counts as unreachable');
      assert.equal(await metric(failed), 0);
      // The upstream sends the blob with a byte changed: the digest does not verify, the fill fails.
      world.proxy.setFault({ kind: 'corrupt', atByte: 100, match: (method, p) => method === 'GET' && p.includes('/blobs/') });
      assert.notEqual(await outcome(), 'complete', 'a blob that did not verify is not served as complete');
      assert.ok(await eventually(async () => (await metric(failed)) >= 1), 'pullmirror_blob_fills_total{result="failed"} counts the failed fill');
      assert.equal(await metric(reachable), 1, 'an upstream that answers and then cuts is reachable');
    } finally {
      world.proxy.setFault(undefined);
    }
    const good = await fetch(blob);
    assert.equal(good.status, 200);
    await good.arrayBuffer();
    assert.ok(await eventually(async () => (await metric(committed)) >= 1), 'the next fill is committed');
    assert.equal(await metric(reachable), 1, 'reachable again');

    assert.equal(await metric(/^pullmirror_store_max_bytes (\S+)$/m), 10 * 2 ** 30);
    assert.equal(await metric(/^pullmirror_store_high_watermark_bytes (\S+)$/m), Math.floor(10 * 2 ** 30 * 0.85));
  });
});
