/*
 * The store browser: registries → repositories (searchable, paged) → tags (paged) → a manifest
 * with its platforms, sizes, last pull, expiry and pins. Each level is its own hash, so a view
 * can be linked: #/browse, #/browse/<registry>?q=&cursor=, #/browse/<registry>/<repository>,
 * #/browse/<registry>/<repository>@<digest>. It asks /api/browse/… only when a level is opened.
 */
import type { ManifestView, Page, Platform, RegistryRow, RepositoryRow, TagPage } from './api-types.ts';
import { api } from './api.ts';
import { expiryCell, pinCell, timeCell } from './cells.ts';
import { $, code, el, shortDigest, table } from './dom.ts';
import { formatBytes, formatDuration, plural, relative, when } from './format.ts';
import { failed, latestStatus, onStatus, ready, registerView } from './router.ts';

function browseHash(registry?: string, repository?: string, digest?: string, params?: Record<string, string>): string {
  let h = '#/browse';
  if (registry) h += `/${encodeURIComponent(registry)}`;
  if (repository) h += `/${repository.split('/').map(encodeURIComponent).join('/')}`;
  if (digest) h += `@${digest}`;
  const q = new URLSearchParams(params ?? {}).toString();
  return h + (q ? `?${q}` : '');
}

function crumbs(registry?: string, repository?: string, digest?: string): void {
  const parts: (HTMLElement | string)[] = [el('a', { href: '#/browse' }, 'registries')];
  if (registry) parts.push('›', el('a', { href: browseHash(registry) }, registry));
  if (repository) parts.push('›', el('a', { href: browseHash(registry, repository) }, repository));
  if (digest) parts.push('›', code(shortDigest(digest), digest));
  $('browse-crumbs').replaceChildren(...parts.map((p) => (typeof p === 'string' ? el('span', { class: 'sub' }, p) : p)));
}

function platformText(p: Platform | undefined): string {
  return [p?.os, p?.architecture, p?.variant].filter(Boolean).join('/') || 'unknown';
}

/** The store against its cap and the disk, from the last /api/status. */
function capacityBlock(): HTMLElement {
  const c = latestStatus()?.capacity;
  if (!c) return el('p', { class: 'sub' }, 'store figures not loaded yet');
  const facts = el(
    'dl',
    { class: 'facts', id: 'browse-capacity' },
    el('dt', {}, 'stored'),
    el('dd', { 'data-value': c.bytes }, formatBytes(c.bytes)),
    el('dt', {}, 'size cap'),
    el(
      'dd',
      { 'data-value': c.maxSize },
      c.maxSize > 0 && c.highBytes !== null && c.lowBytes !== null
        ? `${formatBytes(c.maxSize)} (evicts past ${c.highWatermark} % = ${formatBytes(c.highBytes)}, down to ${c.lowWatermark} % = ${formatBytes(c.lowBytes)})`
        : 'none (storage.eviction.maxsize is 0)',
    ),
    el('dt', {}, 'disk free'),
    el('dd', { 'data-value': c.disk ? c.disk.free : '' }, c.disk ? `${formatBytes(c.disk.free)} of ${formatBytes(c.disk.total)}` : c.driver === 's3' ? 'no limit (a bucket)' : 'unknown'),
  );
  if (!(c.maxSize > 0)) return facts;
  const pct = (n: number | null) => `${Math.min(100, ((n ?? 0) / c.maxSize) * 100).toFixed(2)}%`;
  // Positions go through the CSSOM: the CSP (style-src 'self') refuses style attributes.
  const part = (cls: string, prop: 'width' | 'left', value: string, title?: string) => {
    const node = el('div', { class: cls, title });
    node.style[prop] = value;
    return node;
  };
  const bar = el(
    'div',
    { class: 'bar', title: `${formatBytes(c.bytes)} of ${formatBytes(c.maxSize)}` },
    part('fill', 'width', pct(c.bytes)),
    part('mark', 'left', pct(c.highBytes), 'high watermark'),
    part('mark low', 'left', pct(c.lowBytes), 'low watermark'),
  );
  return el('div', {}, bar, facts);
}

// The store's figures come with the 5 s status refresh: redraw them while the registries show.
onStatus(() => {
  document.getElementById('browse-store')?.replaceChildren(capacityBlock());
});

