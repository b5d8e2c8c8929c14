/*
 * The fleet at a glance: every instance sharing the Redis, from their heartbeats (/api/fleet,
 * every 5 s while this view is open). One whose heartbeat stopped shows as gone for a while.
 */
export const FLEET_MARKUP = String.raw`<h2>Instances</h2>
<p id="fleet-note" class="sub">…</p>
<div id="fleet-body"></div>
`;

export const FLEET_SCRIPT = String.raw`
let fleetTimer;

async function drawFleet() {
  try {
    const f = await api('fleet');
    const alive = f.instances.filter((i) => i.state === 'alive').length;
    $('fleet-note').textContent = f.redis === 'none'
      ? 'no Redis configured: this instance alone'
      : f.redis === 'unavailable'
        ? 'Redis unreachable: other instances unknown until it answers again'
        : alive + ' alive, ' + (f.instances.length - alive) + ' gone · heartbeat every ' + duration(f.intervalMs) + ', gone after ' + duration(f.expiryMs) + ' without one';
    const rows = f.instances.map((i) => el('tr', { 'data-state': i.state, 'data-address': i.address, 'data-self': i.self ? 'true' : 'false' },
      el('td', {}, el('span', { class: 'badge ' + i.state }, i.state)),
      el('td', {}, i.address || '–', i.self ? el('span', { class: 'sub' }, ' (this one)') : ''),
      el('td', {}, i.hostname + ' · pid ' + i.pid),
      el('td', {}, i.version),
      el('td', { class: 'num' }, i.state === 'alive' ? duration(i.uptimeS * 1000) : '–'),
      el('td', { class: 'num' }, String(i.fillsInFlight)),
      i.state === 'alive' ? timeCell(i.lastSeen) : timeCell(i.stoppedAt || i.lastSeen, i.stoppedAt ? 'stopped ' : 'last seen ')));
    $('fleet-body').replaceChildren(table(['State', 'Address', 'Host', 'Version', 'Uptime ', 'Fills ', 'Last seen'], rows, 'fleet-instances'));
    ready('fleet', 'alive:' + alive + ',gone:' + (f.instances.length - alive));
  } catch (error) {
    failed('fleet', error);
  }
}

views.fleet = {
  enter() {
    drawFleet();
    clearInterval(fleetTimer);
    fleetTimer = setInterval(drawFleet, 5000);
  },
  leave() {
    clearInterval(fleetTimer);
  },
};
`;
