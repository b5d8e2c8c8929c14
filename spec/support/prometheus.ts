/**
 * Reads Prometheus text exposition as a scraper would, so tests compare counters the way an
 * operator's dashboard does.
 */

/** Every sample of a scrape: `name{a="1",b="2"}` → value. */
export type Samples = Map<string, number>;

export async function scrape(url: string): Promise<Samples> {
  const response = await fetch(url);
  if (response.status !== 200) throw new Error(`scrape ${url}: status ${response.status}`);
  const samples: Samples = new Map();
  for (const line of (await response.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?\s+(\S+)$/.exec(line);
    if (match) samples.set(`${match[1]}${normalizeLabels(match[2] ?? '')}`, Number(match[3]));
  }
  return samples;
}

function normalizeLabels(raw: string): string {
  if (!raw) return '';
  const pairs = [...raw.slice(1, -1).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)].map((m) => `${m[1]}="${m[2]}"`);
  return `{${pairs.sort().join(',')}}`;
}

/** One sample's value (0 when absent, as a counter not yet moved). */
export function sample(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  const key = Object.keys(labels).length === 0 ? name : `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).sort().join(',')}}`;
  return samples.get(key) ?? 0;
}

/** The sum of every sample of `name` whose labels include `labels`. */
export function sum(samples: Samples, name: string, labels: Record<string, string> = {}): number {
  let total = 0;
  const wanted = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const [key, value] of samples) {
    if (key !== name && !key.startsWith(`${name}{`)) continue;
    if (wanted.every((pair) => key.includes(pair))) total += value;
  }
  return total;
}
