/**
 * The provisioning core: the one place where other systems' user writes land. The seed-000 API
 * (`/api/provisioning`), SCIM and the admin console's bulk paths call it, so a user written by one
 * is validated, upserted and audited exactly as by the others.
 *
 * Scoping. The caller is an `Actor`. Platform-wide callers (platform API keys, superusers) reach
 * every organization: they name the organization of each item by code, and a code that does not
 * exist yet is created with the users (never on a dry run). Any other caller is confined to its
 * own organization: an item naming another organization is refused with 403 `organization_forbidden`,
 * and a user outside the organization is not there at all (404 `user_not_found`), for reads and
 * writes alike. Users are never moved between organizations (409 `organization_mismatch`), and
 * superusers are changed only by superusers (403 `superuser_protected`), as in the admin API.
 *
 * Keys. An item addresses an existing user by `id` (Gatehouse id), else by `externalId`
 * (seed 000's keycloak_id, unique across the installation: an upsert key), else it creates a user.
 * Fields left `undefined` keep their stored value (a new user gets the defaults); `null` clears
 * the nullable ones.
 *
 * Errors. `provisionUsers` never throws for a bad item: each item answers either its outcome or an
 * `AppError` (validation 400, 403, 404, 409 `email_taken` / `username_taken` / `external_id_taken` /
 * `scim_external_id_taken` / `duplicate_in_request` / `organization_mismatch`), and every valid item
 * is written. A single-item caller throws the item's error itself. Only failures of the database
 * throw; then nothing of the call is written (one transaction per call).
 *
 * Writes are set-based: valid items go to the database in batches of `BATCH_SIZE` rows, each one
 * `INSERT … SELECT FROM json_to_recordset(…) ON CONFLICT (external_id) DO UPDATE` for new users (a parallel
 * upsert of the same keycloak_id becomes an update, so exactly one user results) and one
 * `UPDATE … FROM json_to_recordset(…)` for existing ones. Users whose stored values already match are not
 * rewritten (they still answer `updated`, with no changes). The audit events of a call go in one
 * multi-row insert, in the same transaction.
 */
import { and, eq, getTableColumns, type SQL, sql } from 'drizzle-orm';
import { uuidv7 } from 'uuidv7';
import type { Config } from '../../config.js';
import { type Db, type DbOrTx, queryRows, uniqueViolation } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { type Actor, organizationScopeOf } from '../../platform/http/auth.js';
import type { AppError, FieldError } from '../../platform/http/errors.js';
import { validatorCompiler } from '../../platform/http/validation.js';
import { inviteUser } from '../account/account.service.js';
import { activities } from '../activity/activity.table.js';
import { type AuditEvent, recordAudits } from '../activity/audit.js';
import { redactDetails } from '../activity/redact.js';
import { invalidateUserState, revokeUserSessions } from '../auth/auth.service.js';
import { findOrganizationByCode } from '../organizations/organizations.queries.js';
import { type Organization, organizations } from '../organizations/organizations.table.js';
import { rbacErrors } from '../rbac/rbac.errors.js';
import { type User, type UserStatus, users } from '../users/users.table.js';
import { provisioningErrors } from './provisioning.errors.js';
import { CoreItemSchema } from './provisioning.schemas.js';

/** Rows per set-based statement. */
export const BATCH_SIZE = 1000;
/** How often a batch is re-planned when a parallel writer took a unique value between plan and write. */
const MAX_ATTEMPTS = 3;

/** One user to write, in Gatehouse terms. */
export interface ProvisionItem {
  /** Gatehouse user id: update this existing user (e.g. SCIM replace). */
  id?: string;
  /** The identity provider's subject (seed 000 `keycloak_id`), unique across the installation; the upsert key when `id` is absent. */
  externalId?: string | null;
  /** Organization code. Omitted: the user's current organization, or the caller's own for a new user. */
  organization?: string;
  email?: string;
  username?: string | null;
  firstName?: string;
  lastName?: string;
  /** true reactivates a deactivated user (suspended and locked users stay so); false deactivates and ends sessions. */
  active?: boolean;
  attributes?: Record<string, unknown>;
  /** A SCIM client's id for the user (RFC 7643 `externalId`), unique within the organization. */
  scimExternalId?: string | null;
  /** Mail an invitation to set a password, when the user ends up active and has none. */
  sendInvite?: boolean;
}

/** A user as the provisioning APIs show it. `id` is null only in a dry run's plan for a new user. */
export interface ProvisionedUser {
  id: string | null;
  organizationId: string | null;
  organizationCode: string;
  externalId: string | null;
  scimExternalId: string | null;
  email: string;
  username: string | null;
  firstName: string;
  lastName: string;
  status: UserStatus;
  active: boolean;
  attributes: Record<string, unknown>;
  hasPassword: boolean;
  createdAt: Date | null;
  updatedAt: Date | null;
}

/** A field a write changes (or would change), named as in the admin API. */
export interface FieldChange {
  field: string;
  from: unknown;
  to: unknown;
}

