const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/**
 * `1.5 MiB`: sizes as people read them, in binary units with their binary names (the `bytes`
 * package divides by 1024 but prints MB, which is a thousand kilobytes to everyone else).
 */
export function formatBytes(n: number, decimals = 1): string {
  if (!Number.isFinite(n)) return `${n} B`;
  let value = Math.abs(n);
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = unit === 0 ? String(value) : value.toFixed(decimals).replace(/\.0+$/, '');
  return `${n < 0 ? '-' : ''}${text} ${UNITS[unit]}`;
}
