/**
 * JSON from outside (a manifest, an image config, a record read back) as what it is: unknown
 * until each field is checked. `fields` gives an object's own fields, or nothing for any other
 * value, so readers check each field's type where they use it instead of trusting `any`.
 */
export type JsonFields = Readonly<Record<string, unknown>>;

/** Parses JSON without throwing: undefined for text that is not JSON. */
export function parseUntrustedJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** An object's fields; undefined for arrays, null and every other value. */
export function fields(value: unknown): JsonFields | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as JsonFields) : undefined;
}

/** A field's value when it is a string. */
export function stringField(value: JsonFields | undefined, name: string): string | undefined {
  const field = value && Object.hasOwn(value, name) ? value[name] : undefined;
  return typeof field === 'string' ? field : undefined;
}

/** A field's value when it is an array (of unknown items). */
export function arrayField(value: JsonFields | undefined, name: string): readonly unknown[] | undefined {
  const field = value && Object.hasOwn(value, name) ? value[name] : undefined;
  return Array.isArray(field) ? (field as unknown[]) : undefined;
}