export type ProvisionOutcome =
  | {
      index: number;
      ok: true;
      action: 'created' | 'updated';
      user: ProvisionedUser;
      /** Empty when nothing changes. */
      changes: FieldChange[];
      /** An invitation mail was (or, on a dry run, would be) queued. */
      invited: boolean;
    }
  | { index: number; ok: false; error: AppError };

export interface ProvisionOptions {
  /** Plan only: the same outcomes, nothing written. */
  dryRun?: boolean;
  /** Invite every item's user (as if each had `sendInvite: true`). */
  sendInvite?: boolean;
  /** Needed for invitation links. */
  config?: Pick<Config, 'publicUrl'>;
  /** For audit events: which API wrote (`provisioning`, `scim`, …) and from where. */
  context?: RequestContext;
}

export interface RequestContext {
  source?: string;
  ip?: string | null;
  userAgent?: string | null;
}

export interface ProvisionReport {
  results: ProvisionOutcome[];
  /** Codes of organizations created (or, on a dry run, that would be) for these items. */
  createdOrganizations: string[];
}

type UserRow = User & { organizationCode: string };

const withOrganization = { ...getTableColumns(users), organizationCode: organizations.code };

/** The view of a stored user. */
export function toProvisionedUser(row: UserRow): ProvisionedUser {
  return {
    id: row.id,
    organizationId: row.organizationId,
    organizationCode: row.organizationCode,
    externalId: row.externalId,
    scimExternalId: row.scimExternalId,
    email: row.email,
    username: row.username,
    firstName: row.firstName,
    lastName: row.lastName,
    status: row.status,
    active: row.status === 'active',
    attributes: row.attributes,
    hasPassword: row.passwordHash !== null,
    createdAt: row.dateJoined,
    updatedAt: row.updatedAt,
  };
}

// ---------------------------------------------------------------------------------------------
// Reads

/** How a caller names one user: by Gatehouse id or by external id (keycloak_id). */
export type UserRef = { id: string } | { externalId: string };

/** Superusers are changed only by superusers, never by API keys (as in the admin API). */
function isSuperuserActor(actor: Actor): boolean {
  return actor.kind === 'user' && actor.isSuperuser;
}

function refText(ref: UserRef): string {
  return 'id' in ref ? ref.id : ref.externalId;
}

async function findUserByRef(db: DbOrTx, ref: UserRef, organizationId: string | undefined, lock = false) {
  if ('id' in ref && !isUuid(ref.id)) return undefined;
  const match = 'id' in ref ? eq(users.id, ref.id) : eq(users.externalId, ref.externalId);
  const query = db
    .select(withOrganization)
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(organizationId ? and(match, eq(users.organizationId, organizationId)) : match)
    .limit(1);
  const [row] = lock ? await query.for('update', { of: users }) : await query;
  return row;
}

/** One user within the caller's reach; undefined when absent or in another organization. */
export async function findProvisionedUser(
  db: DbOrTx,
  actor: Actor,
  ref: UserRef,
): Promise<ProvisionedUser | undefined> {
  const row = await findUserByRef(db, ref, organizationScopeOf(actor));
  return row ? toProvisionedUser(row) : undefined;
}

/**
 * Every user of an organization (by code), oldest first. A confined caller naming another
 * organization gets the same 404 as for a code that does not exist.
 */
export async function listProvisionedUsers(
  db: DbOrTx,
  actor: Actor,
  organizationCode: string,
): Promise<ProvisionedUser[]> {
  const scope = organizationScopeOf(actor);
  const org = await findOrganizationByCode(db, organizationCode);
  if (!org || (scope !== undefined && org.id !== scope))
    throw provisioningErrors.organizationNotFound(organizationCode);
  const rows = await db
    .select(withOrganization)
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(eq(users.organizationId, org.id))
    .orderBy(users.id);
  return rows.map(toProvisionedUser);
}

// ---------------------------------------------------------------------------------------------
// Deactivation

export interface DeactivationResult {
  user: ProvisionedUser;
  /** false when the user was already deactivated (the call is idempotent). */
  changed: boolean;
  at: Date;
}

/**
 * Deactivates a user within the caller's reach and ends their sessions, in one transaction with
 * its audit event. Idempotent: an already deactivated user answers the same, unchanged.
 * Throws 404 `user_not_found` for a user outside the caller's organization.
 */
export async function deactivateUser(
  db: Db,
  actor: Actor,
  ref: UserRef,
  options: { context?: RequestContext } = {},
): Promise<DeactivationResult> {
  const scope = organizationScopeOf(actor);
  return db.transaction(async (tx) => {
    const row = await findUserByRef(tx, ref, scope, true);
    if (!row) throw provisioningErrors.userNotFound(refText(ref));
    if (row.isSuperuser && !isSuperuserActor(actor)) throw rbacErrors.superuserTarget();
    const at = new Date();
    if (row.status === 'deactivated') {
      await audit(tx, [
        callEvent(actor, options.context, 'provisioning.user.deactivate', row.organizationId, {
          user_id: row.id,
          changed: false,
        }),
      ]);
      return { user: toProvisionedUser(row), changed: false, at };
    }
    const [updated] = await tx
      .update(users)
      .set({ status: 'deactivated', updatedAt: at })
      .where(eq(users.id, row.id))
      .returning();
    await revokeUserSessions(tx, row.id, 'deactivated_by_provisioning');
    await audit(tx, [
      userEvent(actor, options.context, 'user.deactivated', row.organizationId, row.id, {
        changes: [{ field: 'is_active', from: row.status === 'active', to: false }],
        previous_status: row.status,
      }),
      callEvent(actor, options.context, 'provisioning.user.deactivate', row.organizationId, {
        user_id: row.id,
        changed: true,
      }),
    ]);
    return {
      user: toProvisionedUser({ ...(updated as User), organizationCode: row.organizationCode }),
      changed: true,
      at,
    };
  });
}

