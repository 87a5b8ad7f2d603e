import { and, asc, desc, eq, getTableColumns, or, type SQL, sql } from 'drizzle-orm';
import { type DbOrTx, preparedPerHandle } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { likePrefix } from '../../platform/db/like.js';
import { decodeCursor, invalidCursor } from '../../platform/http/pagination.js';
import { organizations } from '../organizations/organizations.table.js';
import type { ListUsersInput, UserSort } from './users.schemas.js';
import { USER_STATUSES, type User, type UserStatus, users } from './users.table.js';

export type UserWithOrganization = User & { organizationCode: string };

// Must match the index expressions in users.table.ts for the planner to use them.
const emailKey = sql`lower(${users.email}) collate "C"`;
const usernameKey = sql`lower(${users.username}) collate "C"`;
const firstNameKey = sql`lower(${users.firstName}) collate "C"`;
const lastNameKey = sql`lower(${users.lastName}) collate "C"`;

const withOrganization = { ...getTableColumns(users), organizationCode: organizations.code };

const userByIdQuery = preparedPerHandle((db) =>
  db
    .select(withOrganization)
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(eq(users.id, sql.placeholder('id')))
    .limit(1)
    .prepare('find_user_by_id'),
);

const userByIdInOrganizationQuery = preparedPerHandle((db) =>
  db
    .select(withOrganization)
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(and(eq(users.id, sql.placeholder('id')), eq(users.organizationId, sql.placeholder('organizationId'))))
    .limit(1)
    .prepare('find_user_by_id_in_organization'),
);

/** One user by id; `organizationId` (when given) confines the look-up to that organization. */
export async function findUserById(
  db: DbOrTx,
  id: string,
  organizationId?: string,
): Promise<UserWithOrganization | undefined> {
  if (!isUuid(id)) return undefined;
  const [row] = organizationId
    ? await userByIdInOrganizationQuery(db).execute({ id, organizationId })
    : await userByIdQuery(db).execute({ id });
  return row;
}

export interface ListUsersFilter extends Omit<ListUsersInput, 'organization'> {
  limit: number;
  organizationId?: string;
}

/**
 * The effective order. A prefix search lists by email unless told otherwise: matches then come in
 * the order of the email index, instead of a walk through every user by date looking for them.
 */
export function userSortOf(filter: { sort?: UserSort; search?: string; email?: string }): UserSort {
  return filter.sort ?? (filter.search || filter.email ? 'email' : '-date_joined');
}

/** Sort key of a row, as the cursor of the page that ends with it. */
export function userCursorKey(sort: UserSort, row: User): unknown[] {
  return sort.endsWith('email') ? [row.email.toLowerCase(), row.id] : [row.id];
}

// The status as a literal, never a parameter: the status indexes hold only users who are not active,
// and the planner uses them only when it sees the value (a cached generic plan would not).
const STATUS_LITERALS = Object.fromEntries(USER_STATUSES.map((s) => [s, sql.raw(`'${s}'`)])) as Record<UserStatus, SQL>;
const statusIs = (status: UserStatus): SQL => sql`${users.status} = ${STATUS_LITERALS[status]}`;

/**
 * A keyset page of users. Every sort ends in the id, so the order is total and a page continues
 * exactly after the last row seen, however many rows were inserted meanwhile.
 */
export async function listUsers(db: DbOrTx, filter: ListUsersFilter): Promise<UserWithOrganization[]> {
  const sort = userSortOf(filter);
  const conditions: (SQL | undefined)[] = [];
  if (filter.organizationId) conditions.push(eq(users.organizationId, filter.organizationId));
  if (filter.status) conditions.push(statusIs(filter.status));
  if (filter.user_type) conditions.push(eq(users.userType, filter.user_type));
  if (filter.is_staff !== undefined) conditions.push(eq(users.isStaff, filter.is_staff));
  if (filter.is_active !== undefined) {
    conditions.push(filter.is_active ? statusIs('active') : sql`${users.status} <> 'active'`);
  }
  if (filter.email) conditions.push(sql`${emailKey} like ${likePrefix(filter.email.toLowerCase())}`);
  if (filter.search) {
    const prefix = likePrefix(filter.search.toLowerCase());
    conditions.push(
      or(
        sql`${emailKey} like ${prefix}`,
        sql`${usernameKey} like ${prefix}`,
        sql`${firstNameKey} like ${prefix}`,
        sql`${lastNameKey} like ${prefix}`,
      ),
    );
  }

  const descending = sort.startsWith('-');
  const byEmail = sort.endsWith('email');
  if (filter.cursor) {
    const values = decodeCursor(filter.cursor, byEmail ? 2 : 1);
    const lastId = values[values.length - 1];
    if (typeof lastId !== 'string' || !isUuid(lastId)) throw invalidCursor();
    if (byEmail) {
      if (typeof values[0] !== 'string') throw invalidCursor();
      const op = descending ? sql`<` : sql`>`;
      conditions.push(sql`(${emailKey}, ${users.id}) ${op} (${values[0]} collate "C", ${lastId}::uuid)`);
    } else {
      conditions.push(descending ? sql`${users.id} < ${lastId}::uuid` : sql`${users.id} > ${lastId}::uuid`);
    }
  }
  const direction = descending ? desc : asc;
  const order = byEmail ? [direction(emailKey), direction(users.id)] : [direction(users.id)];

  return db
    .select(withOrganization)
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(and(...conditions))
    .orderBy(...order)
    .limit(filter.limit + 1);
}
