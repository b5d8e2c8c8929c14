/*
 * Eviction you can see: the schedule and the next pass, the last passes (kept in memory by the
 * scheduler), and on demand a preview of what a pass would remove now: the same planner as
 * `pullmirror gc --dry-run`, computed only when the button asks (it walks the whole store).
 */
import type { EvictionPreview, EvictionView, PassRecord } from './api-types.ts';
import { api } from './api.ts';
import { timeCell } from './cells.ts';
import { $, code, el, shortDigest, table } from './dom.ts';
import { formatBytes, formatDuration, plural, relative, when } from './format.ts';
import { failed, ready, registerView } from './router.ts';

let evictionTimer: ReturnType<typeof setInterval> | undefined;
/** Passes whose item list the reader opened: the 5 s redraw keeps them open. */
const openPasses = new Set<number>();

/** `2 tags, 1 manifest, 3 blobs` */
function counts(c: { tags: number; manifests: number; blobs: number }): string {
  return `${plural(c.tags, 'tag')}, ${plural(c.manifests, 'manifest')}, ${plural(c.blobs, 'blob')}`;
}

function list(items: string[], n: number): string {
  return items.length ? items.join(', ') + (n > items.length ? ` … and ${n - items.length} more` : '') : '';
}

async function drawEviction(): Promise<void> {
  try {
    const e = await api<EvictionView>('eviction');
    $('eviction-schedule').replaceChildren(
      e.scheduled
        ? el(
            'span',
            {},
            'storage.eviction.schedule ',
            code(e.schedule),
            ' · next pass ',
            el('strong', { id: 'eviction-next', 'data-time': e.nextRun ?? '' }, e.running ? 'running now' : e.nextRun ? `${when(e.nextRun)} (${relative(e.nextRun)})` : 'not scheduled'),
          )
        : el('span', { id: 'eviction-next', class: 'due' }, e.reason ?? 'not scheduled'),
    );
    const rows = e.passes.map((p) =>
      el(
        'tr',
        { 'data-outcome': p.outcome },
        timeCell(p.startedAt),
        el('td', { class: 'num' }, formatDuration(p.durationMs)),
        el('td', { class: p.outcome === 'failed' ? 'gone' : 'nowrap' }, p.outcome === 'failed' ? `failed: ${p.error ?? ''}` : counts(p.removed)),
        el('td', { class: 'num', 'data-value': p.freed }, formatBytes(p.freed)),
        el('td', {}, p.removed.tags + p.removed.manifests + p.removed.blobs === 0 ? el('span', { class: 'empty' }, 'nothing') : firstItems(p)),
      ),
    );
    $('eviction-body').replaceChildren(
      rows.length
        ? table(['Started', 'Took ', 'Removed', 'Freed ', 'What'], rows, 'eviction-passes')
        : el('p', { class: 'empty', id: 'eviction-passes' }, e.scheduled ? 'no pass since this instance started' : 'no pass: nothing is scheduled'),
    );
    ready('eviction', `passes:${e.passes.length}`);
  } catch (error) {
    failed('eviction', error);
  }
}

function firstItems(p: PassRecord): HTMLDetailsElement {
  const details = el(
    'details',
    {},
    el('summary', {}, 'first items'),
    el('div', { class: 'sub' }, list(p.first.tags, p.removed.tags)),
    el('div', { class: 'sub' }, list(p.first.manifests, p.removed.manifests)),
    el('div', { class: 'sub' }, list(p.first.blobs, p.removed.blobs)),
  );
  details.open = openPasses.has(p.startedAt);
  details.addEventListener('toggle', () => (details.open ? openPasses.add(p.startedAt) : openPasses.delete(p.startedAt)));
  return details;
}

