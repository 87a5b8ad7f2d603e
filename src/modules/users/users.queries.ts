import { and, asc, desc, eq, getTableColumns, inArray, type SQL, sql } from 'drizzle-orm';
import { type DbOrTx, preparedPerHandle, queryRows } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { likePrefix } from '../../platform/db/like.js';
import { decodeCursor, invalidCursor } from '../../platform/http/pagination.js';
import { mfaTotp } from '../mfa/mfa.table.js';
import { organizations } from '../organizations/organizations.table.js';
import type { ListUsersInput, UserSort } from './users.schemas.js';
import { USER_STATUSES, type User, type UserStatus, users } from './users.table.js';

export type UserWithOrganization = User & { organizationCode: string; mfaEnabled: boolean };

// Must match the index expressions in users.table.ts for the planner to use them.
const emailKey = sql`lower(${users.email}) collate "C"`;
const usernameKey = sql`lower(${users.username}) collate "C"`;
const firstNameKey = sql`lower(${users.firstName}) collate "C"`;
const lastNameKey = sql`lower(${users.lastName}) collate "C"`;

/**
 * Whether the user has a confirmed authenticator: an EXISTS on mfa_totp's unique user index, so a
 * list page reads the flag in its own statement, not with a query per row.
 */
export const mfaEnabledColumn = sql<boolean>`exists (select 1 from ${mfaTotp} where ${mfaTotp.userId} = ${users.id} and ${mfaTotp.confirmedAt} is not null)`;

const withOrganization = {
  ...getTableColumns(users),
  organizationCode: organizations.code,
  mfaEnabled: mfaEnabledColumn,
};

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
  if (filter.id) conditions.push(inArray(users.id, filter.id));
  if (filter.status) conditions.push(statusIs(filter.status));
  if (filter.user_type) conditions.push(eq(users.userType, filter.user_type));
  if (filter.is_staff !== undefined) conditions.push(eq(users.isStaff, filter.is_staff));
  if (filter.is_active !== undefined) {
    conditions.push(filter.is_active ? statusIs('active') : sql`${users.status} <> 'active'`);
  }
  if (filter.email) conditions.push(sql`${emailKey} like ${likePrefix(filter.email.toLowerCase())}`);

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
  const rows = (where: SQL | undefined) =>
    db
      .select(withOrganization)
      .from(users)
      .innerJoin(organizations, eq(organizations.id, users.organizationId))
      .where(where)
      .orderBy(...order)
      .limit(filter.limit + 1);

  if (!filter.search) return rows(and(...conditions));
  const ids = await searchPageIds(db, and(...conditions), filter.search, { byEmail, descending }, filter.limit + 1);
  return ids.length === 0 ? [] : rows(inArray(users.id, ids));
}

/** Rows of the list's order a search page first reads with its filter; see `searchPageIds`. */
const SEARCH_WALK_ROWS = 4000;

/**
 * The ids of one page of a prefix search (email, username, first or last name) in the list's order.
 *
 * One OR over four columns cannot use their indexes in the list's order, so PostgreSQL walks the order
 * (the email or id index) and filters: fast when matches are many and early, but a rare prefix whose
 * matches sit late in that order read nearly every user (0.6 s at 1M users for `user96`, 11,111 matches
 * at 95 % of the email order). So the walk reads at most `SEARCH_WALK_ROWS` rows; when it finds fewer
 * matches than a page, each column's matches past the walk come from that column's own index and are
 * sorted (their number bounds the cost; the list's own column, email in email order, is read in order),
 * each branch leaving out the rows an earlier one found. Both halves run in one statement: the second
 * is skipped by a one-time filter when the walk filled the page or reached the end.
 */
async function searchPageIds(
  db: DbOrTx,
  where: SQL | undefined,
  search: string,
  order: { byEmail: boolean; descending: boolean },
  limit: number,
): Promise<string[]> {
  const prefix = likePrefix(search.toLowerCase());
  const columns = [emailKey, usernameKey, firstNameKey, lastNameKey];
  const matches = columns.map((column) => sql`(${column} like ${prefix})`);
  const dir = sql.raw(order.descending ? 'desc' : 'asc');
  const back = sql.raw(order.descending ? 'asc' : 'desc');
  const past = sql.raw(order.descending ? '<' : '>');
  // The walk's rows carry their sort key (the email key and the id, or the id).
  const keyOf = order.byEmail ? sql`${emailKey} as k, ${users.id} as id` : sql`${users.id} as id`;
  const walkOrder = order.byEmail ? sql`k ${dir}, id ${dir}` : sql`id ${dir}`;
  const lastFirst = order.byEmail ? sql`k ${back}, id ${back}` : sql`id ${back}`;
  const afterWalk = order.byEmail
    ? sql`(${emailKey}, ${users.id}) ${past} (select k, id from last_walked)`
    : sql`${users.id} ${past} (select id from last_walked)`;
  const branches = matches.map((match, i) => {
    const earlier = matches.slice(0, i).map((m) => sql` and ${m} is not true`);
    // Sorting by an expression no index has makes PostgreSQL fetch the column's matches and sort them,
    // rather than walk the list's order hoping to meet them early: the very walk this replaces.
    const natural = order.byEmail && i === 0;
    const branchOrder = order.byEmail
      ? natural
        ? sql`${emailKey} ${dir}, ${users.id} ${dir}`
        : sql`(${emailKey} || '') ${dir}, ${users.id} ${dir}`
      : sql`(${users.id}::text collate "C") ${dir}`;
    return sql`(select ${users.id} as id from ${users}
      where ${where ?? sql`true`} and ${match}${sql.join(earlier, sql``)} and ${afterWalk}
      order by ${branchOrder} limit ${limit})`;
  });
  const rows = await queryRows<{ id: string }>(
    db,
    sql`with walk as materialized (
        select ${keyOf}, ${sql.join(matches, sql` or `)} as m from ${users}
        where ${where ?? sql`true`} order by ${walkOrder} limit ${SEARCH_WALK_ROWS}
      ),
      found as (select id from walk where m order by ${walkOrder} limit ${limit}),
      last_walked as (select ${order.byEmail ? sql`k, id` : sql`id`} from walk order by ${lastFirst} limit 1)
      select id::text from found
      union all
      select id::text from (${sql.join(branches, sql` union all `)}) rest
      where (select count(*) from found) < ${limit} and (select count(*) from walk) = ${SEARCH_WALK_ROWS}`,
  );
  return rows.map((r) => r.id);
}
