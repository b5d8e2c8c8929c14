import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load.ts';
import { schemaKeys } from '../../src/config/schema-paths.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const envExample = readFileSync(path.join(ROOT, '.env.example'), 'utf8');
const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

/** The variables .env.example sets (uncommented KEY=VALUE lines), as a shell would read them. */
function exampleAssignments(): [string, string][] {
  return envExample
    .split('\n')
    .filter((line) => /^[A-Z][A-Z0-9_]*=/.test(line))
    .map((line) => {
      const [name, ...rest] = line.split('=');
      return [name, rest.join('=').replace(/^"(.*)"$/, '$1')];
    });
}

const at = (config: unknown, key: string) => key.split('.').reduce<any>((node, part) => node?.[part], config);

describe('.env.example and the README against the schema', () => {
  it('.env.example sets only keys that exist, each to the schema default', () => {
    const defaults = loadConfig({ env: {} });
    const assignments = exampleAssignments();
    assert.ok(assignments.length > 20, 'the example sets the defaults');
    for (const [name, value] of assignments) {
      const warnings: string[] = [];
      const config = loadConfig({ env: { [name]: value }, warnings });
      assert.deepEqual(warnings, [], `${name} names a key`);
      const key = name.slice('REGISTRY_'.length).toLowerCase().replaceAll('_', '.');
      assert.notEqual(at(defaults, key), undefined, `${name}: ${key} has a default`);
      assert.deepEqual(at(config, key), at(defaults, key), `${name}=${value} is the default of ${key}`);
    }
    // All of them at once, as `set -a; . .env.example` does: the same config as none.
    assert.deepEqual(loadConfig({ env: Object.fromEntries(assignments) }), defaults);
  });

  it('documents every key of the schema in the README or .env.example', () => {
    const documented = (key: string) => {
      const variable = `REGISTRY_${key.toUpperCase().replaceAll('.', '_')}`;
      return new RegExp(`\\b${variable}\\b`).test(envExample) || new RegExp(`(^|[^a-z.])${key.replaceAll('.', '\\.')}(?![a-z])`).test(readme);
    };
    const missing = schemaKeys().map((key) => key.path).filter((key) => !documented(key));
    assert.deepEqual(missing, [], 'keys documented nowhere');
  });
});