async function browseRegistries(): Promise<string> {
  crumbs();
  const answer = await api<{ registries: RegistryRow[] }>('browse/registries');
  const rows = answer.registries.map((r) =>
    el(
      'tr',
      { 'data-registry': r.namespace },
      el('td', {}, el('a', { href: browseHash(r.namespace) }, r.namespace), r.default ? el('span', { class: 'sub' }, ' (default)') : ''),
      el('td', {}, r.url),
      el('td', { class: 'num' }, r.repositories.toLocaleString('en')),
    ),
  );
  $('browse-body').replaceChildren(
    el('h2', {}, 'Store'),
    el('div', { id: 'browse-store' }, capacityBlock()),
    el('h2', {}, 'Registries'),
    table(['Registry', 'Upstream', 'Repositories '], rows, 'browse-registries'),
  );
  return 'registries';
}

async function browseRepositories(registry: string, params: URLSearchParams): Promise<string> {
  crumbs(registry);
  const q = params.get('q') ?? '';
  const cursor = params.get('cursor') ?? '';
  const page = await api<Page<RepositoryRow>>('browse/repositories', { registry, q, cursor });
  const input = el('input', { id: 'browse-search', type: 'search', name: 'q', placeholder: 'search repositories by name', value: q });
  const form = el('form', { class: 'search', id: 'browse-search-form' }, input, el('button', { type: 'submit' }, 'Search'));
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    location.hash = browseHash(registry, '', '', input.value.trim() ? { q: input.value.trim() } : {});
  });
  const rows = page.items.map((r) =>
    el(
      'tr',
      { 'data-repository': r.name },
      el('td', {}, el('a', { href: browseHash(registry, r.name) }, r.name)),
      el('td', { class: 'num' }, r.tags.toLocaleString('en')),
      el('td', { class: 'num' }, r.manifests.toLocaleString('en')),
    ),
  );
  const pager = el(
    'div',
    { class: 'pager' },
    el('span', { class: 'sub', id: 'browse-total' }, plural(page.total, 'repository', 'repositories') + (q ? ` matching “${q}”` : '')),
    cursor ? el('a', { href: browseHash(registry, '', '', q ? { q } : {}) }, '« first page') : '',
    page.next ? el('a', { id: 'browse-next', href: browseHash(registry, '', '', { ...(q ? { q } : {}), cursor: page.next }) }, 'next page »') : '',
  );
  $('browse-body').replaceChildren(form, rows.length ? table(['Repository', 'Tags ', 'Manifests '], rows, 'browse-repositories') : el('p', { class: 'empty' }, 'no repository'), pager);
  return `repositories:${registry}:${q}:${cursor}`;
}

async function browseTags(registry: string, repository: string, params: URLSearchParams): Promise<string> {
  crumbs(registry, repository);
  const cursor = params.get('cursor') ?? '';
  const page = await api<TagPage>('browse/tags', { registry, repository, cursor });
  const rows = page.items.map((t) => {
    const m = t.manifest;
    const kind = !m
      ? el('span', { class: 'empty' }, t.digest ? 'manifest not stored' : 'no digest')
      : m.kind === 'index'
        ? el('span', { title: m.mediaType }, `index: ${m.platforms.map(platformText).join(', ')}`)
        : el('span', { title: m.mediaType }, 'image');
    return el(
      'tr',
      { 'data-tag': t.tag },
      el('td', {}, t.tag),
      el('td', {}, t.digest ? el('a', { href: browseHash(registry, repository, t.digest) }, code(shortDigest(t.digest), t.digest)) : ''),
      el('td', {}, kind),
      el('td', { class: 'num', 'data-value': m ? m.size : '' }, m ? formatBytes(m.size) : '–'),
      timeCell(t.lifetime ? t.lifetime.lastAccess : t.tagLifetime.lastAccess),
      expiryCell(t.tagLifetime),
      expiryCell(t.lifetime),
      pinCell(t.lifetime?.expiry === 'pinned' ? t.lifetime : t.tagLifetime),
    );
  });
  const pager = el(
    'div',
    { class: 'pager' },
    el(
      'span',
      { class: 'sub', id: 'browse-total' },
      plural(page.total, 'tag') + (page.untagged ? ` · ${plural(page.untagged, 'untagged manifest')}` : '') + ` · TTL ${page.ttlMs > 0 ? formatDuration(page.ttlMs) : 'none'}`,
    ),
    cursor ? el('a', { href: browseHash(registry, repository) }, '« first page') : '',
    page.next ? el('a', { id: 'browse-next', href: browseHash(registry, repository, '', { cursor: page.next }) }, 'next page »') : '',
  );
  $('browse-body').replaceChildren(
    el('h2', {}, `${registry}/${repository}`),
    rows.length ? table(['Tag', 'Digest', 'Kind', 'Size ', 'Last pulled', 'Tag expires', 'Manifest expires', 'Pinned'], rows, 'browse-tags') : el('p', { class: 'empty' }, 'no tag'),
    pager,
  );
  return `tags:${registry}/${repository}:${cursor}`;
}

