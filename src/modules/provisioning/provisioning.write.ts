/**
 * The set-based write of a planned batch: new users in one binary COPY or one upsert, existing ones in
 * one update (the statements read their rows from one JSON parameter); and the organizations a batch
 * names that do not exist yet.
 */
import { type SQL, sql } from 'drizzle-orm';
import { type DbOrTx, queryRows } from '../../platform/db/client.js';
import { Chunk, copyBinary } from '../../platform/db/copy-binary.js';
import { findOrganizationByCode } from '../organizations/organizations.queries.js';
import { type Organization, organizations } from '../organizations/organizations.table.js';
import { holdersRenamed } from '../rbac/roles.service.js';
import type { UserStatus } from '../users/users.table.js';
import { isRewrite, type Plan, type Step } from './provisioning.plan.js';

/**
 * A batch's target rows as one JSON parameter read by `json_to_recordset`: one string to send,
 * instead of ten arrays the driver escapes element by element (a tenth of the server's CPU).
 */
function targetRows(plans: Plan[]): SQL {
  // Short keys, and nulls and defaults left out: the parameter is most of what goes over the wire.
  const rows = plans.map((p) => {
    const t = p.target;
    const r: Record<string, unknown> = { i: t.id, o: p.organization.id, e: t.email };
    if (t.externalId !== null) r.x = t.externalId;
    if (t.scimExternalId !== null) r.s = t.scimExternalId;
    if (t.username !== null) r.n = t.username;
    if (t.firstName !== '') r.f = t.firstName;
    if (t.lastName !== '') r.l = t.lastName;
    if (Object.keys(t.attributes).length > 0) r.a = t.attributes;
    if (t.status !== 'active') r.st = t.status;
    // The admin API's fields only when the item names them: absent, an update keeps the stored value
    // (a seed-000 or SCIM write never undoes a concurrent admin change). `ut` is a one-element array
    // because json_to_recordset reads a JSON null as SQL null: [null] clears the type, absence keeps it.
    const item = p.item;
    if (item.userType !== undefined) r.ut = [item.userType];
    if (item.isStaff !== undefined) r.sf = item.isStaff;
    if (item.isSuperuser !== undefined) r.su = item.isSuperuser;
    if (t.passwordHash !== null) r.p = t.passwordHash;
    // A new user's join date when the item gives one (an import); absent, the insert takes now().
    if (!p.existing && t.dateJoined !== null) r.dj = t.dateJoined.toISOString();
    return r;
  });
  return sql`(select r.i as id, r.o as organization_id, r.x as external_id, r.s as scim_external_id,
      r.n as username, r.e as email, coalesce(r.f, '') as first_name, coalesce(r.l, '') as last_name,
      coalesce(r.a, '{}'::jsonb) as attributes, coalesce(r.st, 'active') as status,
      r.ut as user_type_json, r.sf as is_staff, r.su as is_superuser, r.p as password_hash, r.dj as date_joined
    from json_to_recordset(${JSON.stringify(rows)}::json)
      as r(i uuid, o uuid, x text, s text, n text, e text, f text, l text, a jsonb, st text,
        ut json, sf boolean, su boolean, p text, dj timestamptz)) as v`;
}

/** The new users of a batch as one INSERT … SELECT; the caller adds ON CONFLICT and RETURNING. */
function insertUsers(plans: Plan[]): SQL {
  return sql`insert into users (id, organization_id, external_id, scim_external_id, username, email, first_name,
      last_name, attributes, status, user_type, is_staff, is_superuser, password_hash, date_joined)
    select v.id, v.organization_id, v.external_id, v.scim_external_id, v.username, v.email, v.first_name,
      v.last_name, v.attributes, v.status, v.user_type_json ->> 0, coalesce(v.is_staff, false),
      coalesce(v.is_superuser, false), v.password_hash, coalesce(v.date_joined, now())
    from ${targetRows(plans)}`;
}

/** A written row as the statements answer it (dates as text or Date, by driver). */
interface WrittenRow {
  id: string;
  created_at: string | Date;
  updated_at: string | Date;
}

function written(
  r: WrittenRow,
  inserted: boolean,
  previousStatus: UserStatus | null = null,
  unchanged = false,
): Written {
  return {
    id: r.id,
    inserted,
    createdAt: new Date(r.created_at),
    updatedAt: new Date(r.updated_at),
    previousStatus,
    unchanged,
  };
}

/**
 * The planned rewrites the update left alone: a concurrent writer committed the same values first
 * (read here after it, in a statement of their own). Those still in their organization are
 * written, unchanged; the others were deleted meanwhile and stay missing (404 to their item).
 */
async function findAlreadyWritten(tx: DbOrTx, plans: Plan[], out: Map<string, Written>): Promise<void> {
  const left = plans.filter((p) => !out.has(p.target.id));
  if (left.length === 0) return;
  const rows = await queryRows<WrittenRow & { organization_id: string }>(
    tx,
    sql`select id, organization_id, date_joined as created_at, updated_at from users
        where id = any(${sql.param(left.map((p) => p.target.id))}::uuid[])`,
  );
  const organizationOf = new Map(left.map((p) => [p.target.id, p.organization.id]));
  for (const r of rows) {
    if (organizationOf.get(r.id) === r.organization_id) out.set(r.id, written(r, false, null, true));
  }
}

