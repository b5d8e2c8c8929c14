/*
 * The overview: store figures, hit ratio, bytes, the traffic chart of the last hour, the most
 * pulled repositories and the recent pulls, redrawn from every /api/status answer (5 s).
 */
import type { Capacity, StatusDocument } from './api-types.ts';
import { drawChart } from './chart.ts';
import { $, breakable, code, el } from './dom.ts';
import { clock, formatBytes, percent, plural, relative, when } from './format.ts';
import { onStatus } from './router.ts';

/** Shows a figure: readable text, the exact value in data-value and the tooltip. */
function show(id: string, value: number | string, text?: string): void {
  const node = $(id);
  node.dataset.value = String(value);
  node.title = String(value);
  node.textContent = text ?? Number(value).toLocaleString('en');
}

/** The size cap card: the store against storage.eviction.maxsize; the disk card: its free space. */
function renderCapacity(c: Capacity | undefined): void {
  if (!c) return;
  if (c.maxSize > 0) {
    show('cap-used', c.bytes / c.maxSize, percent(c.bytes / c.maxSize));
    $('cap-detail').replaceChildren(
      el('span', { class: 'line' }, `${formatBytes(c.bytes)} of ${formatBytes(c.maxSize)}`),
      el('span', { class: 'line' }, `evicts past ${c.highWatermark} % down to ${c.lowWatermark} %`),
    );
  } else {
    show('cap-used', '', 'no cap');
    $('cap-detail').replaceChildren(el('span', { class: 'line' }, `${formatBytes(c.bytes)} stored`), el('span', { class: 'line' }, breakable('storage.eviction.maxsize is 0')));
  }
  if (c.disk) {
    show('disk-free', c.disk.free, formatBytes(c.disk.free));
    $('disk-detail').replaceChildren(el('span', { class: 'line' }, `of ${formatBytes(c.disk.total)}`), el('span', { class: 'line' }, `blobs pass through below ${formatBytes(c.minFree)}`));
  } else if (c.driver === 's3') {
    // A bucket tells no free space: what it holds is the store's size (the size cap card).
    show('disk-free', '', 'no limit');
    $('disk-detail').replaceChildren(el('span', { class: 'line' }, 'the store is a bucket'));
  }
}

function renderEvictionCard(e: StatusDocument['eviction']): void {
  if (!e) return;
  const next = $('next-eviction');
  next.textContent = e.running ? 'running' : e.nextRun ? clock(e.nextRun) : 'none';
  next.title = e.nextRun ? when(e.nextRun) : (e.reason ?? '');
  $('last-eviction').replaceChildren(
    breakable(!e.scheduled ? (e.reason ?? '') : e.lastPass ? `last: ${relative(e.lastPass.startedAt)}, ${formatBytes(e.lastPass.freed)} freed` : 'no pass yet'),
  );
}

/** Whose figures these are: this instance's, or the fleet's (every instance on the Redis). */
function renderScope(s: StatusDocument): void {
  const scope = s.scope;
  const node = $('scope');
  node.dataset.scope = scope.kind;
  node.textContent =
    scope.kind === 'fleet'
      ? `traffic of the fleet: ${plural(scope.instances, 'instance')} on the Redis (per instance under Fleet)`
      : scope.kind === 'unavailable'
        ? `traffic of this instance only (${scope.reason})`
        : 'traffic of this instance';
  node.className = scope.kind === 'unavailable' ? 'due' : '';
}

