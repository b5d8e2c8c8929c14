/**
 * `1 repository`, `2 repositories`, `0 tags`: a count with its noun (the plural is given when
 * it is not the noun plus "s"). Shared by the status page and the CLI.
 */
export function plural(n: number, noun: string, nouns = `${noun}s`): string {
  return `${n.toLocaleString('en')} ${n === 1 ? noun : nouns}`;
}

/**
 * The same with the digits as they are (`150000 blobs`, not `150,000 blobs`): the lines of
 * `gc` and `stats`, which scripts read with `\d+`.
 */
export function pluralPlain(n: number, noun: string, nouns = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : nouns}`;
}
