/*
 * The overview: store figures, hit ratio, bytes, the traffic chart of the last hour, the most
 * pulled repositories and the recent pulls, redrawn from /api/status every 5 s.
 */
export const OVERVIEW_MARKUP = String.raw`<div class="cards">
  <div class="card"><div class="label">Store size</div><div class="value" id="store-size" data-value="">…</div><div class="detail"><span id="store-blobs" data-value="">…</span> blobs · <span id="store-repositories" data-value="">…</span> repositories</div></div>
  <div class="card"><div class="label">Hit ratio</div><div class="value" id="hit-ratio" data-value="">…</div><div class="detail"><span id="hits" data-value="">…</span> hits · <span id="misses" data-value="">…</span> misses</div></div>
  <div class="card"><div class="label">Saved from upstream</div><div class="value" id="bytes-saved" data-value="">…</div><div class="detail">bytes served from the cache</div></div>
  <div class="card"><div class="label">Fetched through upstream</div><div class="value" id="bytes-upstream" data-value="">…</div><div class="detail">bytes served on a miss</div></div>
  <div class="card"><div class="label">Pulls</div><div class="value" id="pulls" data-value="">…</div><div class="detail"><span id="fills" data-value="">0</span> downloads in flight</div></div>
  <div class="card"><div class="label">Docker Hub allowance</div><div class="value" id="rate-limit">–</div><div class="detail">pulls remaining in the window</div></div>
  <div class="card"><div class="label">Size cap</div><div class="value" id="cap-used" data-value="">–</div><div class="detail" id="cap-detail">…</div></div>
  <div class="card"><div class="label">Disk free</div><div class="value" id="disk-free" data-value="">–</div><div class="detail" id="disk-detail">…</div></div>
  <div class="card"><div class="label">Next eviction</div><div class="value" id="next-eviction">–</div><div class="detail" id="last-eviction">…</div></div>
</div>

<h2>Traffic, last 60 minutes <span class="legend sub"><span style="background:var(--cache)"></span>from cache<span style="background:var(--upstream)"></span>from upstream</span></h2>
<svg id="chart" width="100%" height="160" viewBox="0 0 600 160" preserveAspectRatio="none" role="img" aria-label="bytes served per minute"></svg>

<div class="cols">
  <div>
    <h2>Most pulled repositories</h2>
    <table><thead><tr><th>Repository</th><th class="num">Pulls</th></tr></thead><tbody id="top"></tbody></table>
  </div>
  <div>
    <h2>Recent pulls</h2>
    <table><thead><tr><th>Time</th><th>Image</th><th>Cache</th><th>Digest</th></tr></thead><tbody id="recent"></tbody></table>
  </div>
</div>

`;

