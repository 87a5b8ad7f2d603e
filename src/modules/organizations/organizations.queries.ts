import { and, asc, eq, gt, ilike, inArray, or, type SQL, sql } from 'drizzle-orm';
import { type DbOrTx, preparedPerHandle } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { likePrefix } from '../../platform/db/like.js';
import { type Actor, organizationScopeOf } from '../../platform/http/auth.js';
import { cursorId } from '../../platform/http/pagination.js';
import type { ListOrganizationsInput } from './organizations.schemas.js';
import { type Organization, organizations } from './organizations.table.js';

// Organizations are looked up on many requests (filters, provisioning by code): prepared once per handle.
const byCodeQuery = preparedPerHandle((db) =>
  db
    .select()
    .from(organizations)
    .where(eq(organizations.code, sql.placeholder('code')))
    .limit(1)
    .prepare('find_organization_by_code'),
);
const byIdQuery = preparedPerHandle((db) =>
  db
    .select()
    .from(organizations)
    .where(eq(organizations.id, sql.placeholder('id')))
    .limit(1)
    .prepare('find_organization_by_id'),
);

/**
 * Finds an organization by id or by code; `scopeOrganizationId` (when given) answers only that
 * organization, so another one looks absent.
 */
export async function findOrganization(
  db: DbOrTx,
  ref: string,
  scopeOrganizationId?: string,
): Promise<Organization | undefined> {
  const org =
    (isUuid(ref) ? await findOrganizationById(db, ref) : undefined) ?? (await findOrganizationByCode(db, ref));
  return scopeOrganizationId === undefined || org?.id === scopeOrganizationId ? org : undefined;
}

export async function findOrganizationByCode(db: DbOrTx, code: string): Promise<Organization | undefined> {
  const [row] = await byCodeQuery(db).execute({ code });
  return row;
}

export async function findOrganizationById(db: DbOrTx, id: string): Promise<Organization | undefined> {
  if (!isUuid(id)) return undefined;
  const [row] = await byIdQuery(db).execute({ id });
  return row;
}

/**
 * Whether the organization is active, holding its row in share mode until the caller's transaction
 * ends: a deactivation (an update of the row) waits for that transaction, and one that committed
 * first is seen, so no write of the caller lands after it.
 */
export async function holdActiveOrganization(tx: DbOrTx, id: string): Promise<boolean> {
  const [row] = await tx
    .select({ id: organizations.id })
    .from(organizations)
    .where(and(eq(organizations.id, id), eq(organizations.isActive, true)))
    .for('share');
  return row !== undefined;
}

/**
 * Which of these organizations are active, holding their rows in share mode until the caller's
 * transaction ends (as holdActiveOrganization does for one): a deactivation waits for the caller's
 * writes, or was committed first and is seen.
 */
export async function holdActiveOrganizations(tx: DbOrTx, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await tx
    .select({ id: organizations.id })
    .from(organizations)
    .where(and(inArray(organizations.id, ids), eq(organizations.isActive, true)))
    .for('share');
  return new Set(rows.map((r) => r.id));
}

/** Keyset page of organizations ordered by id (creation order); `organizationId` confines it to that one. */
export async function listOrganizations(
  db: DbOrTx,
  input: ListOrganizationsInput & { limit: number; organizationId?: string | undefined },
) {
  const conditions: SQL[] = [];
  if (input.organizationId !== undefined) conditions.push(eq(organizations.id, input.organizationId));
  if (input.search) {
    const prefix = likePrefix(input.search);
    conditions.push(or(ilike(organizations.code, prefix), ilike(organizations.name, prefix)) as SQL);
  }
  if (input.is_active !== undefined) conditions.push(eq(organizations.isActive, input.is_active));
  if (input.cursor) conditions.push(gt(organizations.id, cursorId(input.cursor)));
  return db
    .select()
    .from(organizations)
    .where(and(...conditions))
    .orderBy(asc(organizations.id))
    .limit(input.limit + 1);
}

/**
 * The organization a list is narrowed to: its `?organization=` filter (code or id) when that is
 * within the caller's reach, else the caller's own reach (undefined = every organization). Null when
 * the filter names an unknown organization or one outside the caller's reach: nothing to list.
 */
export async function listingScope(
  db: DbOrTx,
  actor: Actor,
  requested: string | undefined,
): Promise<string | undefined | null> {
  const reach = organizationScopeOf(actor);
  if (!requested) return reach;
  const org = await findOrganization(db, requested);
  if (!org || (reach !== undefined && org.id !== reach)) return null;
  return org.id;
}
