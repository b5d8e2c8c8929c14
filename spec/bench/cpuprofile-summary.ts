/**
 * A V8 .cpuprofile (`node --cpu-prof`) in a few lines, for a closing note: the wall time sampled,
 * the shares of (idle), (garbage collector) and (program), and the functions with the most self
 * time (a native binding such as writeBuffer is its system call: the socket or file copy).
 * `node spec/bench/cpuprofile-summary.ts FILE [TOP] [FROM-TO,…]`; the windows (µs, CLOCK_MONOTONIC,
 * the profile's clock) keep only the samples of the GETs that cold-profile.ts and hit-profile.ts
 * print (`window FROM-TO`).
 */
import { readFileSync } from 'node:fs';

interface Node { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }
const file = process.argv[2];
const top = Number(process.argv[3] ?? 25);
const windows = (process.argv[4] ?? '').split(',').filter(Boolean).map((w) => w.split('-').map(Number));
const p = JSON.parse(readFileSync(file, 'utf8')) as { nodes: Node[]; samples: number[]; timeDeltas: number[]; startTime: number; endTime: number };
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
let t = p.startTime;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i];
  if (windows.length && !windows.some(([a, b]) => t >= a && t <= b)) continue;
  self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);
const byFn = new Map<string, number>();
for (const [id, us] of self) {
  const cf = byId.get(id)!.callFrame;
  const url = cf.url.replace(/^.*\/(dist|src|node_modules)\//, '$1/').replace(/^node:/, 'node:');
  const key = `${cf.functionName || '(anonymous)'} ${url ? `${url}:${cf.lineNumber + 1}` : ''}`.trim();
  byFn.set(key, (byFn.get(key) ?? 0) + us);
}
const rows = [...byFn].sort((a, b) => b[1] - a[1]);
const pct = (us: number) => ((100 * us) / total).toFixed(1).padStart(5) + '%';
const ms = (us: number) => (us / 1000).toFixed(0).padStart(6) + ' ms';
console.log(`${file}: wall ${(total / 1e6).toFixed(2)} s sampled (${p.samples.length} samples)`);
for (const k of ['(idle)', '(garbage collector)', '(program)']) console.log(`  ${k.padEnd(22)} ${ms(byFn.get(k) ?? 0)} ${pct(byFn.get(k) ?? 0)}`);
const busy = total - (byFn.get('(idle)') ?? 0);
console.log(`  busy (not idle)        ${ms(busy)} ${pct(busy)}`);
console.log(`top ${top} self time:`);
for (const [k, us] of rows.slice(0, top)) console.log(`  ${ms(us)} ${pct(us)}  ${k}`);
