/*
 * Eviction you can see: the schedule and the next pass, the last passes (kept in memory by the
 * scheduler), and on demand a preview of what a pass would remove now: the same planner as
 * `pullmirror gc --dry-run`, computed only when the button asks (it walks the whole store).
 */
export const EVICTION_MARKUP = String.raw`<h2>Schedule</h2>
<p id="eviction-schedule" class="sub">…</p>
<h2>Last passes</h2>
<div id="eviction-body"></div>
<h2>Preview: what a pass would remove now</h2>
<p class="sub">The same plan as <code>pullmirror gc --dry-run</code> on this store and config; it walks the whole store, so it runs only when asked (and is reused for 30 s).</p>
<p><button type="button" id="preview-run">Preview the next pass</button> <span id="preview-state" class="sub"></span></p>
<div id="preview-body"></div>
`;

export const EVICTION_SCRIPT = String.raw`
let evictionTimer;
/** Passes whose item list the reader opened: the 5 s redraw keeps them open. */
const openPasses = new Set();

async function drawEviction() {
  try {
    const e = await api('eviction');
    $('eviction-schedule').replaceChildren(e.scheduled
      ? el('span', {}, 'storage.eviction.schedule ', code(e.schedule), ' · next pass ', el('strong', { id: 'eviction-next', 'data-time': e.nextRun || '' }, e.running ? 'running now' : e.nextRun ? when(e.nextRun) + ' (' + relative(e.nextRun) + ')' : 'not scheduled'))
      : el('span', { id: 'eviction-next', class: 'due' }, e.reason));
    const list = (items, n) => (items.length ? items.join(', ') + (n > items.length ? ' … and ' + (n - items.length) + ' more' : '') : '');
    const rows = e.passes.map((p) => el('tr', { 'data-outcome': p.outcome },
      timeCell(p.startedAt),
      el('td', { class: 'num' }, duration(p.durationMs)),
      el('td', { class: p.outcome === 'failed' ? 'gone' : 'nowrap' }, p.outcome === 'failed' ? 'failed: ' + p.error : p.removed.tags + ' tags, ' + p.removed.manifests + ' manifests, ' + p.removed.blobs + ' blobs'),
      el('td', { class: 'num', 'data-value': p.freed }, formatBytes(p.freed)),
      el('td', {}, p.removed.tags + p.removed.manifests + p.removed.blobs === 0 ? el('span', { class: 'empty' }, 'nothing') : firstItems(p, list))));
    $('eviction-body').replaceChildren(rows.length ? table(['Started', 'Took ', 'Removed', 'Freed ', 'What'], rows, 'eviction-passes') : el('p', { class: 'empty', id: 'eviction-passes' }, e.scheduled ? 'no pass since this instance started' : 'no pass: nothing is scheduled'));
    ready('eviction', 'passes:' + e.passes.length);
  } catch (error) {
    failed('eviction', error);
  }
}

function firstItems(p, list) {
  const details = el('details', {}, el('summary', {}, 'first items'),
    el('div', { class: 'sub' }, list(p.first.tags, p.removed.tags)), el('div', { class: 'sub' }, list(p.first.manifests, p.removed.manifests)), el('div', { class: 'sub' }, list(p.first.blobs, p.removed.blobs)));
  details.open = openPasses.has(p.startedAt);
  details.addEventListener('toggle', () => (details.open ? openPasses.add(p.startedAt) : openPasses.delete(p.startedAt)));
  return details;
}

async function runPreview() {
  const button = $('preview-run');
  button.disabled = true;
  $('preview-state').textContent = 'walking the store…';
  try {
    const p = await api('eviction/preview');
    $('preview-state').textContent = 'computed ' + when(p.computedAt) + ' in ' + duration(p.durationMs);
    const parts = [el('p', { id: 'preview-summary', 'data-tags': p.counts.tags, 'data-manifests': p.counts.manifests, 'data-blobs': p.counts.blobs, 'data-bytes': p.bytesToFree },
      el('strong', {}, p.counts.tags + ' tags, ' + p.counts.manifests + ' manifests, ' + p.counts.blobs + ' blobs, ' + formatBytes(p.bytesToFree) + ' to free'),
      '; store ' + formatBytes(p.sizeBefore) + ' → ' + formatBytes(p.sizeAfter) + (p.capUnreached ? '; size cap not reached (recent or pinned content stays)' : '') + (p.truncated ? ' (lists cut at 500 items each)' : ''))];
    if (p.note) parts.push(el('p', { class: 'due', id: 'preview-note' }, p.note));
    if (p.graceHeld && p.graceHeld.until) parts.push(el('p', { class: 'sub' }, 'the grace period holds back ' + p.graceHeld.tags + ' tags, ' + p.graceHeld.links + ' manifests, ' + p.graceHeld.blobs + ' blobs (' + formatBytes(p.graceHeld.bytes) + ') until ' + when(p.graceHeld.until)));
    const item = (kind, key, cells) => el('tr', { 'data-kind': kind, 'data-item': key }, ...cells);
    const rows = [].concat(
      p.tags.map((t) => item('tag', t.repository + ':' + t.tag, [el('td', {}, 'tag'), el('td', {}, t.repository + ':' + t.tag), el('td', {}, t.reason), el('td', {}, '')])),
      p.manifests.map((m) => item('manifest', m.repository + '@' + m.digest, [el('td', {}, 'manifest'), el('td', {}, m.repository + '@', code(shortDigest(m.digest), m.digest)), el('td', {}, m.reason + ', last used ' + relative(m.lastAccess)), el('td', {}, '')])),
      p.blobs.map((b) => item('blob', b.digest, [el('td', {}, 'blob'), el('td', {}, code(shortDigest(b.digest), b.digest)), el('td', {}, 'unreferenced'), el('td', { class: 'num', 'data-value': b.size }, formatBytes(b.size))])));
    parts.push(rows.length ? table(['Kind', 'Item', 'Why', 'Size '], rows, 'preview-items') : el('p', { class: 'empty', id: 'preview-items' }, 'nothing is due'));
    parts.push(el('h2', {}, 'Pinned (storage.eviction.keep)'));
    const pins = p.pinned.map((x) => el('tr', { 'data-item': x.repository + (x.tag ? ':' + x.tag : '@' + x.digest) },
      el('td', {}, el('span', { class: 'badge pinned' }, 'pinned')),
      el('td', {}, x.repository + (x.tag ? ':' + x.tag : '@'), x.tag ? '' : code(shortDigest(x.digest), x.digest)),
      el('td', {}, code(x.pattern))));
    parts.push(el('p', { class: 'sub' }, 'the patterns hold ' + p.pinnedCounts.tags + ' tags and ' + p.pinnedCounts.manifests + ' manifests (with their children, configs and layers); no pass takes them'));
    parts.push(pins.length ? table(['', 'Item', 'Pattern'], pins, 'preview-pinned') : el('p', { class: 'empty', id: 'preview-pinned' }, 'nothing pinned'));
    $('preview-body').replaceChildren(...parts);
    $('view-eviction').dataset.preview = String(p.computedAt);
  } catch (error) {
    $('preview-state').textContent = '';
    $('preview-body').replaceChildren(el('p', { class: 'gone' }, error.message));
  } finally {
    button.disabled = false;
  }
}

views.eviction = {
  enter() {
    drawEviction();
    clearInterval(evictionTimer);
    evictionTimer = setInterval(drawEviction, 5000);
  },
  leave() {
    clearInterval(evictionTimer);
  },
};
$('preview-run').addEventListener('click', runPreview);
`;