async function browseManifest(registry: string, repository: string, digest: string): Promise<string> {
  crumbs(registry, repository, digest);
  const m = await api<ManifestView>('browse/manifest', { registry, repository, digest });
  const s = m.summary;
  const facts = el(
    'dl',
    { class: 'facts', id: 'manifest-facts' },
    el('dt', {}, 'digest'),
    el('dd', {}, code(m.digest)),
    el('dt', {}, 'media type'),
    el('dd', {}, s.mediaType),
    el('dt', {}, 'tags'),
    el('dd', { id: 'manifest-tags' }, m.tags.length ? m.tags.join(', ') : 'none (pulled by digest)'),
    el('dt', {}, 'size'),
    el('dd', { id: 'manifest-size', 'data-value': s.size }, formatBytes(s.size) + (s.kind === 'index' ? ' (index and every platform)' : ' (manifest, config and layers)')),
    el('dt', {}, 'last pulled'),
    el('dd', { id: 'manifest-last-pulled', title: when(m.lifetime.lastAccess) }, `${relative(m.lifetime.lastAccess)} (${when(m.lifetime.lastAccess)})`),
    el('dt', {}, 'expires'),
    expiryCell(m.lifetime, 'dd'),
    el('dt', {}, 'pinned'),
    el('dd', { id: 'manifest-pinned' }, m.lifetime.expiry === 'pinned' && m.lifetime.pinnedBy ? `${m.lifetime.pinnedBy.pattern} (via ${m.lifetime.pinnedBy.via})` : 'no'),
  );
  const parts: HTMLElement[] = [el('h2', {}, `${registry}/${repository}@${shortDigest(m.digest)}`), facts];
  if (s.kind === 'index') {
    const rows = (s.platforms ?? []).map((p, i) => {
      const child = m.platforms[i];
      return el(
        'tr',
        { 'data-platform': platformText(p.platform) },
        el('td', {}, platformText(p.platform)),
        el('td', {}, child?.linked ? el('a', { href: browseHash(registry, repository, p.digest) }, code(shortDigest(p.digest), p.digest)) : code(shortDigest(p.digest), p.digest)),
        el('td', { class: 'num', 'data-value': p.size }, formatBytes(p.size)),
        el('td', {}, p.stored ? plural(p.layers.length, 'layer') : el('span', { class: 'empty' }, 'not pulled through the mirror')),
        child ? expiryCell(child.lifetime) : el('td', {}, ''),
      );
    });
    parts.push(el('h2', {}, 'Platforms'), table(['Platform', 'Manifest', 'Size ', 'Content', 'Expires'], rows, 'manifest-platforms'));
  } else {
    if (s.platform) parts.push(el('p', { class: 'sub', id: 'manifest-platform' }, `platform ${platformText(s.platform)}`));
    const blob = (kind: string, b: { digest: string; size: number; stored: boolean }) =>
      el(
        'tr',
        { 'data-digest': b.digest },
        el('td', {}, kind),
        el('td', {}, code(shortDigest(b.digest), b.digest)),
        el('td', { class: 'num', 'data-value': b.size }, formatBytes(b.size)),
        el('td', { class: b.stored ? 'hit' : 'empty' }, b.stored ? 'stored' : 'not stored'),
      );
    const rows = [...(s.config ? [blob('config', s.config)] : []), ...s.layers.map((l, i) => blob(`layer ${i + 1}`, l))];
    parts.push(el('h2', {}, 'Config and layers'), table(['Blob', 'Digest', 'Size ', 'In the store'], rows, 'manifest-blobs'));
  }
  $('browse-body').replaceChildren(...parts);
  return `manifest:${registry}/${repository}@${digest}`;
}

registerView('browse', {
  async enter(r) {
    const [registry, ...rest] = r.path;
    let repository = rest.join('/');
    let digest = '';
    const at = repository.indexOf('@');
    if (at >= 0) {
      digest = repository.slice(at + 1);
      repository = repository.slice(0, at);
    }
    const hash = r.hash;
    try {
      const what = !registry
        ? await browseRegistries()
        : !repository
          ? await browseRepositories(registry, r.params)
          : !digest
            ? await browseTags(registry, repository, r.params)
            : await browseManifest(registry, repository, digest);
      if (location.hash === hash) ready('browse', what);
    } catch (error) {
      if (location.hash === hash) failed('browse', error);
    }
  },
});
