import { chromium, type Browser, type Page } from 'playwright-core';
import { findBinary } from './processes.ts';

/** Debian's chromium: the status page and the browser are checked in it, headless. */
const CHROMIUM = findBinary('chromium') ?? '/usr/bin/chromium';

/**
 * A headless chromium. No sandbox: CI runs as root, where chromium refuses its sandbox; no GPU;
 * no /dev/shm (small in containers).
 */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
}

/** Opens `url` (a mirror's status page or browser) in a new page, once its script says it has loaded. */
export async function openLoadedPage(browser: Browser, url: string): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForSelector('body[data-loaded="true"]', { timeout: 15_000 });
  return page;
}
