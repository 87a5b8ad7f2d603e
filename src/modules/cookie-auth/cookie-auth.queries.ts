import { eq, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { sessions } from '../auth/auth.table.js';

/** The session a browser cookie belongs to (by the cookie's SHA-256); undefined when unknown. */
export async function findSessionIdByCookieHash(db: DbOrTx, cookieTokenHash: string): Promise<string | undefined> {
  const [row] = await db
    .select({ id: sessions.id })
    .from(sessions)
    .where(eq(sessions.cookieTokenHash, cookieTokenHash))
    .limit(1);
  return row?.id;
}

/** Records that a cookie session was used (the session list's "last activity"). */
export async function touchSession(db: DbOrTx, sessionId: string): Promise<void> {
  await db.update(sessions).set({ lastActivityAt: sql`now()` }).where(eq(sessions.id, sessionId));
}