const COPY_COLUMNS =
  'id, organization_id, external_id, scim_external_id, username, email, first_name, last_name, attributes, status, ' +
  'user_type, is_staff, is_superuser, password_hash, date_joined';

const USER_FIELDS = 15;
/** A row's bytes besides its text: the field count, 15 lengths, two uuids, two booleans, the jsonb version and a timestamp. */
const ROW_FIXED_BYTES = 2 + USER_FIELDS * 4 + 2 * 16 + 2 + 1 + 8;

/**
 * The planned users as one COPY stream in COPY_COLUMNS order, binary (platform/db/copy-binary.ts), or
 * undefined if an id is not a canonical uuid. `date_joined` is a listed column, so every row needs a
 * value: a user joining now gets `now`, the transaction's `now()` in microseconds since the Unix epoch.
 */
function userRows(plans: Plan[], now: bigint): Buffer | undefined {
  const c = Chunk.stream(plans.length * 256);
  let at = c.end;
  for (const p of plans) {
    const t = p.target;
    const attributes = JSON.stringify(t.attributes);
    const chars =
      attributes.length +
      (t.externalId?.length ?? 0) +
      (t.scimExternalId?.length ?? 0) +
      (t.username?.length ?? 0) +
      t.email.length +
      t.firstName.length +
      t.lastName.length +
      t.status.length +
      (t.userType?.length ?? 0) +
      (t.passwordHash?.length ?? 0);
    // UTF-8 takes at most three bytes per UTF-16 unit.
    c.room(at, ROW_FIXED_BYTES + 3 * chars);
    c.view.setInt16(at, USER_FIELDS);
    at = c.uuid(at + 2, t.id, false);
    if (at < 0) return undefined;
    at = c.uuid(at, p.organization.id);
    if (at < 0) return undefined;
    at = c.text(at, t.externalId);
    at = c.text(at, t.scimExternalId);
    at = c.text(at, t.username);
    at = c.text(at, t.email);
    at = c.text(at, t.firstName);
    at = c.text(at, t.lastName);
    at = c.jsonb(at, attributes);
    at = c.text(at, t.status);
    at = c.text(at, t.userType);
    at = c.bool(at, t.isStaff);
    at = c.bool(at, t.isSuperuser);
    at = c.text(at, t.passwordHash);
    at = c.timestamp(at, t.dateJoined === null ? now : BigInt(t.dateJoined.getTime()) * 1000n);
  }
  return c.close(at);
}

/**
 * New users without ON CONFLICT: 50 or more go in by one binary COPY in the transaction, on PostgreSQL
 * over its connection (the database spends about a seventh less on 500 rows than on the
 * `json_to_recordset` insert), on PGlite from a blob; the rows' dates are the transaction's `now()`,
 * read once. Fewer take the single INSERT … RETURNING, one statement instead of two.
 */
const COPY_FROM = 50;

async function insertPlainly(tx: DbOrTx, plans: Plan[]): Promise<WrittenRow[]> {
  const insert = () =>
    queryRows<WrittenRow>(tx, sql`${insertUsers(plans)} returning id, date_joined as created_at, updated_at`);
  if (plans.length < COPY_FROM) return insert();
  // The clock to the microsecond, as the column default would have set it (numeric since PostgreSQL 14: exact).
  const [clock] = await queryRows<{ now: string | Date; micros: string }>(
    tx,
    sql`select now() as now, (extract(epoch from now()) * 1000000)::bigint::text as micros`,
  );
  if (!clock || !(await copyBinary(tx, `users (${COPY_COLUMNS})`, () => userRows(plans, BigInt(clock.micros))))) {
    return insert();
  }
  return plans.map((p) => ({ id: p.target.id, created_at: p.target.dateJoined ?? clock.now, updated_at: clock.now }));
}

export interface Written {
  id: string;
  inserted: boolean;
  createdAt: Date;
  updatedAt: Date;
  previousStatus: UserStatus | null;
  /** A concurrent writer had already stored the planned values: nothing was changed by this call. */
  unchanged: boolean;
}

/**
 * Writes one batch of planned rows: new users in one insert, existing ones in one update. With
 * `upsert`, new users go in with ON CONFLICT (external_id), for a call planned with probes, whose
 * retry must succeed; without it, a plain insert (the speculative insertion of ON CONFLICT costs
 * about 5 % more per row), where a parallel writer's user is a violation that undoes the call.
 */
