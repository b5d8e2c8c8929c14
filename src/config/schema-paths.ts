import { z } from 'zod';
import { configSchema } from './schema.ts';

/*
 * Questions about the shape of the one schema, answered by walking it rather than by a second
 * list of keys that could drift: does a path name a key (REGISTRY_* variables), which keys are
 * leaves (the documentation test), which are accepted and ignored (start-up warnings).
 */

export type Node = z.core.$ZodType;
type Meta = { ignored?: boolean; unsupported?: boolean };

/** The fields of zod's internal definitions this walk reads (zod types them per kind). */
export interface Def {
  type: string;
  innerType: Node;
  in: Node;
  out: Node;
  options: Node[];
  element: Node;
  shape: Record<string, Node>;
  valueType: Node;
}
export const def = (node: Node) => node._zod.def as unknown as Def;
const meta = (node: Node): Meta => (z.globalRegistry.get(node as z.ZodType) as Meta | undefined) ?? {};

const WRAPPERS = new Set(['optional', 'nullable', 'default', 'prefault', 'readonly', 'catch', 'pipe', 'union']);

/** The schemas `node` stands for, itself included (wrappers, preprocess pipes, unions), each once. */
export function variants(node: Node): Node[] {
  const d = def(node);
  switch (d.type) {
    case 'optional':
    case 'nullable':
    case 'default':
    case 'prefault':
    case 'readonly':
    case 'catch':
      return [node, ...variants(d.innerType)];
    case 'pipe':
      return [node, ...variants(d.in), ...variants(d.out)];
    case 'union':
      return [node, ...d.options.flatMap(variants)];
    default:
      return [node];
  }
}

/** The schemas a wrapper stands for, without the wrappers; itself otherwise. */
function unwrap(node: Node): Node[] {
  return variants(node).filter((inner) => !WRAPPERS.has(def(inner).type));
}

function isOpaque(node: Node): boolean {
  const m = meta(node);
  return m.ignored === true || m.unsupported === true || def(node).type === 'unknown' || def(node).type === 'any';
}

/** Whether `path` (lower-case key names) names a key of the schema, or lies inside a free-form one. */
export function namesKey(path: string[], node: Node = configSchema): boolean {
  if (path.length === 0) return true;
  if (isOpaque(node)) return true;
  const [key, ...rest] = path;
  return unwrap(node).some((inner) => {
    if (isOpaque(inner)) return true;
    const d = def(inner);
    if (d.type === 'object') return Object.hasOwn(d.shape, key) && namesKey(rest, d.shape[key]);
    if (d.type === 'record') return namesKey(rest, d.valueType);
    return false;
  });
}

export interface SchemaKey {
  path: string;
  ignored: boolean;
  unsupported: boolean;
}

/** Every key down to the leaves (a record or a list is a leaf: it is set as a whole). */
export function schemaKeys(node: Node = configSchema, prefix = ''): SchemaKey[] {
  const keys: SchemaKey[] = [];
  const objects = unwrap(node).filter((inner) => !isOpaque(inner) && def(inner).type === 'object');
  for (const object of objects) {
    for (const [key, child] of Object.entries(def(object).shape)) {
      const path = prefix ? `${prefix}.${key}` : key;
      const m = meta(child);
      const isObject = unwrap(child).some((inner) => def(inner).type === 'object');
      if (m.ignored || m.unsupported || !isObject) keys.push({ path, ignored: m.ignored === true, unsupported: m.unsupported === true });
      else keys.push(...schemaKeys(child, path));
    }
  }
  return keys;
}

/**
 * Whether the key at `path` takes a section or a list (proxy.remotes, storage.eviction.keep,
 * log.fields, http.trustedproxies), so that a REGISTRY_* value is read as YAML. Any other key's
 * value is taken as the text it is: a password `a: b` or `[x]` stays that string, and the
 * schema converts numbers, booleans and durations from text as it does in a file.
 */
export function takesStructure(path: string[], node: Node = configSchema): boolean {
  const inner = unwrap(node);
  if (path.length === 0) return inner.some((n) => isOpaque(n) || ['object', 'record', 'array'].includes(def(n).type));
  const [key, ...rest] = path;
  return inner.some((n) => {
    if (isOpaque(n)) return true;
    const d = def(n);
    if (d.type === 'object') return Object.hasOwn(d.shape, key) && takesStructure(rest, d.shape[key]);
    if (d.type === 'record') return takesStructure(rest, d.valueType);
    return false;
  });
}
