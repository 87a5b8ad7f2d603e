import { and, desc, eq, getTableColumns, isNull, lt, notExists, or, type SQL, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import type { DbOrTx } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { decodeCursor, invalidCursor } from '../../platform/http/pagination.js';
import { organizations } from '../organizations/organizations.table.js';
import { mfaEnabledColumn } from '../users/users.queries.js';
import { users } from '../users/users.table.js';
import { type UserType, userTypes } from './user-types.table.js';

export type UserTypeWithOrganization = UserType & { organizationCode: string | null };

const withOrganization = { ...getTableColumns(userTypes), organizationCode: organizations.code };

/** One user type by id. */
export async function findUserTypeById(db: DbOrTx, id: string): Promise<UserTypeWithOrganization | undefined> {
  if (!isUuid(id)) return undefined;
  const [row] = await db
    .select(withOrganization)
    .from(userTypes)
    .leftJoin(organizations, eq(organizations.id, userTypes.organizationId))
    .where(eq(userTypes.id, id));
  return row;
}

/** The type a plural names for an organization: its own type first, then the global one. */
export async function findUserTypeByPlural(
  db: DbOrTx,
  organizationId: string,
  plural: string,
): Promise<UserTypeWithOrganization | undefined> {
  const [row] = await db
    .select(withOrganization)
    .from(userTypes)
    .leftJoin(organizations, eq(organizations.id, userTypes.organizationId))
    .where(
      and(
        eq(userTypes.plural, plural),
        or(eq(userTypes.organizationId, organizationId), isNull(userTypes.organizationId)),
      ),
    )
    .orderBy(sql`${userTypes.organizationId} nulls last`)
    .limit(1);
  return row;
}

/**
 * The type a user of an organization holds by code: the organization's own first, then the global
 * one (`organizationId` null: only global types, for an organization not created yet). The row is
 * locked FOR KEY SHARE, so in a transaction writing the user a concurrent deletion of the type waits
 * for it and then sees the user (deleteUserType refuses a type in use); the weakest lock that blocks
 * a DELETE, so bulk writes neither wait on a schema edit nor make one wait.
 */
export async function findUserTypeForUser(
  db: DbOrTx,
  organizationId: string | null,
  code: string,
): Promise<UserType | undefined> {
  const [row] = await db
    .select()
    .from(userTypes)
    .where(
      and(
        eq(userTypes.code, code),
        organizationId === null
          ? isNull(userTypes.organizationId)
          : or(eq(userTypes.organizationId, organizationId), isNull(userTypes.organizationId)),
      ),
    )
    .orderBy(sql`${userTypes.organizationId} nulls last`)
    .limit(1)
    .for('key share');
  return row;
}

/**
 * Whether any user holds the type: for an organization's type, a user of that organization with its
 * code; for a global type, a user with its code in an organization without its own type of that code.
 */
export async function isUserTypeInUse(db: DbOrTx, type: UserType): Promise<boolean> {
  const own = alias(userTypes, 'own');
  const holder =
    type.organizationId === null
      ? and(
          eq(users.userType, type.code),
          notExists(
            db
              .select({ id: own.id })
              .from(own)
              .where(and(eq(own.organizationId, users.organizationId), eq(own.code, type.code))),
          ),
        )
      : and(eq(users.organizationId, type.organizationId), eq(users.userType, type.code));
  const [row] = await db.select({ id: users.id }).from(users).where(holder).limit(1);
  return row !== undefined;
}

/** User types, newest first; `organizationId` confines the list to that organization's and the global ones. */
export async function listUserTypes(
  db: DbOrTx,
  filter: { organizationId?: string | undefined; limit: number; cursor?: string | undefined },
): Promise<UserTypeWithOrganization[]> {
  const where: SQL[] = [];
  if (filter.organizationId) {
    where.push(or(eq(userTypes.organizationId, filter.organizationId), isNull(userTypes.organizationId)) as SQL);
  }
  if (filter.cursor) {
    const [id] = decodeCursor(filter.cursor, 1);
    if (typeof id !== 'string' || !isUuid(id)) throw invalidCursor();
    where.push(lt(userTypes.id, id));
  }
  return db
    .select(withOrganization)
    .from(userTypes)
    .leftJoin(organizations, eq(organizations.id, userTypes.organizationId))
    .where(and(...where))
    .orderBy(desc(userTypes.id))
    .limit(filter.limit + 1);
}

export interface TypedUserFilter {
  code: string;
  /** Confines the list to one organization; undefined = every organization (global type, superuser). */
  organizationId?: string | undefined;
  /** Matched by jsonb containment against attributes.profile, as a bound parameter. */
  profile: Record<string, unknown>;
  limit: number;
  cursorId?: string | undefined;
}

/** Users of one type, newest first (keyset on id), each with whether its second factor is on. */
export async function listTypedUsers(db: DbOrTx, filter: TypedUserFilter) {
  const where: SQL[] = [eq(users.userType, filter.code)];
  if (filter.organizationId) where.push(eq(users.organizationId, filter.organizationId));
  if (Object.keys(filter.profile).length > 0) {
    where.push(sql`${users.attributes} @> ${JSON.stringify({ profile: filter.profile })}::jsonb`);
  }
  if (filter.cursorId) where.push(lt(users.id, filter.cursorId));
  return db
    .select({ ...getTableColumns(users), organizationCode: organizations.code, mfaEnabled: mfaEnabledColumn })
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(and(...where))
    .orderBy(desc(users.id))
    .limit(filter.limit + 1);
}