export const OVERVIEW_SCRIPT = String.raw`
function formatBytes(n) {
  const units = ['B', 'KB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return (i === 0 ? String(v) : v.toFixed(v < 10 ? 2 : 1)) + ' ' + units[i];
}

/** Shows a number: readable text, the exact value in data-value and the tooltip. */
function show(id, value, text) {
  const el = $(id);
  el.dataset.value = String(value);
  el.title = String(value);
  el.textContent = text === undefined ? Number(value).toLocaleString('en') : text;
}

function cell(row, text, cls) {
  const td = row.insertCell();
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}

function drawChart(minutes) {
  const svg = $('chart');
  const ns = 'http://www.w3.org/2000/svg';
  svg.replaceChildren();
  const width = 600, height = 150, top = 5;
  const max = Math.max(1, ...minutes.map((m) => m.bytesFromCache + m.bytesFromUpstream));
  const step = width / minutes.length;
  minutes.forEach((m, i) => {
    let y = top + height;
    for (const [value, color] of [[m.bytesFromCache, 'var(--cache)'], [m.bytesFromUpstream, 'var(--upstream)']]) {
      if (value <= 0) continue;
      const h = Math.max(1, (value / max) * height);
      y -= h;
      const rect = document.createElementNS(ns, 'rect');
      rect.setAttribute('x', String(i * step + 1));
      rect.setAttribute('y', String(y));
      rect.setAttribute('width', String(Math.max(1, step - 2)));
      rect.setAttribute('height', String(h));
      rect.setAttribute('fill', color);
      const title = document.createElementNS(ns, 'title');
      title.textContent = new Date(m.minute).toLocaleTimeString() + ': ' + m.requests + ' requests, ' +
        formatBytes(m.bytesFromCache) + ' from cache, ' + formatBytes(m.bytesFromUpstream) + ' from upstream';
      rect.appendChild(title);
      svg.appendChild(rect);
    }
  });
  const axis = document.createElementNS(ns, 'line');
  axis.setAttribute('x1', '0'); axis.setAttribute('x2', String(width));
  axis.setAttribute('y1', String(top + height)); axis.setAttribute('y2', String(top + height));
  axis.setAttribute('stroke', '#9ca3af');
  svg.appendChild(axis);
  svg.dataset.minutes = String(minutes.length);
  svg.dataset.requests = String(minutes.reduce((sum, m) => sum + m.requests, 0));
}

/** The size cap card: the store against storage.eviction.maxsize, and the disk's free space. */
function renderCapacity(c) {
  if (!c) return;
  if (c.maxSize > 0) {
    show('cap-used', c.bytes / c.maxSize, (c.bytes / c.maxSize * 100).toFixed(1) + ' %');
    $('cap-detail').textContent = formatBytes(c.bytes) + ' of ' + formatBytes(c.maxSize) + ' · evicts past ' + c.highWatermark + ' % down to ' + c.lowWatermark + ' %';
  } else {
    show('cap-used', '', 'no cap');
    $('cap-detail').textContent = formatBytes(c.bytes) + ' stored · storage.eviction.maxsize is 0';
  }
  if (c.disk) {
    show('disk-free', c.disk.free, formatBytes(c.disk.free));
    $('disk-detail').textContent = 'of ' + formatBytes(c.disk.total) + ' · blobs pass through below ' + formatBytes(c.minFree);
  }
}

function renderEvictionCard(e) {
  if (!e) return;
  $('next-eviction').textContent = e.running ? 'running' : e.nextRun ? new Date(e.nextRun).toLocaleTimeString() : 'none';
  $('next-eviction').title = e.nextRun ? new Date(e.nextRun).toString() : (e.reason || '');
  $('last-eviction').textContent = !e.scheduled ? e.reason : e.lastPass ? 'last: ' + relative(e.lastPass.startedAt) + ', ' + formatBytes(e.lastPass.freed) + ' freed' : 'no pass yet';
}

function render(s) {
  const creds = s.upstream.credentials;
  // An unreachable upstream leaves cached images pullable (the instance stays ready): said here, not hidden.
  const down = s.upstream.reachability && s.upstream.reachability.state === 'unreachable';
  $('upstream').textContent = s.upstream.url +
    (down ? ' (unreachable since ' + new Date(s.upstream.reachability.since).toLocaleTimeString() + ': serving cached images only)' : '') +
    (creds && creds.state === 'refused' ? ' (credentials refused by ' + creds.realm + ': pulling anonymously)' : '');
  $('upstream').className = down || (creds && creds.state === 'refused') ? 'miss' : '';
  // Other registries (proxy.remotes): namespace and repositories held, unreachable and refused credentials marked.
  const others = (s.registries || []).filter((r) => !r.default);
  $('registries').textContent = others.length === 0 ? '' : ' · also ' + others.map((r) =>
    r.namespace + ' (' + r.store.repositories + ' repositories' + (r.reachability && r.reachability.state === 'unreachable' ? ', unreachable' : '') +
    (r.credentials && r.credentials.state === 'refused' ? ', credentials refused' : '') + ')').join(', ');
  show('store-size', s.store.bytes, formatBytes(s.store.bytes));
  show('store-blobs', s.store.blobs);
  show('store-repositories', s.store.repositories);
  const t = s.totals;
  show('hit-ratio', t.hitRatio === null ? '' : t.hitRatio, t.hitRatio === null ? '–' : (t.hitRatio * 100).toFixed(1) + ' %');
  show('hits', t.hits + t.stale);
  show('misses', t.misses);
  show('bytes-saved', t.bytesSaved, formatBytes(t.bytesSaved));
  show('bytes-upstream', t.bytesFromUpstream, formatBytes(t.bytesFromUpstream));
  show('pulls', t.pulls);
  show('fills', s.fillsInFlight);
  const rl = s.upstream.rateLimit;
  $('rate-limit').textContent = rl ? rl.remaining + (rl.limit !== undefined ? ' / ' + rl.limit : '') : '–';
  drawChart(s.minutes);
  const top = $('top');
  top.replaceChildren();
  for (const r of s.topRepositories) {
    const row = top.insertRow();
    cell(row, r.repository);
    cell(row, String(r.pulls), 'num');
  }
  const recent = $('recent');
  recent.replaceChildren();
  for (const p of s.recentPulls) {
    const row = recent.insertRow();
    cell(row, new Date(p.at).toLocaleTimeString());
    cell(row, p.repository + ':' + p.reference);
    cell(row, p.cache, p.cache);
    const digest = cell(row, '');
    if (p.digest) {
      const code = document.createElement('code');
      code.textContent = p.digest.slice(0, 19);
      code.title = p.digest;
      digest.appendChild(code);
    }
  }
  renderCapacity(s.capacity);
  renderEvictionCard(s.eviction);
  $('updated').textContent = new Date(s.now).toLocaleTimeString();
  document.body.dataset.loaded = 'true';
}

`;
