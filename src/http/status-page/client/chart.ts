/*
 * The traffic chart: bytes served per minute over the last hour, from the cache and through
 * upstream stacked, with the byte scale on the left and the minutes below. Drawn in the SVG's
 * own pixels (the viewBox is its width on screen), so the axis text is never stretched.
 */
import type { MinuteCounters } from './api-types.ts';
import { svg } from './dom.ts';
import { formatBytes, minuteOf, plural } from './format.ts';

const HEIGHT = 180;
const LEFT = 72;
const RIGHT = 8;
const TOP = 8;
const BOTTOM = 22;

/** A scale for `max` bytes: a round step in the unit the top falls in (1, 2 or 5 × 10^n of KiB, MiB…). */
export function byteTicks(max: number, wanted = 4): number[] {
  if (max <= 0) return [0, 1];
  let unit = 1;
  while (max / unit >= 1024) unit *= 1024;
  const raw = max / unit / wanted;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = ([1, 2, 5, 10].map((f) => f * magnitude).find((s) => s >= raw) ?? 10 * magnitude) * unit;
  const ticks: number[] = [];
  for (let v = 0; v < max + step; v += step) ticks.push(v);
  return ticks;
}

export function drawChart(chart: SVGSVGElement, minutes: MinuteCounters[]): void {
  const width = Math.max(300, Math.round(chart.getBoundingClientRect().width) || 600);
  chart.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
  const plotWidth = width - LEFT - RIGHT;
  const plotHeight = HEIGHT - TOP - BOTTOM;
  const max = Math.max(0, ...minutes.map((m) => m.bytesFromCache + m.bytesFromUpstream));
  const ticks = byteTicks(max);
  const top = ticks[ticks.length - 1];
  const y = (bytes: number) => TOP + plotHeight - (bytes / top) * plotHeight;
  const step = plotWidth / Math.max(1, minutes.length);
  const nodes: SVGElement[] = [];

  for (const tick of ticks) {
    nodes.push(svg('line', { class: 'grid', x1: LEFT, x2: width - RIGHT, y1: y(tick), y2: y(tick) }));
    nodes.push(svg('text', { class: 'axis y', x: LEFT - 6, y: y(tick) + 4, 'text-anchor': 'end', 'data-value': tick }, formatBytes(tick)));
  }
  minutes.forEach((m, i) => {
    let base = m.bytesFromCache + m.bytesFromUpstream;
    const label = `${minuteOf(m.minute)}: ${plural(m.requests, 'request')}, ${formatBytes(m.bytesFromCache)} from cache, ${formatBytes(m.bytesFromUpstream)} from upstream`;
    for (const [value, kind] of [[m.bytesFromUpstream, 'upstream'], [m.bytesFromCache, 'cache']] as const) {
      if (value <= 0) continue;
      const h = Math.max(1, (value / top) * plotHeight);
      nodes.push(svg('rect', { class: `bar-${kind}`, x: LEFT + i * step + 1, y: y(base), width: Math.max(1, step - 2), height: h }, svg('title', {}, label)));
      base -= value;
    }
  });
  // A time below every quarter of the hour shown, and the last minute at the right end.
  const marks = new Set([0, Math.round(minutes.length / 4), Math.round(minutes.length / 2), Math.round((3 * minutes.length) / 4), minutes.length - 1]);
  for (const i of marks) {
    const m = minutes[i];
    if (!m) continue;
    const x = LEFT + i * step + step / 2;
    nodes.push(svg('line', { class: 'tick', x1: x, x2: x, y1: TOP + plotHeight, y2: TOP + plotHeight + 4 }));
    nodes.push(svg('text', { class: 'axis x', x, y: HEIGHT - 6, 'text-anchor': i === minutes.length - 1 ? 'end' : i === 0 ? 'start' : 'middle', 'data-minute': m.minute }, minuteOf(m.minute)));
  }
  nodes.push(svg('line', { class: 'baseline', x1: LEFT, x2: width - RIGHT, y1: TOP + plotHeight, y2: TOP + plotHeight }));
  chart.replaceChildren(...nodes);
  chart.dataset.minutes = String(minutes.length);
  chart.dataset.requests = String(minutes.reduce((sum, m) => sum + m.requests, 0));
}
