/**
 * Polls `check` every `everyMs` until it holds or `ms` pass; answers whether it held. For
 * state a test watches from outside (files, descriptors, log lines), where no event tells.
 */
export async function eventually(check: () => boolean | Promise<boolean>, ms = 10_000, everyMs = 50): Promise<boolean> {
  const deadline = performance.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}
