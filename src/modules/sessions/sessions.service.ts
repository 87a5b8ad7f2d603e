import { eq, sql } from 'drizzle-orm';
import UAParser from 'ua-parser-js';
import type { DbOrTx } from '../../platform/db/client.js';
import { TtlCache } from '../../platform/ttl-cache.js';
import { sessions } from '../auth/auth.table.js';

export interface DeviceDescription {
  deviceType: string | null;
  browser: string | null;
  os: string | null;
}

const MAX_USER_AGENT = 512;

/**
 * What a session list shows of the client: device type (`desktop`, `mobile`, `tablet`, `console`,
 * `smarttv`, `wearable`, `embedded`, or `other` for a non-browser client), browser and OS with their
 * major versions. ua-parser-js names no type for desktops, so a recognised browser or OS without
 * one is a desktop.
 */
export function describeUserAgent(userAgent: string | undefined): DeviceDescription {
  if (!userAgent) return { deviceType: null, browser: null, os: null };
  const { browser, os, device } = UAParser(userAgent.slice(0, MAX_USER_AGENT));
  const browserName = browser.name ? [browser.name, browser.major].filter(Boolean).join(' ') : null;
  const osName = os.name ? [os.name, os.version].filter(Boolean).join(' ') : null;
  const deviceType = device.type ?? (browserName || osName ? 'desktop' : 'other');
  return { deviceType, browser: browserName, os: osName };
}

const TOUCH_EVERY_MS = 60_000;
const lastTouched = new TtlCache<string, true>(100_000);

/**
 * Records that a session was used, by its access token or its cookie (the session list's "last
 * activity"): at most one write a minute per session and node, so a busy client costs no write per
 * request and the list is a minute behind at most.
 */
export async function noteSessionUse(db: DbOrTx, sessionId: string, now = Date.now()): Promise<void> {
  if (lastTouched.get(sessionId, now)) return;
  lastTouched.set(sessionId, true, now + TOUCH_EVERY_MS);
  await db.update(sessions).set({ lastActivityAt: sql`now()` }).where(eq(sessions.id, sessionId));
}
