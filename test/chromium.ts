import { existsSync } from 'node:fs';
import { type Browser, chromium } from 'playwright-core';

/** Debian's `chromium` package: CHROMIUM, else /usr/bin/chromium. */
const BINARY = process.env.CHROMIUM ?? '/usr/bin/chromium';

export function hasChromium(): boolean {
  return existsSync(BINARY);
}

/** A headless Chromium; no sandbox, as CI runs as root where Chromium refuses its own sandbox. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: BINARY, headless: true, args: ['--no-sandbox'], timeout: 30_000 });
}