async function runPreview(): Promise<void> {
  const button = $('preview-run') as HTMLButtonElement;
  button.disabled = true;
  $('preview-state').textContent = 'walking the store…';
  try {
    const p = await api<EvictionPreview>('eviction/preview');
    $('preview-state').textContent = `computed ${when(p.computedAt)} in ${formatDuration(p.durationMs)}`;
    const parts: HTMLElement[] = [
      el(
        'p',
        { id: 'preview-summary', 'data-tags': p.counts.tags, 'data-manifests': p.counts.manifests, 'data-blobs': p.counts.blobs, 'data-bytes': p.bytesToFree },
        el('strong', {}, `${counts(p.counts)}, ${formatBytes(p.bytesToFree)} to free`),
        `; store ${formatBytes(p.sizeBefore)} → ${formatBytes(p.sizeAfter)}` +
          (p.capUnreached ? '; size cap not reached (recent or pinned content stays)' : '') +
          (p.truncated ? ' (lists cut at 500 items each)' : ''),
      ),
    ];
    if (p.note) parts.push(el('p', { class: 'due', id: 'preview-note' }, p.note));
    const held = p.graceHeld;
    if (held?.until) {
      parts.push(el('p', { class: 'sub' }, `the grace period holds back ${counts({ tags: held.tags, manifests: held.links, blobs: held.blobs })} (${formatBytes(held.bytes)}) until ${when(held.until)}`));
    }
    const item = (kind: string, key: string, cells: HTMLElement[]) => el('tr', { 'data-kind': kind, 'data-item': key }, ...cells);
    const rows = [
      ...p.tags.map((t) => item('tag', `${t.repository}:${t.tag}`, [el('td', {}, 'tag'), el('td', {}, `${t.repository}:${t.tag}`), el('td', {}, t.reason), el('td', {}, '')])),
      ...p.manifests.map((m) =>
        item('manifest', `${m.repository}@${m.digest}`, [
          el('td', {}, 'manifest'),
          el('td', {}, `${m.repository}@`, code(shortDigest(m.digest), m.digest)),
          el('td', {}, `${m.reason}, last used ${relative(m.lastAccess)}`),
          el('td', {}, ''),
        ]),
      ),
      ...p.blobs.map((b) =>
        item('blob', b.digest, [el('td', {}, 'blob'), el('td', {}, code(shortDigest(b.digest), b.digest)), el('td', {}, 'unreferenced'), el('td', { class: 'num', 'data-value': b.size }, formatBytes(b.size))]),
      ),
    ];
    parts.push(rows.length ? table(['Kind', 'Item', 'Why', 'Size '], rows, 'preview-items') : el('p', { class: 'empty', id: 'preview-items' }, 'nothing is due'));
    parts.push(el('h2', {}, 'Pinned (storage.eviction.keep)'));
    const pins = p.pinned.map((x) =>
      el(
        'tr',
        { 'data-item': x.repository + (x.tag ? `:${x.tag}` : `@${x.digest ?? ''}`) },
        el('td', {}, el('span', { class: 'badge pinned' }, 'pinned')),
        el('td', {}, x.repository + (x.tag ? `:${x.tag}` : '@'), x.tag ? '' : code(shortDigest(x.digest), x.digest)),
        el('td', {}, code(x.pattern)),
      ),
    );
    parts.push(
      el('p', { class: 'sub' }, `the patterns hold ${plural(p.pinnedCounts.tags, 'tag')} and ${plural(p.pinnedCounts.manifests, 'manifest')} (with their children, configs and layers); no pass takes them`),
    );
    parts.push(pins.length ? table(['', 'Item', 'Pattern'], pins, 'preview-pinned') : el('p', { class: 'empty', id: 'preview-pinned' }, 'nothing pinned'));
    $('preview-body').replaceChildren(...parts);
    $('view-eviction').dataset.preview = String(p.computedAt);
  } catch (error) {
    $('preview-state').textContent = '';
    $('preview-body').replaceChildren(el('p', { class: 'gone' }, error instanceof Error ? error.message : String(error)));
  } finally {
    button.disabled = false;
  }
}

registerView('eviction', {
  enter() {
    void drawEviction();
    clearInterval(evictionTimer);
    evictionTimer = setInterval(() => void drawEviction(), 5000);
  },
  leave() {
    clearInterval(evictionTimer);
  },
});
$('preview-run').addEventListener('click', () => void runPreview());
