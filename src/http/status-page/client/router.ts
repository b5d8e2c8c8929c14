/*
 * The hash router that shows one view at a time (#/, #/browse/…, #/eviction, #/fleet), the
 * 5 s refresh of /api/status that every view may listen to, and the marks tests and people
 * wait for (data-ready on a drawn view, data-error on a failed one).
 */
import type { StatusDocument } from './api-types.ts';
import { $, el } from './dom.ts';

export interface Route {
  view: string;
  path: string[];
  params: URLSearchParams;
  hash: string;
}

export interface View {
  /** Draws the view for this route (again on every hash change within it). */
  enter?(route: Route): void | Promise<void>;
  /** Stops the view's own refresh. */
  leave?(): void;
}

const views: Record<string, View> = {};
const statusListeners: ((status: StatusDocument) => void)[] = [];
let lastStatus: StatusDocument | undefined;
let current: string | undefined;

export function registerView(name: string, view: View): void {
  views[name] = view;
}

/** Told of every /api/status answer (the 5 s refresh). */
export function onStatus(listener: (status: StatusDocument) => void): void {
  statusListeners.push(listener);
}

/** The last /api/status answer, if one came. */
export function latestStatus(): StatusDocument | undefined {
  return lastStatus;
}

/** Marks a view drawn: tests and people alike wait for this. */
export function ready(view: string, what: string): void {
  const section = $(`view-${view}`);
  section.dataset.ready = what;
  section.dataset.error = '';
}

export function failed(view: string, error: unknown): void {
  const message = error instanceof Error ? error.message : String(error);
  const section = $(`view-${view}`);
  section.dataset.error = message;
  $(`${view}-body`).replaceChildren(el('p', { class: 'gone', id: `${view}-error` }, message));
  section.dataset.ready = 'error';
}

/** #/browse/docker.io/library/alpine?cursor=x → { view, path: ['docker.io','library','alpine'], params } */
export function parseHash(): Route {
  const hash = location.hash.replace(/^#\/?/, '');
  const at = hash.indexOf('?');
  // A hand-edited hash with a stray % must not stop the page: the part is taken as written.
  const decode = (part: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  };
  const path = (at < 0 ? hash : hash.slice(0, at)).split('/').filter(Boolean).map(decode);
  return { view: path[0] || 'overview', path: path.slice(1), params: new URLSearchParams(at < 0 ? '' : hash.slice(at + 1)), hash: location.hash };
}

function route(): void {
  const r = parseHash();
  if (!document.getElementById(`view-${r.view}`)) r.view = 'overview';
  if (current && current !== r.view) views[current]?.leave?.();
  current = r.view;
  for (const section of document.querySelectorAll<HTMLElement>('section[data-view]')) section.hidden = section.dataset.view !== r.view;
  for (const link of document.querySelectorAll<HTMLElement>('#nav a')) link.classList.toggle('active', link.dataset.view === r.view);
  document.body.dataset.view = r.view;
  void views[r.view]?.enter?.(r);
}

async function refresh(): Promise<void> {
  try {
    const response = await fetch('api/status', { cache: 'no-store' });
    if (!response.ok) throw new Error(`status ${response.status}`);
    const status = (await response.json()) as StatusDocument;
    lastStatus = status;
    for (const listener of statusListeners) listener(status);
    $('error').textContent = '';
  } catch (error) {
    $('error').textContent = `(${error instanceof Error ? error.message : String(error)})`;
  }
}

export function startPage(): void {
  window.addEventListener('hashchange', route);
  route();
  void refresh();
  setInterval(() => void refresh(), 5000);
}
