/*
 * The fleet at a glance: every instance sharing the Redis, from their heartbeats (/api/fleet,
 * every 2 s while this view is open), with each one's own traffic and its downloads in flight
 * (published as they start and end). One whose heartbeat stopped shows as gone for a while.
 */
import type { FleetView } from './api-types.ts';
import { api } from './api.ts';
import { timeCell } from './cells.ts';
import { $, el, table } from './dom.ts';
import { formatBytes, formatDuration, percent } from './format.ts';
import { failed, ready, registerView } from './router.ts';

let fleetTimer: ReturnType<typeof setInterval> | undefined;

async function drawFleet(): Promise<void> {
  try {
    const f = await api<FleetView>('fleet');
    const alive = f.instances.filter((i) => i.state === 'alive').length;
    $('fleet-note').textContent =
      f.redis === 'none'
        ? 'no Redis configured: this instance alone'
        : f.redis === 'unavailable'
          ? 'Redis unreachable: other instances unknown until it answers again'
          : `${alive} alive, ${f.instances.length - alive} gone · heartbeat every ${formatDuration(f.intervalMs)}, gone after ${formatDuration(f.expiryMs)} without one`;
    const rows = f.instances.map((i) => {
      const t = i.traffic;
      const answered = t ? t.hits + t.misses : 0;
      return el(
        'tr',
        { 'data-state': i.state, 'data-address': i.address, 'data-self': i.self ? 'true' : 'false' },
        el('td', {}, el('span', { class: `badge ${i.state}` }, i.state)),
        el('td', {}, i.address || '–', i.self ? el('span', { class: 'sub' }, ' (this one)') : ''),
        el('td', {}, `${i.hostname} · pid ${i.pid}`),
        el('td', {}, i.version),
        el('td', { class: 'num' }, i.state === 'alive' ? formatDuration(i.uptimeS * 1000) : '–'),
        el('td', { class: 'num', 'data-col': 'pulls', 'data-value': t?.pulls ?? '' }, t ? t.pulls.toLocaleString('en') : '–'),
        el('td', { class: 'num', 'data-col': 'hit-ratio' }, t && answered > 0 ? percent(t.hits / answered) : '–'),
        el('td', { class: 'num', 'data-col': 'traffic', title: t ? `${formatBytes(t.bytesFromCache)} from cache, ${formatBytes(t.bytesFromUpstream)} from upstream` : undefined }, t ? formatBytes(t.bytesFromCache + t.bytesFromUpstream) : '–'),
        el('td', { class: 'num', 'data-col': 'fills', 'data-value': i.fillsInFlight }, i.fillsInFlight.toLocaleString('en')),
        i.state === 'alive' ? timeCell(i.lastSeen) : timeCell(i.stoppedAt ?? i.lastSeen, i.stoppedAt ? 'stopped ' : 'last seen '),
      );
    });
    $('fleet-body').replaceChildren(table(['State', 'Address', 'Host', 'Version', 'Uptime ', 'Pulls ', 'Hit ratio ', 'Served ', 'Downloads ', 'Last seen'], rows, 'fleet-instances'));
    ready('fleet', `alive:${alive},gone:${f.instances.length - alive}`);
  } catch (error) {
    failed('fleet', error);
  }
}

registerView('fleet', {
  enter() {
    void drawFleet();
    clearInterval(fleetTimer);
    fleetTimer = setInterval(() => void drawFleet(), 2000);
  },
  leave() {
    clearInterval(fleetTimer);
  },
});