// ---------------------------------------------------------------------------------------------
// Upserts

const validateCoreItem = validatorCompiler({ schema: CoreItemSchema, httpPart: 'body' } as never) as ((
  value: unknown,
) => boolean) & {
  errors?: { instancePath?: string; keyword?: string; message?: string; params?: Record<string, unknown> }[] | null;
};

const FIELD_NAMES: Record<string, string> = {
  id: 'id',
  externalId: 'external_id',
  organization: 'organization',
  email: 'email',
  username: 'username',
  firstName: 'first_name',
  lastName: 'last_name',
  active: 'is_active',
  attributes: 'attributes',
  scimExternalId: 'scim_external_id',
  sendInvite: 'send_invite',
};

/** Checks one item's shape; answers field errors named as in the admin API. */
export function validateProvisionItem(item: unknown): FieldError[] {
  if (validateCoreItem(item)) return [];
  const out: FieldError[] = [];
  for (const e of validateCoreItem.errors ?? []) {
    const path = (e.instancePath ?? '').split('/').filter(Boolean);
    if (e.keyword === 'required' && typeof e.params?.missingProperty === 'string') path.push(e.params.missingProperty);
    const [head, ...rest] = path;
    const field = [head === undefined ? 'item' : (FIELD_NAMES[head] ?? head), ...rest].join('.');
    out.push({ field, message: e.keyword === 'required' ? 'This field is required.' : (e.message ?? 'is not valid') });
  }
  return out;
}

/** The row an item will leave behind, and how it got there. */
interface Plan {
  index: number;
  item: ProvisionItem;
  existing: UserRow | undefined;
  organization: { id: string | null; code: string };
  target: {
    id: string;
    externalId: string | null;
    scimExternalId: string | null;
    email: string;
    username: string | null;
    firstName: string;
    lastName: string;
    status: UserStatus;
    attributes: Record<string, unknown>;
  };
  changes: FieldChange[];
  invite: boolean;
}

type Step = Plan | { index: number; error: AppError };

/** What planning remembers across the batches of one call. */
interface CallState {
  orgCache: Map<string, Organization | null>;
  /** `id:<user id>` / `ext:<external id>` → index of the item that claimed the user. */
  seenUsers: Map<string, number>;
  /** `<field>\0<organization code>\0<value>` → the item holding a unique value. */
  holders: Map<string, { index: number; userId: string }>;
}

function newCallState(): CallState {
  return { orgCache: new Map(), seenUsers: new Map(), holders: new Map() };
}

/** Forgets what a batch claimed, before it is planned again. */
function forgetBatch(state: CallState, indexes: Set<number>): void {
  for (const [k, i] of state.seenUsers) if (indexes.has(i)) state.seenUsers.delete(k);
  for (const [k, h] of state.holders) if (indexes.has(h.index)) state.holders.delete(k);
}

