/*
 * How the page writes figures: bytes in IEC units and durations from the same modules as the
 * CLI (src/util), and one date format, `2026-12-03 08:15:23` in the browser's time zone
 * (`08:15:23` where the date is today's and the column holds times only).
 */
export { formatBytes } from '../../../util/format-bytes.ts';
export { formatDuration } from '../../../util/format-duration.ts';
export { plural } from '../../../util/plural.ts';
import { formatDuration } from '../../../util/format-duration.ts';

const pad = (n: number) => String(n).padStart(2, '0');

/** `2026-12-03 08:15:23` (local time); `–` for no time. */
export function when(ms: number | null | undefined): string {
  if (!ms) return '–';
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${clock(ms)}`;
}

/** `08:15:23`: the time part of when(). */
export function clock(ms: number): string {
  const d = new Date(ms);
  return `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** `08:15`: a minute of the traffic chart. */
export function minuteOf(ms: number): string {
  return clock(ms).slice(0, 5);
}

/** "3m ago", "in 2h 5m": a person reads a distance; the tooltip has the date. */
export function relative(ms: number, now = Date.now()): string {
  const d = ms - now;
  if (Math.abs(d) < 1000) return d < 0 ? '<1s ago' : 'in <1s';
  const text = formatDuration(Math.abs(d) < 10_000 ? Math.round(Math.abs(d) / 1000) * 1000 : Math.abs(d));
  return d < 0 ? `${text} ago` : `in ${text}`;
}

/** `50.0 %` */
export function percent(ratio: number): string {
  return `${(ratio * 100).toFixed(1)} %`;
}
