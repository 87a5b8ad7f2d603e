import { and, asc, count, eq, gt, type SQL, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { AppError } from '../../platform/http/errors.js';
import { organizations } from '../organizations/organizations.table.js';
import { compileFilter } from '../scim/scim.filter.js';
import { USER_FILTER_ATTRIBUTES } from '../scim/scim.user-mapping.js';
import { users } from '../users/users.table.js';

/** Which users an export takes; every part optional except the organization scope. */
export interface ExportFilter {
  /** undefined: every organization (superusers only). */
  organizationId: string | undefined;
  /** A compiled SCIM filter over the user (see scim.user-mapping.ts). */
  scim: SQL | undefined;
  userType: string | undefined;
  /** The name of an attribute that must be `true`, e.g. seed 003's `tv_service`. */
  flag: string | undefined;
  includeInactive: boolean;
}

/** A SCIM filter over the users (the attributes `/scim/v2/Users` filters on), as SQL; 400 naming `filter` otherwise. */
export function scimFilterOf(expression: string): SQL {
  try {
    return compileFilter(expression, USER_FILTER_ATTRIBUTES);
  } catch (err) {
    const detail = err instanceof AppError ? err.message : 'The filter cannot be read.';
    throw new AppError(400, 'invalid_filter', detail, { errors: [{ field: 'filter', message: detail }] });
  }
}

/** The columns an exported user is made of. */
export const exportColumns = {
  id: users.id,
  username: users.username,
  email: users.email,
  firstName: users.firstName,
  lastName: users.lastName,
  status: users.status,
  dateJoined: users.dateJoined,
  lastLogin: users.lastLogin,
  userType: users.userType,
  externalId: users.externalId,
  scimExternalId: users.scimExternalId,
  attributes: users.attributes,
  organizationId: users.organizationId,
  organizationCode: organizations.code,
};

/** The conditions without the status one, which the statistics split on. */
function scopeConditions(filter: ExportFilter): SQL[] {
  const conditions: SQL[] = [];
  if (filter.organizationId) conditions.push(eq(users.organizationId, filter.organizationId));
  if (filter.userType) conditions.push(eq(users.userType, filter.userType));
  if (filter.flag) conditions.push(sql`${users.attributes} -> ${filter.flag} = 'true'::jsonb`);
  if (filter.scim) conditions.push(filter.scim);
  return conditions;
}

function exportConditions(filter: ExportFilter): SQL[] {
  const conditions = scopeConditions(filter);
  if (!filter.includeInactive) conditions.push(eq(users.status, 'active'));
  return conditions;
}

/**
 * One chunk of the export in id order (UUIDv7, so the order users were created in this installation:
 * an imported user keeps an older `date_joined` but comes after them), after `afterId`.
 * Keyset chunks use the (organization, id) and (status, id) indexes and cost the same at any depth.
 */
export function exportChunk(db: DbOrTx, filter: ExportFilter, limit: number, afterId?: string) {
  const conditions = exportConditions(filter);
  if (afterId) conditions.push(gt(users.id, afterId));
  return db
    .select(exportColumns)
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(and(...conditions))
    .orderBy(asc(users.id))
    .limit(limit);
}

export interface ExportCounts {
  totalUsers: number;
  totalActiveUsers: number;
  exportableUsers: number;
  /** Exportable users per user type (null: users without one), most first. */
  byUserType: { userType: string | null; count: number }[];
}

/**
 * What an export with this filter would take, and the totals around it. `total_*` count the
 * organization scope only; `exportable` applies the whole filter, in one pass over the scope.
 */
export async function exportCounts(db: DbOrTx, filter: ExportFilter): Promise<ExportCounts> {
  const scope = filter.organizationId ? eq(users.organizationId, filter.organizationId) : undefined;
  const exportable = and(...exportConditions(filter)) ?? sql`true`;
  const [totals] = await db
    .select({
      total: count(),
      active: sql<number>`count(*) filter (where ${users.status} = 'active')`.mapWith(Number),
    })
    .from(users)
    .where(scope);
  const byType = await db
    .select({ userType: users.userType, n: count() })
    .from(users)
    .where(exportable)
    .groupBy(users.userType);
  const byUserType = byType
    .map((row) => ({ userType: row.userType, count: row.n }))
    .sort((a, b) => b.count - a.count || String(a.userType).localeCompare(String(b.userType)));
  return {
    totalUsers: totals?.total ?? 0,
    totalActiveUsers: totals?.active ?? 0,
    exportableUsers: byUserType.reduce((sum, row) => sum + row.count, 0),
    byUserType,
  };
}

export type ExportRow = Awaited<ReturnType<typeof exportChunk>>[number];
