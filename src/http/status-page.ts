/*
 * The status page at `/`: one HTML document with inline CSS and JS, no framework. It fetches
 * /api/status every 5 s and draws the figures, the tables and an SVG chart of the last hour.
 * Kept as a module (not a file read at run time) so the esbuild bundle carries it.
 */
export const STATUS_PAGE = String.raw`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pullmirror</title>
<link rel="icon" href="data:,">
<style>
  :root { --fg: #1d2330; --muted: #6b7280; --line: #e5e7eb; --cache: #2f855a; --upstream: #c05621; font-family: system-ui, sans-serif; color: var(--fg); }
  body { margin: 0 auto; max-width: 1100px; padding: 1.5rem; }
  h1 { font-size: 1.4rem; margin: 0 0 .2rem; }
  h2 { font-size: 1rem; margin: 1.5rem 0 .5rem; }
  .sub { color: var(--muted); font-size: .85rem; }
  .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(160px, 1fr)); gap: .75rem; margin-top: 1rem; }
  .card { border: 1px solid var(--line); border-radius: 8px; padding: .75rem 1rem; }
  .card .label { color: var(--muted); font-size: .8rem; }
  .card .value { font-size: 1.5rem; font-weight: 600; margin-top: .2rem; }
  .card .detail { color: var(--muted); font-size: .8rem; }
  table { border-collapse: collapse; width: 100%; font-size: .9rem; }
  th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid var(--line); }
  th { color: var(--muted); font-weight: 500; }
  td.num { text-align: right; font-variant-numeric: tabular-nums; }
  code { font-size: .8rem; }
  .hit { color: var(--cache); } .miss { color: var(--upstream); } .stale { color: #975a16; }
  .cols { display: grid; grid-template-columns: 1fr 2fr; gap: 1.5rem; }
  @media (max-width: 800px) { .cols { grid-template-columns: 1fr; } }
  .legend span { display: inline-block; width: .8rem; height: .8rem; border-radius: 2px; vertical-align: middle; margin: 0 .25rem 0 .75rem; }
  #error { color: #b91c1c; }
</style>
</head>
<body>
<h1>pullmirror</h1>
<div class="sub">upstream <span id="upstream">…</span><span id="registries"></span> · updated <span id="updated">never</span> <span id="error"></span></div>

<div class="cards">
  <div class="card"><div class="label">Store size</div><div class="value" id="store-size" data-value="">…</div><div class="detail"><span id="store-blobs" data-value="">…</span> blobs · <span id="store-repositories" data-value="">…</span> repositories</div></div>
  <div class="card"><div class="label">Hit ratio</div><div class="value" id="hit-ratio" data-value="">…</div><div class="detail"><span id="hits" data-value="">…</span> hits · <span id="misses" data-value="">…</span> misses</div></div>
  <div class="card"><div class="label">Saved from upstream</div><div class="value" id="bytes-saved" data-value="">…</div><div class="detail">bytes served from the cache</div></div>
  <div class="card"><div class="label">Fetched through upstream</div><div class="value" id="bytes-upstream" data-value="">…</div><div class="detail">bytes served on a miss</div></div>
  <div class="card"><div class="label">Pulls</div><div class="value" id="pulls" data-value="">…</div><div class="detail"><span id="fills" data-value="">0</span> downloads in flight</div></div>
  <div class="card"><div class="label">Docker Hub allowance</div><div class="value" id="rate-limit">–</div><div class="detail">pulls remaining in the window</div></div>
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

<script>
'use strict';
const $ = (id) => document.getElementById(id);

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

function render(s) {
  const creds = s.upstream.credentials;
  $('upstream').textContent = s.upstream.url + (creds && creds.state === 'refused' ? ' (credentials refused by ' + creds.realm + ': pulling anonymously)' : '');
  $('upstream').className = creds && creds.state === 'refused' ? 'miss' : '';
  // Other registries (proxy.remotes): namespace and repositories held, refused credentials marked.
  const others = (s.registries || []).filter((r) => !r.default);
  $('registries').textContent = others.length === 0 ? '' : ' · also ' + others.map((r) =>
    r.namespace + ' (' + r.store.repositories + ' repositories' + (r.credentials && r.credentials.state === 'refused' ? ', credentials refused' : '') + ')').join(', ');
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
  $('updated').textContent = new Date(s.now).toLocaleTimeString();
  document.body.dataset.loaded = 'true';
}

async function refresh() {
  try {
    const response = await fetch('api/status', { cache: 'no-store' });
    if (!response.ok) throw new Error('status ' + response.status);
    render(await response.json());
    $('error').textContent = '';
  } catch (error) {
    $('error').textContent = '(' + error.message + ')';
  }
}

refresh();
setInterval(refresh, 5000);
</script>
</body>
</html>
`;
