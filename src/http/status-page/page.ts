/*
 * The status page at `/`: one HTML document, its stylesheet and its script as files of their
 * own (status-page.css, status-page.js: the CSP allows only the page's own origin, no inline
 * code). The script is TypeScript under ./client, bundled by esbuild (see ./assets.ts). Views
 * are chosen by the URL hash so that each can be linked: #/ the overview, #/browse/… the store,
 * #/eviction, #/fleet.
 */

/** What the page may load: its own script, style and API; nothing inline, nothing elsewhere. */
export const STATUS_PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const OVERVIEW = `<div class="cards">
  <div class="card"><div class="label">Store size</div><div class="value" id="store-size" data-value="">…</div><div class="detail"><span id="store-blobs" data-value="">…</span> · <span id="store-repositories" data-value="">…</span></div></div>
  <div class="card"><div class="label">Hit ratio</div><div class="value" id="hit-ratio" data-value="">…</div><div class="detail"><span id="hits" data-value="">…</span> · <span id="misses" data-value="">…</span></div></div>
  <div class="card"><div class="label">Saved from upstream</div><div class="value" id="bytes-saved" data-value="">…</div><div class="detail">bytes served from the cache</div></div>
  <div class="card"><div class="label">Fetched through upstream</div><div class="value" id="bytes-upstream" data-value="">…</div><div class="detail">bytes served on a miss</div></div>
  <div class="card"><div class="label">Pulls</div><div class="value" id="pulls" data-value="">…</div><div class="detail"><span id="fills" data-value="">…</span> in flight</div></div>
  <div class="card"><div class="label">Docker Hub allowance</div><div class="value" id="rate-limit">–</div><div class="detail">pulls remaining in the window</div></div>
  <div class="card"><div class="label">Size cap</div><div class="value" id="cap-used" data-value="">–</div><div class="detail" id="cap-detail">…</div></div>
  <div class="card"><div class="label">Disk free</div><div class="value" id="disk-free" data-value="">–</div><div class="detail" id="disk-detail">…</div></div>
  <div class="card"><div class="label">Next eviction</div><div class="value" id="next-eviction">–</div><div class="detail" id="last-eviction">…</div></div>
</div>

<h2>Traffic, last 60 minutes <span class="legend sub"><span class="swatch cache"></span>from cache<span class="swatch upstream"></span>from upstream</span></h2>
<svg id="chart" role="img" aria-label="bytes served per minute, the last 60 minutes"></svg>

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

<div id="signatures" hidden>
  <h2>Signature policy</h2>
  <table><thead><tr><th>Registry</th><th>Repositories</th><th>Mode</th><th>Keys</th></tr></thead><tbody id="signature-rules"></tbody></table>
  <p class="sub" id="signature-figures"></p>
</div>

`;

const BROWSE = `<div class="crumbs" id="browse-crumbs"></div>
<div id="browse-body"></div>
`;

const EVICTION = `<h2>Schedule</h2>
<p id="eviction-schedule" class="sub">…</p>
<h2>Last passes</h2>
<div id="eviction-body"></div>
<h2>Preview: what a pass would remove now</h2>
<p class="sub">The same plan as <code>pullmirror gc --dry-run</code> on this store and config; it walks the whole store, so it runs only when asked (and is reused for 30 s).</p>
<p><button type="button" id="preview-run">Preview the next pass</button> <span id="preview-state" class="sub"></span></p>
<div id="preview-body"></div>
`;

const FLEET = `<h2>Instances</h2>
<p id="fleet-note" class="sub">…</p>
<div id="fleet-body"></div>
`;

export const STATUS_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>pullmirror</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="status-page.css">
<script src="status-page.js" defer></script>
</head>
<body>
<h1>pullmirror</h1>
<div class="sub">upstream <span id="upstream">…</span><span id="registries"></span> · updated <span id="updated">never</span> <span id="error"></span></div>
<div class="sub"><span id="scope" data-scope="">…</span></div>
<nav id="nav">
  <a href="#/" data-view="overview">Overview</a>
  <a href="#/browse" data-view="browse">Browse</a>
  <a href="#/eviction" data-view="eviction">Eviction</a>
  <a href="#/fleet" data-view="fleet">Fleet</a>
</nav>
<section id="view-overview" data-view="overview">
${OVERVIEW}</section>
<section id="view-browse" data-view="browse" hidden>
${BROWSE}</section>
<section id="view-eviction" data-view="eviction" hidden>
${EVICTION}</section>
<section id="view-fleet" data-view="fleet" hidden>
${FLEET}</section>
</body>
</html>
`;
