/** GET api/<path>?params: the JSON answer, or an Error with the server's message. */
export async function api<T>(path: string, params?: Record<string, string | undefined>): Promise<T> {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params ?? {})) if (value !== undefined && value !== '') query.set(key, value);
  const q = query.toString();
  // Relative: the page works behind a reverse proxy that mounts the mirror under a path.
  const response = await fetch(`api/${path}${q ? `?${q}` : ''}`, { cache: 'no-store' });
  let body: unknown;
  try {
    body = await response.json();
  } catch {
    body = undefined;
  }
  if (!response.ok) throw new Error(errorMessage(body) ?? `status ${response.status}`);
  return body as T;
}

/** The /api routes answer `{ error }`; the registry's errors come as `{ errors: [{ message }] }`. */
function errorMessage(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const { error, errors } = body as { error?: unknown; errors?: { message?: unknown }[] };
  if (typeof error === 'string') return error;
  const first = Array.isArray(errors) ? errors[0]?.message : undefined;
  return typeof first === 'string' ? first : undefined;
}
