import { and, desc, eq, gt, isNull, lt, or, type SQL, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { sessions } from '../auth/auth.table.js';
import { organizations } from '../organizations/organizations.table.js';
import { users } from '../users/users.table.js';

export interface SessionRow {
  id: string;
  userId: string;
  organizationId: string;
  organizationCode: string;
  ipAddress: string | null;
  userAgent: string | null;
  deviceType: string | null;
  browser: string | null;
  os: string | null;
  createdAt: Date;
  lastActivityAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  active: boolean;
}

const isActive = sql<boolean>`(${sessions.revokedAt} is null and ${sessions.expiresAt} > now())`;

const columns = {
  id: sessions.id,
  userId: sessions.userId,
  organizationId: sessions.organizationId,
  organizationCode: organizations.code,
  ipAddress: sessions.ipAddress,
  userAgent: sessions.userAgent,
  deviceType: sessions.deviceType,
  browser: sessions.browser,
  os: sessions.os,
  createdAt: sessions.createdAt,
  lastActivityAt: sessions.lastActivityAt,
  expiresAt: sessions.expiresAt,
  revokedAt: sessions.revokedAt,
  active: isActive,
};

export interface ListSessionsFilter {
  /** Confines the list to one organization's sessions. */
  organizationId?: string | undefined;
  userId?: string | undefined;
  active?: boolean | undefined;
  /** The id of the last session of the previous page. */
  after?: string | undefined;
  limit: number;
}

/** Sessions newest first (ids are time-ordered), `limit + 1` rows for the page cut. */
export async function listSessions(db: DbOrTx, filter: ListSessionsFilter): Promise<SessionRow[]> {
  const where: (SQL | undefined)[] = [];
  if (filter.organizationId !== undefined) where.push(eq(sessions.organizationId, filter.organizationId));
  if (filter.userId !== undefined) {
    // Naming the user's organization lets the (organization_id, user_id, id) index serve the page.
    where.push(
      eq(sessions.userId, filter.userId),
      eq(
        sessions.organizationId,
        sql`(select ${users.organizationId} from ${users} where ${users.id} = ${filter.userId})`,
      ),
    );
  }
  if (filter.active === true) where.push(isNull(sessions.revokedAt), gt(sessions.expiresAt, sql`now()`));
  if (filter.active === false)
    where.push(or(sql`${sessions.revokedAt} is not null`, sql`${sessions.expiresAt} <= now()`));
  if (filter.after !== undefined) where.push(lt(sessions.id, filter.after));
  const rows = await db
    .select(columns)
    .from(sessions)
    .innerJoin(organizations, eq(organizations.id, sessions.organizationId))
    .where(and(...where))
    .orderBy(desc(sessions.id))
    .limit(filter.limit + 1);
  return rows.map((r) => ({ ...r, active: r.active === true }));
}

/** One session by id; undefined when unknown. */
export async function findSession(db: DbOrTx, id: string): Promise<SessionRow | undefined> {
  const [row] = await db
    .select(columns)
    .from(sessions)
    .innerJoin(organizations, eq(organizations.id, sessions.organizationId))
    .where(eq(sessions.id, id))
    .limit(1);
  return row && { ...row, active: row.active === true };
}