function lower(v: string | null): string | null {
  return v === null ? null : v.toLowerCase();
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function statusOf(current: UserStatus | undefined, active: boolean | undefined): UserStatus {
  if (active === false) return 'deactivated';
  if (current === undefined) return 'active';
  if (active === true && current === 'deactivated') return 'active';
  return current;
}

function changesOf(existing: UserRow | undefined, organizationCode: string, t: Plan['target']): FieldChange[] {
  const before = existing
    ? {
        organization: existing.organizationCode,
        external_id: existing.externalId,
        scim_external_id: existing.scimExternalId,
        email: existing.email,
        username: existing.username,
        first_name: existing.firstName,
        last_name: existing.lastName,
        is_active: existing.status === 'active',
        status: existing.status,
        attributes: existing.attributes,
      }
    : undefined;
  const after = {
    organization: organizationCode,
    external_id: t.externalId,
    scim_external_id: t.scimExternalId,
    email: t.email,
    username: t.username,
    first_name: t.firstName,
    last_name: t.lastName,
    is_active: t.status === 'active',
    status: t.status,
    attributes: t.attributes,
  };
  const out: FieldChange[] = [];
  for (const [field, to] of Object.entries(after)) {
    const from = before ? before[field as keyof typeof before] : null;
    if (before === undefined) {
      // A new user: every field that carries a value.
      if (to === null || to === '' || (field === 'attributes' && sameJson(to, {}))) continue;
      out.push({ field, from: null, to });
    } else if (from !== to && (field !== 'attributes' || !sameJson(from, to))) {
      out.push({ field, from, to });
    }
  }
  return out;
}

async function loadExisting(db: DbOrTx, items: ProvisionItem[]) {
  const ids = [...new Set(items.flatMap((i) => (i.id !== undefined && isUuid(i.id) ? [i.id] : [])))];
  const externalIds = [
    ...new Set(items.flatMap((i) => (i.id === undefined && typeof i.externalId === 'string' ? [i.externalId] : []))),
  ];
  const byId = new Map<string, UserRow>();
  const byExternalId = new Map<string, UserRow>();
  const base = () =>
    db.select(withOrganization).from(users).innerJoin(organizations, eq(organizations.id, users.organizationId));
  if (ids.length > 0) {
    for (const row of await base().where(sql`${users.id} = any(${sql.param(ids)}::uuid[])`)) byId.set(row.id, row);
  }
  if (externalIds.length > 0) {
    for (const row of await base().where(sql`${users.externalId} = any(${sql.param(externalIds)}::text[])`)) {
      if (row.externalId !== null) byExternalId.set(row.externalId, row);
    }
  }
  return { byId, byExternalId };
}

/**
 * Decides, without writing, what each item does: its organization, the user it reaches, the row
 * it leaves and its changes, or its error. Organizations missing for a platform caller are listed
 * in `missing` (to create before writing).
 */
async function planItems(
  db: DbOrTx,
  actor: Actor,
  items: { index: number; item: ProvisionItem }[],
  options: ProvisionOptions,
  state: CallState,
): Promise<Step[]> {
  const { orgCache } = state;
  const scope = organizationScopeOf(actor);
  const scopeOrg = scope === undefined ? undefined : await organizationById(db, scope, orgCache);
  const valid: { index: number; item: ProvisionItem }[] = [];
  const steps = new Map<number, Step>();
  for (const entry of items) {
    const errors = validateProvisionItem(entry.item);
    if (errors.length > 0) steps.set(entry.index, { index: entry.index, error: provisioningErrors.invalid(errors) });
    else valid.push(entry);
  }

  const { byId, byExternalId } = await loadExisting(
    db,
    valid.map((v) => v.item),
  );
  // Organizations by code, once per call.
  const codes = new Set<string>();
  for (const { item } of valid) if (item.organization !== undefined) codes.add(item.organization);
  for (const code of codes) {
    if (!orgCache.has(code)) orgCache.set(code, (await findOrganizationByCode(db, code)) ?? null);
  }

  const planned: Plan[] = [];
  for (const { index, item } of valid) {
    const fail = (error: AppError) => steps.set(index, { index, error });
    // Naming another organization is refused before any look-up, so the answer tells nothing of it.
    if (scopeOrg !== undefined && item.organization !== undefined && item.organization !== scopeOrg.code) {
      fail(provisioningErrors.otherOrganization(item.organization));
      continue;
    }
    let existing: UserRow | undefined;
    let ref: string;
    if (item.id !== undefined) {
      ref = item.id;
      existing = byId.get(item.id);
      if (!existing || (scope !== undefined && existing.organizationId !== scope)) {
        fail(provisioningErrors.userNotFound(ref));
        continue;
      }
    } else {
      ref = typeof item.externalId === 'string' ? item.externalId : '';
      existing = typeof item.externalId === 'string' ? byExternalId.get(item.externalId) : undefined;
      // Another organization's user is not there for a confined caller (seed 000: 404 for writes too).
      if (existing && scope !== undefined && existing.organizationId !== scope) {
        fail(provisioningErrors.userNotFound(ref));
        continue;
      }
    }

    // The organization: named, or the existing user's, or the caller's own.
    let organization: { id: string | null; code: string };
    if (item.organization !== undefined) {
      const org = orgCache.get(item.organization) ?? null;
      organization = org ? { id: org.id, code: org.code } : { id: null, code: item.organization };
    } else if (existing) {
      organization = { id: existing.organizationId, code: existing.organizationCode };
    } else if (scopeOrg) {
      organization = { id: scopeOrg.id, code: scopeOrg.code };
    } else {
      fail(provisioningErrors.organizationRequired());
      continue;
    }
    if (existing?.isSuperuser && !isSuperuserActor(actor)) {
      fail(rbacErrors.superuserTarget());
      continue;
    }
    if (existing && existing.organizationId !== organization.id) {
      fail(provisioningErrors.organizationMismatch(ref, existing.organizationCode));
      continue;
    }
    if (!existing && item.email === undefined) {
      fail(provisioningErrors.invalid([{ field: 'email', message: 'This field is required.' }]));
      continue;
    }
    // One write per user and call: a later item naming the same user is refused, the first one stands.
    const userKeys = [
      ...(existing ? [`id:${existing.id}`] : []),
      ...(item.id === undefined && ref !== '' ? [`ext:${ref}`] : []),
    ];
    const first = userKeys.map((k) => state.seenUsers.get(k)).find((i) => i !== undefined);
    if (first !== undefined) {
      fail(provisioningErrors.duplicateInRequest(ref, first));
      continue;
    }
    for (const k of userKeys) state.seenUsers.set(k, index);

    const target: Plan['target'] = {
      id: existing?.id ?? uuidv7(),
      externalId:
        item.id === undefined
          ? (item.externalId ?? null)
          : item.externalId === undefined
            ? (existing?.externalId ?? null)
            : item.externalId,
      scimExternalId: item.scimExternalId === undefined ? (existing?.scimExternalId ?? null) : item.scimExternalId,
      email: item.email ?? (existing?.email as string),
      username: item.username === undefined ? (existing?.username ?? null) : item.username,
      firstName: item.firstName ?? existing?.firstName ?? '',
      lastName: item.lastName ?? existing?.lastName ?? '',
      status: statusOf(existing?.status, item.active),
      attributes: item.attributes ?? existing?.attributes ?? {},
    };
    const invite =
      (item.sendInvite ?? options.sendInvite ?? false) && target.status === 'active' && !existing?.passwordHash;
    planned.push({
      index,
      item,
      existing,
      organization,
      target,
      changes: changesOf(existing, organization.code, target),
      invite,
    });
  }

  for (const error of await findTakenValues(db, planned, state)) steps.set(error.index, error);
  for (const p of planned) if (!steps.has(p.index)) steps.set(p.index, p);
  return items.map(({ index }) => steps.get(index) as Step);
}

async function organizationById(db: DbOrTx, id: string, cache: Map<string, Organization | null>) {
  for (const org of cache.values()) if (org?.id === id) return org;
  const [org] = await db.select().from(organizations).where(eq(organizations.id, id));
  if (org) cache.set(org.code, org);
  return org;
}

/**
 * Unique values (email, username, SCIM externalId within the organization; external id across the
 * installation) held by another user, in the database or by an earlier item of the same call.
 */
async function findTakenValues(
  db: DbOrTx,
  plans: Plan[],
  state: CallState,
): Promise<{ index: number; error: AppError }[]> {
  const keys: {
    field: string;
    value: (p: Plan) => string | null;
    display: (p: Plan) => string | null;
    perOrganization: boolean;
    column: SQL;
  }[] = [
    {
      field: 'email',
      value: (p) => p.target.email.toLowerCase(),
      display: (p) => p.target.email,
      perOrganization: true,
      column: sql`lower(${users.email})`,
    },
    {
      field: 'username',
      value: (p) => lower(p.target.username),
      display: (p) => p.target.username,
      perOrganization: true,
      column: sql`lower(${users.username})`,
    },
    {
      field: 'scim_external_id',
      value: (p) => p.target.scimExternalId,
      display: (p) => p.target.scimExternalId,
      perOrganization: true,
      column: sql`${users.scimExternalId}`,
    },
    {
      field: 'external_id',
      value: (p) => p.target.externalId,
      display: (p) => p.target.externalId,
      perOrganization: false,
      column: sql`${users.externalId}`,
    },
  ];
  const failed = new Map<number, AppError>();
  for (const key of keys) {
    // Only values that change need a look: a user keeps its own.
    const changing = plans.filter((p) => {
      if (failed.has(p.index)) return false;
      const v = key.value(p);
      if (v === null) return false;
      if (!p.existing) return key.field !== 'external_id' || p.item.id !== undefined;
      const before =
        key.field === 'email'
          ? p.existing.email.toLowerCase()
          : key.field === 'username'
            ? lower(p.existing.username)
            : key.field === 'scim_external_id'
              ? p.existing.scimExternalId
              : p.existing.externalId;
      return v !== before;
    });
    // Within the call: the first item holding a value keeps it.
    for (const p of plans) {
      if (failed.has(p.index)) continue;
      const v = key.value(p);
      if (v === null) continue;
      const k = `${key.field}\u0000${key.perOrganization ? p.organization.code : ''}\u0000${v}`;
      const holder = state.holders.get(k);
      if (holder && holder.userId !== p.target.id) {
        failed.set(p.index, provisioningErrors.taken(key.field, key.display(p) as string));
      } else state.holders.set(k, { index: p.index, userId: p.target.id });
    }
    const toCheck = changing.filter((p) => !failed.has(p.index) && p.organization.id !== null);
    if (toCheck.length === 0) continue;
    const orgIds = toCheck.map((p) => p.organization.id as string);
    const values = toCheck.map((p) => key.value(p) as string);
    type Holder = { id: string; organization_id: string; external_id: string | null; v: string };
    const rows = key.perOrganization
      ? await queryRows<Holder>(
          db,
          // LATERAL … LIMIT 1: one probe of the unique index per value. A plain join is planned as a
          // hash join over a scan of every user, which grows with the table.
          sql`select h.id, k.o as organization_id, h.external_id, k.v
              from unnest(${sql.param(orgIds)}::uuid[], ${sql.param(values)}::text[]) as k(o, v)
              cross join lateral (
                select ${users.id} as id, ${users.externalId} as external_id from ${users}
                where ${users.organizationId} = k.o and ${key.column} = k.v limit 1
              ) h`,
        )
      : await queryRows<Holder>(
          db,
          sql`select ${users.id} as id, ${users.organizationId} as organization_id, ${users.externalId} as external_id, ${key.column} as v
              from ${users} where ${key.column} = any(${sql.param(values)}::text[])`,
        );
    const taken = new Map<string, Holder>();
    for (const r of rows) taken.set(key.perOrganization ? `${r.organization_id}\u0000${r.v}` : r.v, r);
    for (const p of toCheck) {
      const v = key.value(p) as string;
      const holder = taken.get(key.perOrganization ? `${p.organization.id}\u0000${v}` : v);
      // A parallel call may have created this very user (same external id) since it was looked up:
      // not a clash; the upsert's ON CONFLICT turns the insert into an update of that user.
      const sameUser =
        holder !== undefined &&
        (holder.id === p.target.id ||
          (!p.existing && p.target.externalId !== null && holder.external_id === p.target.externalId));
      if (holder !== undefined && !sameUser) {
        failed.set(p.index, provisioningErrors.taken(key.field, key.display(p) as string));
      }
    }
  }
  return [...failed].map(([index, error]) => ({ index, error }));
}

function planToUser(p: Plan, stored?: { createdAt: Date; updatedAt: Date }): ProvisionedUser {
  return {
    id: p.existing || stored ? p.target.id : null,
    organizationId: p.organization.id,
    organizationCode: p.organization.code,
    externalId: p.target.externalId,
    scimExternalId: p.target.scimExternalId,
    email: p.target.email,
    username: p.target.username,
    firstName: p.target.firstName,
    lastName: p.target.lastName,
    status: p.target.status,
    active: p.target.status === 'active',
    attributes: p.target.attributes,
    hasPassword: p.existing?.passwordHash != null,
    createdAt: stored?.createdAt ?? p.existing?.dateJoined ?? null,
    updatedAt: stored?.updatedAt ?? p.existing?.updatedAt ?? null,
  };
}

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
    return r;
  });
  return sql`(select r.i as id, r.o as organization_id, r.x as external_id, r.s as scim_external_id,
      r.n as username, r.e as email, coalesce(r.f, '') as first_name, coalesce(r.l, '') as last_name,
      coalesce(r.a, '{}'::jsonb) as attributes, coalesce(r.st, 'active') as status
    from json_to_recordset(${JSON.stringify(rows)}::json)
      as r(i uuid, o uuid, x text, s text, n text, e text, f text, l text, a jsonb, st text)) as v`;
}

