import { desc, gt, isNull, or, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { type SigningKey, signingKeys } from './signing-keys.table.js';

/** Keys still useful: the active one(s) and retired ones still published. Newest first. */
export async function listPublishedSigningKeys(db: DbOrTx): Promise<SigningKey[]> {
  return db
    .select()
    .from(signingKeys)
    .where(or(isNull(signingKeys.retiredAt), gt(signingKeys.publishUntil, sql`now()`)))
    .orderBy(desc(signingKeys.createdAt));
}

/** Every key ever made, newest first (the CLI's `keys list`). */
export async function listAllSigningKeys(db: DbOrTx): Promise<SigningKey[]> {
  return db.select().from(signingKeys).orderBy(desc(signingKeys.createdAt));
}

export async function findActiveSigningKey(db: DbOrTx): Promise<SigningKey | undefined> {
  const [row] = await db
    .select()
    .from(signingKeys)
    .where(isNull(signingKeys.retiredAt))
    .orderBy(desc(signingKeys.createdAt))
    .limit(1);
  return row;
}
