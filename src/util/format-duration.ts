const UNITS: [string, number][] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1_000],
];

/**
 * `7d`, `1h 30m`, `45s`, `1.2s`, `250ms`: a duration as people read it, at most two units
 * (the rest is cut, not rounded up: an uptime of 1h 59m 59s reads 1h 59m). A TTL of 10080
 * minutes is `7d`. Shared by the status page and the CLI so that both say the same thing.
 */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms)) return String(ms);
  const sign = ms < 0 ? '-' : '';
  let rest = Math.abs(ms);
  if (rest < 1_000) return `${sign}${Math.round(rest)}ms`;
  if (rest < 10_000) return `${sign}${(Math.floor(rest / 100) / 10).toString()}s`;
  const parts: string[] = [];
  for (const [unit, size] of UNITS) {
    if (rest < size && parts.length === 0) continue;
    const whole = Math.floor(rest / size);
    if (whole > 0) parts.push(`${whole}${unit}`);
    rest -= whole * size;
    if (parts.length === 2 || (parts.length === 1 && whole === 0)) break;
  }
  return sign + parts.join(' ');
}
