import { and, eq, isNull, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { organizations } from '../organizations/organizations.table.js';
import type { UserStatus } from '../users/users.table.js';
import { users } from '../users/users.table.js';
import { sessions } from './auth.table.js';

export interface SessionStateRow {
  sessionId: string;
  userId: string;
  organizationId: string;
  organizationCode: string;
  organizationActive: boolean;
  userStatus: UserStatus;
  isStaff: boolean;
  isSuperuser: boolean;
  revokedAt: Date | null;
  expiresAt: Date;
}

/** What decides whether a session's tokens still work: the session, its user and its organization. */
export async function findSessionState(db: DbOrTx, sessionId: string): Promise<SessionStateRow | undefined> {
  const [row] = await db
    .select({
      sessionId: sessions.id,
      userId: sessions.userId,
      organizationId: sessions.organizationId,
      organizationCode: organizations.code,
      organizationActive: organizations.isActive,
      userStatus: users.status,
      isStaff: users.isStaff,
      isSuperuser: users.isSuperuser,
      revokedAt: sessions.revokedAt,
      expiresAt: sessions.expiresAt,
    })
    .from(sessions)
    .innerJoin(users, eq(users.id, sessions.userId))
    .innerJoin(organizations, eq(organizations.id, sessions.organizationId))
    .where(eq(sessions.id, sessionId))
    .limit(1);
  return row;
}

/** Revokes every open session of a user; returns how many were open. */
export async function revokeSessionsOfUser(db: DbOrTx, userId: string, reason: string): Promise<number> {
  const rows = await db
    .update(sessions)
    .set({ revokedAt: sql`now()`, revokedReason: reason })
    .where(and(eq(sessions.userId, userId), isNull(sessions.revokedAt)))
    .returning({ id: sessions.id });
  return rows.length;
}

/** Revokes every open session in an organization. */
export async function revokeSessionsOfOrganization(
  db: DbOrTx,
  organizationId: string,
  reason: string,
): Promise<number> {
  const rows = await db
    .update(sessions)
    .set({ revokedAt: sql`now()`, revokedReason: reason })
    .where(and(eq(sessions.organizationId, organizationId), isNull(sessions.revokedAt)))
    .returning({ id: sessions.id });
  return rows.length;
}

/** Revokes one session if it is still open; answers whether it was. */
export async function revokeSessionById(db: DbOrTx, sessionId: string, reason: string): Promise<boolean> {
  const rows = await db
    .update(sessions)
    .set({ revokedAt: sql`now()`, revokedReason: reason })
    .where(and(eq(sessions.id, sessionId), isNull(sessions.revokedAt)))
    .returning({ id: sessions.id });
  return rows.length > 0;
}
