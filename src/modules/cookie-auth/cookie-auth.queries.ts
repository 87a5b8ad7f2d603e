import { eq } from 'drizzle-orm';
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
