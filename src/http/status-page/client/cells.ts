/** Table cells the views share: a time with its date in the tooltip, an expiry, a pin. */
import type { Lifetime } from './api-types.ts';
import { el } from './dom.ts';
import { relative, when } from './format.ts';

export function timeCell(ms: number, prefix = ''): HTMLTableCellElement {
  return el('td', { title: when(ms), 'data-time': ms }, prefix + relative(ms));
}

/** An expiry as the planner decides it: a time, "never" (TTL 0) or "pinned" (storage.eviction.keep). */
export function expiryCell(lifetime: Lifetime | undefined, tag: 'td' | 'dd' = 'td'): HTMLElement {
  if (!lifetime) return el(tag, { class: 'empty' }, '–');
  if (lifetime.expiry === 'pinned') {
    const by = lifetime.pinnedBy;
    return el(tag, { 'data-expiry': 'pinned' }, el('span', { class: 'badge pinned', title: by ? `storage.eviction.keep ${by.pattern} (${by.via})` : undefined }, 'pinned'));
  }
  if (lifetime.expiry === 'never' || lifetime.expiresAt === null) return el(tag, { 'data-expiry': 'never', title: 'proxy.ttl is 0: no expiry' }, 'never');
  const due = lifetime.expiresAt <= Date.now();
  return el(tag, { 'data-expiry': lifetime.expiresAt, title: when(lifetime.expiresAt), class: due ? 'due' : undefined }, due ? 'due (next pass)' : relative(lifetime.expiresAt));
}

export function pinCell(lifetime: Lifetime | undefined): HTMLTableCellElement {
  const by = lifetime?.expiry === 'pinned' ? lifetime.pinnedBy : undefined;
  if (!by) return el('td', {}, '');
  return el('td', { 'data-pinned': by.pattern }, el('span', { class: 'badge pinned' }, by.pattern), ' ', el('span', { class: 'sub' }, `via ${by.via}`));
}