interface Written {
  id: string;
  inserted: boolean;
  createdAt: Date;
  updatedAt: Date;
  previousStatus: UserStatus | null;
}

/** Writes one batch of planned rows: new users in one upsert, existing ones in one update. */
async function writeBatch(tx: DbOrTx, plans: Plan[]): Promise<Map<string, Written>> {
  const out = new Map<string, Written>();
  const fresh = plans.filter((p) => !p.existing);
  const known = plans.filter((p) => p.existing && p.changes.length > 0);
  if (fresh.length > 0) {
    // A parallel upsert of the same external id that committed since the plan becomes an update
    // (ON CONFLICT), so one user results; the WHERE keeps it from crossing organizations.
    const rows = await queryRows<{
      id: string;
      inserted: boolean;
      created_at: string | Date;
      updated_at: string | Date;
    }>(
      tx,
      sql`insert into users (id, organization_id, external_id, scim_external_id, username, email, first_name, last_name, attributes, status)
          select v.id, v.organization_id, v.external_id, v.scim_external_id, v.username, v.email, v.first_name,
            v.last_name, v.attributes, v.status
          from ${targetRows(fresh)}
          on conflict (external_id) do update set
            scim_external_id = excluded.scim_external_id, username = excluded.username, email = excluded.email,
            first_name = excluded.first_name, last_name = excluded.last_name, attributes = excluded.attributes,
            status = excluded.status, updated_at = now()
          where users.organization_id = excluded.organization_id
          returning id, external_id, (xmax = 0) as inserted, date_joined as created_at, updated_at`,
    );
    const byExternal = new Map(fresh.map((p) => [p.target.externalId, p]));
    for (const r of rows as ((typeof rows)[number] & { external_id: string | null })[]) {
      const plan = r.inserted ? undefined : byExternal.get(r.external_id);
      // On conflict the stored id is the other writer's, not the one planned.
      if (plan) plan.target.id = r.id;
      out.set(r.id, {
        id: r.id,
        inserted: r.inserted,
        createdAt: new Date(r.created_at),
        updatedAt: new Date(r.updated_at),
        previousStatus: null,
      });
    }
  }
  if (known.length > 0) {
    const rows = await queryRows<{
      id: string;
      created_at: string | Date;
      updated_at: string | Date;
      previous: UserStatus;
    }>(
      tx,
      sql`update users set external_id = v.external_id, scim_external_id = v.scim_external_id, username = v.username,
            email = v.email, first_name = v.first_name, last_name = v.last_name, attributes = v.attributes,
            status = v.status, updated_at = now()
          from ${targetRows(known)}
          join users old on old.id = v.id
          where users.id = v.id and users.organization_id = v.organization_id
          returning users.id, users.date_joined as created_at, users.updated_at, old.status as previous`,
    );
    for (const r of rows) {
      out.set(r.id, {
        id: r.id,
        inserted: false,
        createdAt: new Date(r.created_at),
        updatedAt: new Date(r.updated_at),
        previousStatus: r.previous,
      });
    }
  }
  return out;
}

