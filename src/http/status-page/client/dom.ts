/*
 * Building the page's DOM: text only, never HTML from data (repository names and tags reach
 * the page as text). No inline style attribute either: the CSP allows none (style-src 'self'),
 * so a width set from data goes through the CSSOM (node.style), which the CSP does not govern.
 */

/** The element with this id; the page's markup holds every id the scripts ask for. */
export function $(id: string): HTMLElement {
  const node = document.getElementById(id);
  if (!node) throw new Error(`the page has no #${id}`);
  return node;
}

export type Attributes = Record<string, string | number | boolean | undefined | null>;
export type Child = Node | string | number | undefined | null | false;

/** el('td', { class: 'num', title: '…' }, 'text', childNode, …) */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs?: Attributes, ...children: Child[]): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = String(value);
    else if (key.startsWith('data-')) node.dataset[key.slice(5).replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase())] = String(value);
    else node.setAttribute(key, String(value));
  }
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A table; a header ending in a space is a number column (right-aligned). */
export function table(headers: string[], rows: HTMLTableRowElement[], id?: string): HTMLTableElement {
  return el(
    'table',
    { id },
    el('thead', {}, el('tr', {}, ...headers.map((h) => el('th', { class: h.endsWith(' ') ? 'num' : undefined }, h.trim())))),
    el('tbody', {}, ...rows),
  );
}

export function code(text: string, title?: string): HTMLElement {
  return el('code', { title: title ?? text }, text);
}

export function shortDigest(digest: string | undefined): string {
  return digest ? digest.slice(0, 19) : '';
}

/** An SVG element (the chart): same rules as el(), in the SVG namespace. */
export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Attributes, ...children: Child[]): SVGElementTagNameMap[K] {
  const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [key, value] of Object.entries(attrs)) if (value !== undefined && value !== null) node.setAttribute(key, String(value));
  for (const child of children) if (child !== undefined && child !== null && child !== false) node.append(child instanceof Node ? child : String(child));
  return node;
}

/**
 * Text that may break after a dot or a slash between letters (`storage.eviction.maxsize`, a path):
 * a config key in a narrow card wraps at its dots instead of running out of the card.
 */
export function breakable(text: string): DocumentFragment {
  const fragment = document.createDocumentFragment();
  for (const part of text.split(/(?<=[a-z][./])(?=[a-z])/i)) fragment.append(part, document.createElement('wbr'));
  fragment.lastChild?.remove();
  return fragment;
}
