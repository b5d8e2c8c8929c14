/**
 * The mirror's address as clients are to reach it: an http or https origin and nothing else.
 * A path would be wrong for every client kind (dockerd takes a bare host; containerd and podman
 * get the registry from `?ns=` or from the path this generator adds itself), so junk after the
 * host is refused with what was found rather than silently dropped.
 */
export interface MirrorUrl {
  /** `http://mirror.example:5000`: scheme, host and port as clients write them (default port dropped). */
  origin: string;
  /** `mirror.example:5000`: what registries.conf and `docker pull HOST/…` take. */
  host: string;
  /** Plain HTTP: podman needs `insecure = true`, dockerd an `insecure-registries` entry for pulls by name. */
  insecure: boolean;
}

/** An expected outcome, so a value: the URL, or what is wrong with it in words a user can act on. */
export type MirrorUrlResult = { ok: true; url: MirrorUrl } | { ok: false; error: string };

const EXAMPLE = 'e.g. http://mirror.example:5000';

export function parseMirrorUrl(text: string): MirrorUrlResult {
  // Never repeated: anything that may be credentials (a secret has no place in an error message).
  const redacted = text.replace(/\/\/[^/]*@/, '//…@');
  const shown = JSON.stringify(redacted.length > 200 ? `${redacted.slice(0, 200)}…` : redacted);
  const fail = (why: string): MirrorUrlResult => ({ ok: false, error: `mirror URL ${shown}: ${why}` });
  if (text.trim() === '') return fail(`empty; expected an http or https URL, ${EXAMPLE}`);
  if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) return fail(`no scheme; write http://${redacted} or https://${redacted}`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return fail(`not a URL; expected an http or https URL, ${EXAMPLE}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return fail(`scheme ${url.protocol.replace(/:$/, '')} is not http or https (${EXAMPLE})`);
  if (url.hostname === '') return fail(`no host (${EXAMPLE})`);
  if (url.username !== '' || url.password !== '') return fail('has credentials in it; clients log in to the mirror by their own means (docker login, auth.json), never through its URL');
  if (url.pathname !== '/' && url.pathname !== '') return fail(`has a path (${url.pathname}); give the mirror's origin only: the generated config names each registry itself`);
  if (url.search !== '' || text.includes('?')) return fail('has a query; give the mirror\'s origin only');
  if (url.hash !== '' || text.includes('#')) return fail('has a fragment; give the mirror\'s origin only');
  return { ok: true, url: { origin: url.origin, host: url.host, insecure: url.protocol === 'http:' } };
}