/** The signature policy of every registry that has one: its rules, and what it verified and refused. */
function renderSignatures(s: StatusDocument): void {
  const policed = (s.registries ?? []).filter((r) => r.signatures);
  $('signatures').hidden = policed.length === 0;
  if (policed.length === 0) return;
  $('signature-rules').replaceChildren(
    ...policed.flatMap((r) =>
      r.signatures!.rules.map((rule) =>
        el('tr', {}, el('td', {}, r.namespace), el('td', {}, rule.repositories.join(', ')), el('td', { class: rule.mode === 'enforce' ? '' : 'due' }, rule.mode), el('td', {}, breakable(rule.keys.join(', ')))),
      ),
    ),
  );
  const lines = policed.map((r) => {
    const p = r.signatures!;
    const last = p.lastRefusal;
    const refusal = last ? `; last ${last.mode === 'warn' ? 'warned' : 'refused'}: ${last.repository}@${last.digest.slice(0, 19)}… (${last.reason}) at ${clock(last.at)}` : '';
    return `${r.namespace}: ${p.verified.toLocaleString('en')} verified, ${p.refused.toLocaleString('en')} refused, ${p.warned.toLocaleString('en')} served in warn mode${refusal}`;
  });
  $('signature-figures').replaceChildren(...lines.map((line) => el('span', { class: 'line' }, line)));
}

function render(s: StatusDocument): void {
  const creds = s.upstream.credentials;
  const refused = creds?.state === 'refused';
  // An unreachable upstream leaves cached images pullable (the instance stays ready): said here, not hidden.
  const reachability = s.upstream.reachability;
  const down = reachability?.state === 'unreachable';
  $('upstream').textContent =
    s.upstream.url +
    (down ? ` (unreachable since ${clock(reachability.since)}: serving cached images only)` : '') +
    (refused ? ` (credentials refused by ${creds.realm ?? 'the upstream'}: pulling anonymously)` : '');
  $('upstream').className = down || refused ? 'miss' : '';
  // Other registries (proxy.remotes): namespace and repositories held, unreachable and refused credentials marked.
  const others = (s.registries ?? []).filter((r) => !r.default);
  $('registries').textContent =
    others.length === 0
      ? ''
      : ` · also ${others.map((r) => `${r.namespace} (${plural(r.store.repositories, 'repository', 'repositories')}${r.reachability?.state === 'unreachable' ? ', unreachable' : ''}${r.credentials?.state === 'refused' ? ', credentials refused' : ''})`).join(', ')}`;
  show('store-size', s.store.bytes, formatBytes(s.store.bytes));
  show('store-blobs', s.store.blobs, plural(s.store.blobs, 'blob'));
  show('store-repositories', s.store.repositories, plural(s.store.repositories, 'repository', 'repositories'));
  const t = s.totals;
  show('hit-ratio', t.hitRatio ?? '', t.hitRatio === null ? '–' : percent(t.hitRatio));
  show('hits', t.hits + t.stale, plural(t.hits + t.stale, 'hit'));
  show('misses', t.misses, plural(t.misses, 'miss', 'misses'));
  show('bytes-saved', t.bytesSaved, formatBytes(t.bytesSaved));
  show('bytes-upstream', t.bytesFromUpstream, formatBytes(t.bytesFromUpstream));
  show('pulls', t.pulls);
  show('fills', s.fillsInFlight, plural(s.fillsInFlight, 'download'));
  const rl = s.upstream.rateLimit;
  $('rate-limit').textContent = rl ? `${rl.remaining}${rl.limit !== undefined ? ` / ${rl.limit}` : ''}` : '–';
  const chart = document.querySelector<SVGSVGElement>('#chart');
  if (chart) drawChart(chart, s.minutes);
  $('top').replaceChildren(...s.topRepositories.map((r) => el('tr', {}, el('td', {}, r.repository), el('td', { class: 'num' }, r.pulls.toLocaleString('en')))));
  $('recent').replaceChildren(
    ...s.recentPulls.map((p) =>
      el(
        'tr',
        { 'data-instance': p.instance },
        el('td', { title: when(p.at), class: 'nowrap' }, clock(p.at)),
        el('td', {}, `${p.repository}:${p.reference}`, p.instance ? el('span', { class: 'sub' }, ` via ${p.instance}`) : ''),
        el('td', { class: p.cache }, p.cache),
        el('td', {}, p.digest ? code(p.digest.slice(0, 19), p.digest) : ''),
      ),
    ),
  );
  renderCapacity(s.capacity);
  renderEvictionCard(s.eviction);
  renderScope(s);
  renderSignatures(s);
  $('updated').textContent = clock(s.now);
  $('updated').title = when(s.now);
  document.body.dataset.loaded = 'true';
}

onStatus(render);
