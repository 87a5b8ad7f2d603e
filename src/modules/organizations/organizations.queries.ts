import { and, asc, eq, gt, ilike, or, type SQL } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { likePrefix } from '../../platform/db/like.js';
import { decodeCursor, invalidCursor } from '../../platform/http/pagination.js';
import type { ListOrganizationsInput } from './organizations.schemas.js';
import { type Organization, organizations } from './organizations.table.js';

/** Finds an organization by id or by code. */
export async function findOrganization(db: DbOrTx, ref: string): Promise<Organization | undefined> {
  const where = isUuid(ref) ? or(eq(organizations.id, ref), eq(organizations.code, ref)) : eq(organizations.code, ref);
  const [row] = await db.select().from(organizations).where(where).limit(1);
  return row;
}

export async function findOrganizationByCode(db: DbOrTx, code: string): Promise<Organization | undefined> {
  const [row] = await db.select().from(organizations).where(eq(organizations.code, code)).limit(1);
  return row;
}

export async function findOrganizationById(db: DbOrTx, id: string): Promise<Organization | undefined> {
  const [row] = await db.select().from(organizations).where(eq(organizations.id, id)).limit(1);
  return row;
}

/** Keyset page of organizations ordered by id (creation order). */
export async function listOrganizations(db: DbOrTx, input: ListOrganizationsInput & { limit: number }) {
  const conditions: SQL[] = [];
  if (input.search) {
    const prefix = likePrefix(input.search);
    conditions.push(or(ilike(organizations.code, prefix), ilike(organizations.name, prefix)) as SQL);
  }
  if (input.is_active !== undefined) conditions.push(eq(organizations.isActive, input.is_active));
  if (input.cursor) {
    const [lastId] = decodeCursor(input.cursor, 1);
    if (typeof lastId !== 'string' || !isUuid(lastId)) throw invalidCursor();
    conditions.push(gt(organizations.id, lastId as string));
  }
  return db
    .select()
    .from(organizations)
    .where(and(...conditions))
    .orderBy(asc(organizations.id))
    .limit(input.limit + 1);
}