/**
 * Upserts users in one transaction: validation, scoping and uniqueness per item, then set-based
 * writes in batches, session ends for users leaving the active state, invitations and audit events.
 * With `dryRun`, answers the same outcomes (with `changes`) and writes nothing. See the module
 * comment for scoping and errors.
 */
export async function provisionUsers(
  db: Db,
  actor: Actor,
  items: ProvisionItem[],
  options: ProvisionOptions = {},
): Promise<ProvisionReport> {
  const indexed = items.map((item, index) => ({ index, item }));
  if (options.dryRun) {
    const state = newCallState();
    const steps: Step[] = [];
    for (let i = 0; i < indexed.length; i += BATCH_SIZE) {
      steps.push(...(await planItems(db, actor, indexed.slice(i, i + BATCH_SIZE), options, state)));
    }
    return report(steps, [], state.orgCache, true);
  }
  return db.transaction(async (tx) => {
    const state = newCallState();
    const orgCache = state.orgCache;
    const results: ProvisionOutcome[] = [];
    const createdOrganizations: string[] = [];
    const events: AuditEvent[] = [];
    for (let i = 0; i < indexed.length; i += BATCH_SIZE) {
      const batch = indexed.slice(i, i + BATCH_SIZE);
      for (let attempt = 1; ; attempt++) {
        if (attempt > 1) forgetBatch(state, new Set(batch.map((b) => b.index)));
        const steps = await planItems(tx, actor, batch, options, state);
        for (const code of await createMissingOrganizations(tx, steps, orgCache)) {
          createdOrganizations.push(code);
          events.push(organizationEvent(actor, options.context, orgCache.get(code) as Organization));
        }
        const plans = steps.filter((s): s is Plan => !('error' in s));
        let written: Map<string, Written>;
        try {
          // A savepoint: a unique value taken by a parallel writer since the plan undoes this batch only.
          written = await tx.transaction((sp) => writeBatch(sp, plans));
        } catch (err) {
          if (uniqueViolation(err) && attempt < MAX_ATTEMPTS) continue;
          throw err;
        }
        results.push(...(await finishBatch(tx, actor, steps, written, options, events)));
        break;
      }
    }
    const outcome = report(results, createdOrganizations, orgCache, false);
    events.push(
      callEvent(actor, options.context, 'provisioning.users.upsert', organizationScopeOf(actor) ?? null, {
        items: items.length,
        created: results.filter((r) => r.ok && r.action === 'created').length,
        updated: results.filter((r) => r.ok && r.action === 'updated').length,
        unchanged: results.filter((r) => r.ok && r.action === 'updated' && r.changes.length === 0).length,
        errors: results.filter((r) => !r.ok).length,
        created_organizations: createdOrganizations,
      }),
    );
    await audit(tx, events);
    return outcome;
  });
}

