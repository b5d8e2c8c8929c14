const UNIT_MS: Record<string, number> = {
  ns: 1e-6, us: 1e-3, 'µs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000,
};

/**
 * Parses a Go duration ("168h", "1h30m", "500ms", "0") into milliseconds, because
 * distribution's config files write durations that way. A bare number other than 0 is
 * refused: distribution reads one as nanoseconds, and whoever wrote `ttl: 168` meant hours or
 * seconds, never that; the message suggests the unit.
 */
export function parseDuration(input: string | number): number {
  const text = String(input).trim();
  if (/^0+(\.0+)?$/.test(text)) return 0;
  if (/^-?\d+(\.\d+)?$/.test(text)) {
    throw new Error(`a duration needs a unit: ${text} → ${text}h? ${text}s? (Go syntax: 500ms, 30s, 5m, 168h)`);
  }
  const part = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  let index = 0;
  while (index < text.length) {
    part.lastIndex = index;
    const match = part.exec(text);
    if (!match) throw new Error(`invalid duration "${input}" (use Go syntax such as 30s, 5m or 168h)`);
    total += Number(match[1]) * UNIT_MS[match[2]];
    index = part.lastIndex;
  }
  if (index === 0) throw new Error(`invalid duration "${input}"`);
  return total;
}

/**
 * Milliseconds as a Go duration that parseDuration reads back to the same number, the way Go
 * prints one but without zero units: `168h`, `1h30m`, `1.5s`, `500ms`, `0s`.
 */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const hours = Math.floor(ms / 3_600_000);
  const minutes = Math.floor((ms % 3_600_000) / 60_000);
  const seconds = Number(((ms % 60_000) / 1000).toFixed(6));
  return `${hours ? `${hours}h` : ''}${minutes ? `${minutes}m` : ''}${seconds ? `${seconds}s` : ''}`;
}
