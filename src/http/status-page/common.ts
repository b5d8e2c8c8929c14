/*
 * What every view of the status page uses: DOM building (text only, never HTML from data:
 * repository names and tags reach the page as text), the API fetch, time formatting, and the
 * hash router that shows one view at a time.
 */
export const COMMON_SCRIPT = String.raw`
const $ = (id) => document.getElementById(id);
/** Listeners told of every /api/status answer (the 5 s refresh). */
const statusListeners = [];
/** The views: enter(route) draws one; leave() stops its own refresh. */
const views = {};
let lastStatus;

/** el('td', { class: 'num', title: '…' }, 'text', childNode, …) */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('data-')) node.dataset[key.slice(5).replace(/-([a-z])/g, (_m, c) => c.toUpperCase())] = String(value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function table(headers, rows, id) {
  return el('table', { id }, el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { class: h.endsWith(' ') ? 'num' : undefined }, h.trim())))), el('tbody', {}, ...rows));
}

/** GET api/<path>?params: the JSON answer, or an Error with the server's message. */
async function api(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) if (value !== undefined && value !== null && value !== '') query.set(key, value);
  const q = query.toString();
  const response = await fetch('api/' + path + (q ? '?' + q : ''), { cache: 'no-store' });
  let body;
  try { body = await response.json(); } catch { body = undefined; }
  if (!response.ok) throw new Error((body && (body.error || (body.errors && body.errors[0] && body.errors[0].message))) || 'status ' + response.status);
  return body;
}

function shortDigest(digest) {
  return digest ? digest.slice(0, 19) : '';
}

function code(text, title) {
  return el('code', { title: title || text }, text);
}

function when(ms) {
  return ms ? new Date(ms).toLocaleString('en-GB', { hour12: false }) : '–';
}

/** "3 min ago", "in 2 h": a person reads a distance, the tooltip has the date. */
function relative(ms, now) {
  const d = ms - (now || Date.now());
  const a = Math.abs(d);
  const text = a < 60e3 ? Math.round(a / 1e3) + ' s' : a < 3600e3 ? Math.round(a / 60e3) + ' min' : a < 172800e3 ? (a / 3600e3).toFixed(1) + ' h' : Math.round(a / 86400e3) + ' days';
  return d < 0 ? text + ' ago' : 'in ' + text;
}

function duration(ms) {
  if (ms < 1000) return ms + ' ms';
  if (ms < 60e3) return (ms / 1e3).toFixed(1) + ' s';
  return Math.round(ms / 60e3) + ' min';
}

function timeCell(ms, prefix) {
  return el('td', { title: when(ms), 'data-time': ms }, (prefix || '') + relative(ms));
}

/** An expiry as the planner decides it: a time, "never" (TTL 0) or "pinned" (storage.eviction.keep). */
function expiryCell(lifetime, tag) {
  const t = tag || 'td';
  if (!lifetime) return el(t, { class: 'empty' }, '–');
  if (lifetime.expiry === 'pinned') return el(t, { 'data-expiry': 'pinned' }, el('span', { class: 'badge pinned', title: 'storage.eviction.keep ' + lifetime.pinnedBy.pattern + ' (' + lifetime.pinnedBy.via + ')' }, 'pinned'));
  if (lifetime.expiry === 'never') return el(t, { 'data-expiry': 'never', title: 'proxy.ttl is 0: no expiry' }, 'never');
  const due = lifetime.expiresAt <= Date.now();
  return el(t, { 'data-expiry': lifetime.expiresAt, title: when(lifetime.expiresAt), class: due ? 'due' : undefined }, due ? 'due (next pass)' : relative(lifetime.expiresAt));
}

function pinCell(lifetime) {
  if (!lifetime || lifetime.expiry !== 'pinned') return el('td', {}, '');
  return el('td', { 'data-pinned': lifetime.pinnedBy.pattern }, el('span', { class: 'badge pinned' }, lifetime.pinnedBy.pattern), ' ', el('span', { class: 'sub' }, 'via ' + lifetime.pinnedBy.via));
}

/** Marks a view drawn: tests and people alike wait for this. */
function ready(view, what) {
  const section = $('view-' + view);
  section.dataset.ready = what;
  section.dataset.error = '';
}

function failed(view, error) {
  const section = $('view-' + view);
  section.dataset.error = error.message;
  $(view + '-body').replaceChildren(el('p', { class: 'gone', id: view + '-error' }, error.message));
  section.dataset.ready = 'error';
}

/** #/browse/docker.io/library/alpine?cursor=x → { view, path: ['docker.io','library','alpine'], params } */
function parseHash() {
  const hash = location.hash.replace(/^#\/?/, '');
  const at = hash.indexOf('?');
  // A hand-edited hash with a stray % must not stop the page: the part is taken as written.
  const decode = (part) => { try { return decodeURIComponent(part); } catch { return part; } };
  const path = (at < 0 ? hash : hash.slice(0, at)).split('/').filter(Boolean).map(decode);
  return { view: path[0] || 'overview', path: path.slice(1), params: new URLSearchParams(at < 0 ? '' : hash.slice(at + 1)), hash: location.hash };
}

let current;
function route() {
  const r = parseHash();
  if (!document.getElementById('view-' + r.view)) r.view = 'overview';
  if (current && current !== r.view && views[current] && views[current].leave) views[current].leave();
  current = r.view;
  for (const section of document.querySelectorAll('section[data-view]')) section.hidden = section.dataset.view !== r.view;
  for (const link of document.querySelectorAll('#nav a')) link.classList.toggle('active', link.dataset.view === r.view);
  document.body.dataset.view = r.view;
  if (views[r.view] && views[r.view].enter) views[r.view].enter(r);
}

async function refresh() {
  try {
    const response = await fetch('api/status', { cache: 'no-store' });
    if (!response.ok) throw new Error('status ' + response.status);
    const status = await response.json();
    lastStatus = status;
    render(status);
    for (const listener of statusListeners) listener(status);
    $('error').textContent = '';
  } catch (error) {
    $('error').textContent = '(' + error.message + ')';
  }
}

function startPage() {
  window.addEventListener('hashchange', route);
  route();
  refresh();
  setInterval(refresh, 5000);
}
`;