function report(
  steps: (Step | ProvisionOutcome)[],
  createdOrganizations: string[],
  orgCache: Map<string, Organization | null>,
  dryRun: boolean,
): ProvisionReport {
  const results: ProvisionOutcome[] = steps.map((s) => {
    if ('ok' in s) return s;
    if ('error' in s) return { index: s.index, ok: false, error: s.error };
    return {
      index: s.index,
      ok: true,
      action: s.existing ? 'updated' : 'created',
      user: planToUser(s),
      changes: s.changes,
      invited: s.invite,
    };
  });
  const planned = dryRun
    ? [...orgCache]
        .filter(([code, org]) => org === null && results.some((r) => r.ok && r.user.organizationCode === code))
        .map(([code]) => code)
    : createdOrganizations;
  return { results, createdOrganizations: planned };
}

/** Creates the organizations items name that do not exist yet (platform callers only reach here). */
async function createMissingOrganizations(
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

async function finishBatch(
  tx: DbOrTx,
  actor: Actor,
  steps: Step[],
  written: Map<string, Written>,
  options: ProvisionOptions,
  events: AuditEvent[],
): Promise<ProvisionOutcome[]> {
  const out: ProvisionOutcome[] = [];
  for (const s of steps) {
    if ('error' in s) {
      out.push({ index: s.index, ok: false, error: s.error });
      continue;
    }
    const w = written.get(s.target.id);
    if (!w && (!s.existing || s.changes.length > 0)) {
      // The row went to another organization or away between plan and write.
      out.push({
        index: s.index,
        ok: false,
        error: provisioningErrors.userNotFound(s.item.externalId ?? s.item.id ?? ''),
      });
      continue;
    }
    const created = w?.inserted ?? false;
    const previous = w?.previousStatus ?? s.existing?.status ?? null;
    if (w && !created) {
      if (s.target.status === 'deactivated' && previous !== 'deactivated' && previous !== null) {
        await revokeUserSessions(tx, w.id, 'deactivated_by_provisioning');
      } else if (previous !== null && previous !== s.target.status) {
        await invalidateUserState(tx, w.id);
      }
    }
    let invited = false;
    if (s.invite && options.config) {
      await inviteUser(tx as Db, options.config as Config, s.target.id, undefined);
      invited = true;
    }
    if (created || s.changes.length > 0) {
      events.push(
        // A new user's values are its row; an update records what changed, from and to.
        userEvent(actor, options.context, created ? 'user.created' : 'user.updated', s.organization.id, s.target.id, {
          external_id: s.target.externalId,
          ...(created ? {} : { changes: s.changes }),
          ...(invited ? { invited: true } : {}),
        }),
      );
    }
    out.push({
      index: s.index,
      ok: true,
      action: created ? 'created' : 'updated',
      user: planToUser(s, w),
      changes: s.changes,
      invited,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Audit

function contextFields(context: RequestContext | undefined) {
  return {
    ip: context?.ip ?? null,
    userAgent: context?.userAgent ?? null,
    tags: ['provisioning', ...(context?.source ? [context.source] : [])],
  };
}

function userEvent(
  actor: Actor,
  context: RequestContext | undefined,
  type: 'user.created' | 'user.updated' | 'user.deactivated',
  organizationId: string | null,
  userId: string,
  details: Record<string, unknown>,
): AuditEvent {
  return {
    type,
    category: 'user_management',
    organizationId,
    userId,
    actor,
    description: `${type.slice(5).replace(/^./, (c) => c.toUpperCase())} by provisioning`,
    details,
    ...contextFields(context),
  };
}

function callEvent(
  actor: Actor,
  context: RequestContext | undefined,
  type: string,
  organizationId: string | null,
  details: Record<string, unknown>,
): AuditEvent {
  return {
    type,
    category: 'provisioning',
    organizationId,
    actor,
    description: `Provisioning call ${type}`,
    details,
    ...contextFields(context),
  };
}

function organizationEvent(actor: Actor, context: RequestContext | undefined, org: Organization): AuditEvent {
  return {
    type: 'organization.created',
    category: 'organization',
    organizationId: org.id,
    actor,
    description: `Organization ${org.code} created by provisioning`,
    details: { code: org.code },
    objectType: 'organization',
    objectId: org.id,
    ...contextFields(context),
  };
}

/**
 * The actor as the activities table can hold it: the key configured as PROVISIONING_API_KEY has no
 * row (its id is not a uuid), so it is named in the details instead.
 */
function storableActor(event: AuditEvent): AuditEvent {
  const actor = event.actor;
  if (actor?.kind !== 'api_key' || isUuid(actor.apiKeyId)) return event;
  return {
    ...event,
    actor: { ...actor, apiKeyId: null as unknown as string },
    details: { ...event.details, api_key: actor.apiKeyId },
  };
}

/** Past this many events a call's audit rows go in through one set-based insert. */
const SET_BASED_AUDIT_FROM = 20;

/**
 * Records the call's events in the caller's transaction. Small calls go through `recordAudits`;
 * bulk calls write the very same rows (same columns, same redaction) with one
 * `INSERT … SELECT FROM json_to_recordset(…)`: building a 1,000-row multi-values insert in Drizzle cost
 * ~150 ms on PGlite, several times the user writes themselves; this takes ~20 ms.
 */
async function audit(tx: DbOrTx, events: AuditEvent[]): Promise<void> {
  const first = events[0];
  // The set-based path carries what every event of a call shares (actor, origin, tags) once.
  const shared = (e: AuditEvent) =>
    e.actor === first?.actor &&
    e.ip === first?.ip &&
    e.userAgent === first?.userAgent &&
    (e.tags ?? []).join(',') === (first?.tags ?? []).join(',') &&
    e.severity === undefined &&
    e.success === undefined;
  if (!first || events.length < SET_BASED_AUDIT_FROM || !events.every(shared)) {
    await recordAudits(tx, events.map(storableActor));
    return;
  }
  // As storableActor, once for the call: a key without a row is named in each event's details.
  const stored = storableActor({ ...first, details: {} });
  const actor = stored.actor;
  const namedKey = (stored.details as { api_key?: string }).api_key ?? null;
  const records = events.map((e) => ({
    i: uuidv7(),
    t: e.type,
    c: e.category,
    o: e.organizationId,
    u: e.userId ?? null,
    ot: e.objectType ?? null,
    oi: e.objectId ?? null,
    d: e.description,
    x: redactDetails(e.details),
  }));
  await tx.execute(sql`
    insert into ${activities} (id, kind, activity_type, category, severity, success, organization_id, user_id,
      actor_type, actor_id, api_key_id, object_type, object_id, description, details, tags, ip_address, user_agent)
    select v.i, 'audit', v.t, v.c, 'info', true, v.o, v.u,
      ${actor?.kind ?? 'system'}, ${actor?.kind === 'user' ? actor.userId : null}::uuid,
      ${actor?.kind === 'api_key' ? actor.apiKeyId : null}::uuid, v.ot, v.oi, v.d,
      case when ${namedKey}::text is null then v.x else v.x || jsonb_build_object('api_key', ${namedKey}::text) end,
      ${sql.param(first.tags ?? [])}::text[], ${first.ip ?? null}::text, ${first.userAgent ?? null}::text
    from json_to_recordset(${JSON.stringify(records)}::json)
      as v(i uuid, t text, c text, o uuid, u uuid, ot text, oi text, d text, x jsonb)`);
}
