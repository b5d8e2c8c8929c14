import { RegistryError } from './errors.ts';

/** One path component of a repository name, from the OCI distribution spec. */
const COMPONENT = /^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*$/;
const TAG = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** distribution's limit on the whole name. */
export const MAX_NAME_LENGTH = 255;

/**
 * Validates a repository name as it appears in a request path. Because every component must
 * match the spec's grammar, a valid name can never contain `..`, `%`, `/` runs or absolute
 * paths, which is what lets the store use it as a directory path.
 */
export function validateName(name: string): string {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH) {
    throw new RegistryError('NAME_INVALID', 'invalid repository name', { detail: { name: name.slice(0, 300) } });
  }
  for (const component of name.split('/')) {
    if (!COMPONENT.test(component)) {
      throw new RegistryError('NAME_INVALID', 'invalid repository name', { detail: { name: name.slice(0, 300) } });
    }
  }
  return name;
}

export function validateTag(tag: string): string {
  if (!TAG.test(tag)) throw new RegistryError('TAG_INVALID', 'invalid tag', { status: 400, detail: { tag: tag.slice(0, 200) } });
  return tag;
}