export async function writeBatch(tx: DbOrTx, plans: Plan[], upsert = true): Promise<Map<string, Written>> {
  const out = new Map<string, Written>();
  const fresh = plans.filter((p) => !p.existing && !p.item.createOnly && upsert);
  const createOnly = plans.filter((p) => !p.existing && (p.item.createOnly || !upsert));
  const known = plans.filter((p) => p.existing && isRewrite(p));
  if (createOnly.length > 0) {
    // No ON CONFLICT: a holder of the external id that committed since the plan is a violation, and
    // the call is planned again with probes, which answer external_id_taken (create-only items) or
    // update that user (upserts).
    for (const r of await insertPlainly(tx, createOnly)) out.set(r.id, written(r, true));
  }
  if (fresh.length > 0) {
    // A parallel upsert of the same external id that committed since the plan becomes an update
    // (ON CONFLICT), so one user results; the WHERE keeps it from crossing organizations. Items
    // with an external id are never SCIM's, so the stored `attributes.scim` stays (see attributesOf).
    const rows = await queryRows<WrittenRow & { inserted: boolean; external_id: string | null }>(
      tx,
      sql`${insertUsers(fresh)}
          on conflict (external_id) do update set
            scim_external_id = excluded.scim_external_id, username = excluded.username, email = excluded.email,
            email_verified = users.email_verified and lower(users.email) = lower(excluded.email),
            first_name = excluded.first_name, last_name = excluded.last_name,
            attributes = case when users.attributes ? 'scim'
              then excluded.attributes || jsonb_build_object('scim', users.attributes -> 'scim')
              else excluded.attributes end,
            status = excluded.status, password_hash = coalesce(excluded.password_hash, users.password_hash),
            updated_at = now()
          where users.organization_id = excluded.organization_id
          returning id, external_id, (xmax = 0) as inserted, date_joined as created_at, updated_at`,
    );
    const byExternal = new Map(fresh.map((p) => [p.target.externalId, p]));
    for (const r of rows) {
      const plan = r.inserted ? undefined : byExternal.get(r.external_id);
      // On conflict the stored id is the other writer's, not the one planned.
      if (plan) plan.target.id = r.id;
      out.set(r.id, written(r, r.inserted));
    }
    // A user written over on conflict (a race, rare) may show another name: its groups move too.
    await holdersRenamed(
      tx,
      rows.filter((r) => !r.inserted).map((r) => r.id),
    );
  }
  if (known.length > 0) {
    // The last condition is checked again on the row as a concurrent writer left it (PostgreSQL
    // re-reads a row it waited for): a row that already holds these values is left alone, so the
    // same change asked for at once is made, and recorded, once (see findAlreadyWritten).
    const rows = await queryRows<WrittenRow & { previous: UserStatus; renamed: boolean }>(
      tx,
      sql`update users set external_id = v.external_id, scim_external_id = v.scim_external_id, username = v.username,
            email = v.email, email_verified = old.email_verified and lower(old.email) = lower(v.email),
            first_name = v.first_name, last_name = v.last_name, attributes = v.attributes, status = v.status,
            user_type = case when v.user_type_json is null then users.user_type else v.user_type_json ->> 0 end,
            is_staff = coalesce(v.is_staff, users.is_staff), is_superuser = coalesce(v.is_superuser, users.is_superuser),
            password_hash = coalesce(v.password_hash, users.password_hash), updated_at = now()
          from ${targetRows(known)}
          join users old on old.id = v.id
          where users.id = v.id and users.organization_id = v.organization_id
            and (v.password_hash is not null
              or (users.external_id, users.scim_external_id, users.username, users.email, users.first_name,
                  users.last_name, users.attributes, users.status, users.user_type, users.is_staff, users.is_superuser)
                is distinct from (v.external_id, v.scim_external_id, v.username, v.email, v.first_name, v.last_name,
                  v.attributes, v.status,
                  case when v.user_type_json is null then users.user_type else v.user_type_json ->> 0 end,
                  coalesce(v.is_staff, users.is_staff), coalesce(v.is_superuser, users.is_superuser)))
          returning users.id, users.date_joined as created_at, users.updated_at, old.status as previous,
            coalesce(users.username, users.email) is distinct from coalesce(old.username, old.email) as renamed`,
    );
    for (const r of rows) out.set(r.id, written(r, false, r.previous));
    await findAlreadyWritten(tx, known, out);
    // The name a user shows is its groups' members[].display (RFC 7644 §3.14: part of their
    // version). Only a renamed user costs a statement, so bulk writes of other fields pay nothing.
    await holdersRenamed(
      tx,
      rows.filter((r) => r.renamed).map((r) => r.id),
    );
  }
  return out;
}

/** Creates the organizations items name that do not exist yet (platform callers only reach here). */
export async function createMissingOrganizations(
  tx: DbOrTx,
  steps: Step[],
  orgCache: Map<string, Organization | null>,
): Promise<string[]> {
  const missing = [
    ...new Set(steps.flatMap((s) => ('error' in s || s.organization.id !== null ? [] : [s.organization.code]))),
  ];
  const created: string[] = [];
  for (const code of missing) {
    const [row] = await tx
      .insert(organizations)
      .values({ code, name: code })
      .onConflictDoNothing({ target: organizations.code })
      .returning();
    const org = row ?? (await findOrganizationByCode(tx, code));
    if (!org) continue;
    if (row) created.push(code);
    orgCache.set(code, org);
  }
  for (const s of steps) {
    if ('error' in s || s.organization.id !== null) continue;
    const org = orgCache.get(s.organization.code);
    if (org) s.organization = { id: org.id, code: org.code };
  }
  return created;
}
