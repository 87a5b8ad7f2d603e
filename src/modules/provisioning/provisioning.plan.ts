/**
 * Planning a batch of items, without writing: each item's validation, the existing rows it
 * reaches, the row it will leave and its changes, and the unique values other users already hold.
 */
import { isDeepStrictEqual } from 'node:util';
import { eq, type SQL, sql } from 'drizzle-orm';
import { type DbOrTx, queryRows } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { newId } from '../../platform/db/ids.js';
import { type Actor, organizationScopeOf } from '../../platform/http/auth.js';
import { instantOf } from '../../platform/http/date-time.js';
import { AppError, type FieldError, fieldErrorsFromValidation } from '../../platform/http/errors.js';
import { bodyItemProblem } from '../../platform/http/text-guard.js';
import { validatorCompiler } from '../../platform/http/validation.js';
import { organizationErrors } from '../organizations/organizations.errors.js';
import {
  findOrganizationByCode,
  findOrganizationById,
  holdActiveOrganizations,
} from '../organizations/organizations.queries.js';
import { type Organization, organizations } from '../organizations/organizations.table.js';
import { usersAboveKeyCeiling } from '../rbac/delegation.js';
import { rbacErrors } from '../rbac/rbac.errors.js';
import { userTypeErrors } from '../user-types/user-types.errors.js';
import { findUserTypeForUser } from '../user-types/user-types.queries.js';
import { validateProfile } from '../user-types/user-types.schemas.js';
import type { UserType } from '../user-types/user-types.table.js';
import { normalizeUsername } from '../users/users.schemas.js';
import { type UserStatus, users } from '../users/users.table.js';
import { provisioningErrors } from './provisioning.errors.js';
import { isSuperuserActor, lockUserRows, readUserRows, type UserRow, withOrganization } from './provisioning.lookup.js';
import { CoreItemSchema } from './provisioning.schemas.js';
import type { FieldChange, ProvisionedUser, ProvisionItem, ProvisionOptions } from './provisioning.service.js';

const validateCoreItem = validatorCompiler({ schema: CoreItemSchema, httpPart: 'body' } as never) as ((
  value: unknown,
) => boolean) & {
  errors?: Parameters<typeof fieldErrorsFromValidation>[0] | null;
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
  profileChanges: 'profile',
  scimExternalId: 'scim_external_id',
  sendInvite: 'send_invite',
  status: 'status',
  userType: 'user_type',
  isStaff: 'is_staff',
  isSuperuser: 'is_superuser',
  passwordHash: 'password',
  createOnly: 'create_only',
  dateJoined: 'date_joined',
};

/** Checks one item's shape; answers field errors named as in the admin API. */
export function validateProvisionItem(item: unknown): FieldError[] {
  if (validateCoreItem(item)) {
    // What the HTTP layer refuses in whole bodies (text PostgreSQL cannot store, a number beyond a
    // double's range): an import file's users come here without it.
    const unstorable = bodyItemProblem(item, 0);
    if (unstorable === undefined) return [];
    const [head, ...rest] = unstorable.field.split('.');
    const field = [FIELD_NAMES[head as string] ?? head, ...rest].join('.');
    return [{ field, message: unstorable.message }];
  }
  // The shared mapping says what a nullable field's value got wrong, not also that it is not null.
  return fieldErrorsFromValidation(validateCoreItem.errors ?? [], 'item').map(({ field, message }) => {
    const [head, ...rest] = field.split('.');
    return {
      field: [Object.hasOwn(FIELD_NAMES, head as string) ? FIELD_NAMES[head as string] : head, ...rest].join('.'),
      message,
    };
  });
}

/** The row an item will leave behind, and how it got there. */
export interface Plan {
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
    userType: string | null;
    isStaff: boolean;
    isSuperuser: boolean;
    /** A new password's hash; null keeps the stored one. */
    passwordHash: string | null;
    /** When the user joined: the stored date of an existing user; for a new one, null is the time of the write. */
    dateJoined: Date | null;
  };
  changes: FieldChange[];
  invite: boolean;
}

/** Whether a plan writes its row: something changes, or a new password is set (not a listed change). */
export function isRewrite(p: Plan): boolean {
  return p.changes.length > 0 || p.target.passwordHash !== null;
}

export type Step = Plan | { index: number; error: AppError };

/** What planning remembers across the batches of one call. */
interface CallState {
  orgCache: Map<string, Organization | null>;
  /** A user's id → index of the item that claimed the user. */
  seenIds: Map<string, number>;
  /** An external id a new user is claimed by → index of that item. */
  seenExternalIds: Map<string, number>;
  /** `<field>\0<organization code>\0<value>` → the item holding a unique value. */
  holders: Map<string, { index: number; userId: string }>;
  /** `<organization id>\0<code>` → the user type it names (null: none), looked up (and locked) once per call. */
  types: Map<string, UserType | null>;
  /** Organization id → whether it is active, looked up (and held) once per call. */
  activeOrganizations: Map<string, boolean>;
}

export function newCallState(): CallState {
  return {
    orgCache: new Map(),
    seenIds: new Map(),
    seenExternalIds: new Map(),
    holders: new Map(),
    types: new Map(),
    activeOrganizations: new Map(),
  };
}

/** Forgets what a batch claimed, before it is planned again. */
export function forgetBatch(state: CallState, indexes: Set<number>): void {
  for (const seen of [state.seenIds, state.seenExternalIds]) {
    for (const [k, i] of seen) if (indexes.has(i)) seen.delete(k);
  }
  for (const [k, h] of state.holders) if (indexes.has(h.index)) state.holders.delete(k);
}

function lower(v: string | null): string | null {
  return v === null ? null : v.toLowerCase();
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/**
 * Free-form data a user carries, at most. Every read of the user (lists of 100, exports, the profile a
 * self-registered account may write itself) carries it whole: without a bound one account could make
 * each of them megabytes. Profile data and SCIM's extension attributes fit many times over.
 */
const MAX_ATTRIBUTES_BYTES = 64 * 1024;

/** Whether `attributes` leaves `scim` out or gives it as stored (the only ways other APIs may send it). */
function sameScim(attributes: Record<string, unknown>, existing: UserRow): boolean {
  return !Object.hasOwn(attributes, 'scim') || isDeepStrictEqual(attributes.scim, existing.attributes.scim);
}

/**
 * The attributes an item leaves: `attributes` is replaced whole, except `scim`, which SCIM alone writes
 * (its attributes without a column, given back as sent): any other API keeps the stored one, so an admin
 * or seed-000 write of a user's metadata never deletes what the identity provider set. A new user takes
 * what the item gives (an import carries the SCIM data of the installation it comes from).
 */
function attributesOf(item: ProvisionItem, existing: UserRow | undefined): Record<string, unknown> {
  const attributes = givenAttributesOf(item, existing);
  if (item.profileChanges === undefined) return attributes;
  const stored = attributes.profile;
  const profile: Record<string, unknown> =
    typeof stored === 'object' && stored !== null && !Array.isArray(stored) ? { ...stored } : {};
  for (const [key, value] of Object.entries(item.profileChanges)) {
    if (value === null) delete profile[key];
    else profile[key] = value;
  }
  return { ...attributes, profile };
}

function givenAttributesOf(item: ProvisionItem, existing: UserRow | undefined): Record<string, unknown> {
  if (item.attributes === undefined) return existing?.attributes ?? {};
  if (item.writesScim || existing?.attributes.scim === undefined) return item.attributes;
  return { ...item.attributes, scim: existing.attributes.scim };
}

function statusOf(current: UserStatus | undefined, active: boolean | undefined, explicit?: UserStatus): UserStatus {
  if (explicit !== undefined) return explicit;
  // `active: false` asks for a user who cannot sign in: one suspended or locked already is that, and
  // keeps the state an administrator gave it (a SCIM PATCH of another attribute sends it back).
  if (active === false) return current === undefined || current === 'active' ? 'deactivated' : current;
  if (current === undefined) return 'active';
  if (active === true && current === 'deactivated') return 'active';
  return current;
}

/**
 * The fields a change reports, named as in the admin API, each read from the stored row and from
 * the planned one. A table rather than two objects per item: this runs for every item of a bulk call.
 */
const CHANGE_FIELDS: {
  field: string;
  before: (u: UserRow) => unknown;
  after: (t: Plan['target'], organizationCode: string) => unknown;
}[] = [
  { field: 'organization', before: (u) => u.organizationCode, after: (_, code) => code },
  { field: 'external_id', before: (u) => u.externalId, after: (t) => t.externalId },
  { field: 'scim_external_id', before: (u) => u.scimExternalId, after: (t) => t.scimExternalId },
  { field: 'email', before: (u) => u.email, after: (t) => t.email },
  { field: 'username', before: (u) => u.username, after: (t) => t.username },
  { field: 'first_name', before: (u) => u.firstName, after: (t) => t.firstName },
  { field: 'last_name', before: (u) => u.lastName, after: (t) => t.lastName },
  { field: 'is_active', before: (u) => u.status === 'active', after: (t) => t.status === 'active' },
  { field: 'status', before: (u) => u.status, after: (t) => t.status },
  { field: 'attributes', before: (u) => u.attributes, after: (t) => t.attributes },
  { field: 'user_type', before: (u) => u.userType, after: (t) => t.userType },
  { field: 'is_staff', before: (u) => u.isStaff, after: (t) => t.isStaff },
  { field: 'is_superuser', before: (u) => u.isSuperuser, after: (t) => t.isSuperuser },
  {
    field: 'date_joined',
    before: (u) => u.dateJoined.toISOString(),
    after: (t) => t.dateJoined?.toISOString() ?? null,
  },
];

function changesOf(existing: UserRow | undefined, organizationCode: string, t: Plan['target']): FieldChange[] {
  const out: FieldChange[] = [];
  for (const { field, before, after } of CHANGE_FIELDS) {
    const to = after(t, organizationCode);
    if (existing === undefined) {
      // A new user: every field that carries a value.
      if (to === null || to === '' || to === false || (field === 'attributes' && sameJson(to, {}))) continue;
      out.push({ field, from: null, to });
      continue;
    }
    const from = before(existing);
    if (from !== to && (field !== 'attributes' || !sameJson(from, to))) out.push({ field, from, to });
  }
  return out;
}

async function loadExisting(db: DbOrTx, items: ProvisionItem[], known: UserRow[] = [], lock = false) {
  const byId = new Map<string, UserRow>(known.map((row) => [row.id, row]));
  const byExternalId = new Map<string, UserRow>();
  const ids = [...new Set(items.flatMap((i) => (i.id !== undefined && isUuid(i.id) && !byId.has(i.id) ? [i.id] : [])))];
  const externalIds = [
    ...new Set(items.flatMap((i) => (i.id === undefined && typeof i.externalId === 'string' ? [i.externalId] : []))),
  ];
  if (lock) {
    for (const row of await lockUserRows(db, ids, externalIds)) {
      if (ids.includes(row.id)) byId.set(row.id, row);
      if (row.externalId !== null && externalIds.includes(row.externalId)) byExternalId.set(row.externalId, row);
    }
    return { byId, byExternalId };
  }
  for (const row of await readUserRows(db, ids)) byId.set(row.id, row);
  if (externalIds.length > 0) {
    const rows = await db
      .select(withOrganization)
      .from(users)
      .innerJoin(organizations, eq(organizations.id, users.organizationId))
      .where(sql`${users.externalId} = any(${sql.param(externalIds)}::text[])`);
    for (const row of rows) if (row.externalId !== null) byExternalId.set(row.externalId, row);
  }
  return { byId, byExternalId };
}

/**
 * Decides, without writing, what each item does: its organization, the user it reaches, the row
 * it leaves and its changes, or its error. Organizations missing for a platform caller are listed
 * in `missing` (to create before writing).
 */
export async function planItems(
  db: DbOrTx,
  actor: Actor,
  items: { index: number; item: ProvisionItem }[],
  options: ProvisionOptions,
  state: CallState,
  /** false: values other users hold are left to the unique indexes (the caller undoes the write on a violation). */
  probe = true,
  /** Lock the existing users read, to the end of the transaction (see lockUserRows); `options.known` is then read again. */
  lock = false,
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
    lock ? [] : options.known,
    lock,
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
      // external_id is unique across the installation, so a create-only item clashes wherever its holder is.
      if (existing && item.createOnly) {
        fail(provisioningErrors.taken('external_id', ref));
        continue;
      }
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
    if ((existing?.isSuperuser || item.isSuperuser === true) && !isSuperuserActor(actor)) {
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
    // An imported join date is history: one ahead of the clock (a day's leeway for zones) is a mistake.
    if (!existing && item.dateJoined !== undefined && Date.parse(item.dateJoined) > Date.now() + 86_400_000) {
      fail(provisioningErrors.invalid([{ field: 'date_joined', message: 'Must not be in the future.' }]));
      continue;
    }
    // One write per user and call: a later item naming the same user is refused, the first one stands.
    const byExternal = item.id === undefined && ref !== '';
    const first =
      (existing ? state.seenIds.get(existing.id) : undefined) ??
      (byExternal ? state.seenExternalIds.get(ref) : undefined);
    if (first !== undefined) {
      fail(provisioningErrors.duplicateInRequest(ref, first));
      continue;
    }
    if (item.attributes !== undefined && !item.writesScim && existing && !sameScim(item.attributes, existing)) {
      fail(provisioningErrors.scimAttributesReadOnly());
      continue;
    }
    const attributes = attributesOf(item, existing);
    // What the item writes: its attributes, or, merging profile keys, the whole result.
    const given = item.profileChanges === undefined ? item.attributes : attributes;
    const attributesBytes = given === undefined ? 0 : Buffer.byteLength(JSON.stringify(given));
    if (attributesBytes > MAX_ATTRIBUTES_BYTES) {
      const message = `Must be at most ${MAX_ATTRIBUTES_BYTES} bytes written out (this is ${attributesBytes}).`;
      fail(provisioningErrors.invalid([{ field: profileFieldOf(item) ?? 'attributes', message }]));
      continue;
    }
    if (existing) state.seenIds.set(existing.id, index);
    if (byExternal) state.seenExternalIds.set(ref, index);

    const target: Plan['target'] = {
      id: existing?.id ?? newId(),
      externalId:
        item.id === undefined
          ? (item.externalId ?? null)
          : item.externalId === undefined
            ? (existing?.externalId ?? null)
            : item.externalId,
      scimExternalId: item.scimExternalId === undefined ? (existing?.scimExternalId ?? null) : item.scimExternalId,
      email: item.email ?? (existing?.email as string),
      username:
        item.username === undefined
          ? (existing?.username ?? null)
          : item.username === null
            ? null
            : normalizeUsername(item.username),
      firstName: item.firstName ?? existing?.firstName ?? '',
      lastName: item.lastName ?? existing?.lastName ?? '',
      status: statusOf(existing?.status, item.active, item.status),
      attributes,
      userType: item.userType === undefined ? (existing?.userType ?? null) : item.userType,
      isStaff: item.isStaff ?? existing?.isStaff ?? false,
      isSuperuser: item.isSuperuser ?? existing?.isSuperuser ?? false,
      passwordHash: item.passwordHash ?? null,
      dateJoined:
        existing?.dateJoined ?? (item.dateJoined === undefined ? null : instantOf(item.dateJoined, 'date_joined')),
    };
    // New users only: seed-000 clients post every user again on each sync, and an update must not
    // mail another invitation each time.
    const invite =
      (item.sendInvite ?? options.sendInvite ?? false) &&
      existing === undefined &&
      target.status === 'active' &&
      !target.passwordHash;
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

  for (const error of await refuseInactiveOrganizations(db, planned, state)) steps.set(error.index, error);
  for (const error of await refuseAboveKeyCeiling(db, actor, planned)) steps.set(error.index, error);
  const reachable = planned.filter((p) => !steps.has(p.index));
  for (const error of await checkTypedProfiles(db, reachable, state)) steps.set(error.index, error);
  const typed = reachable.filter((p) => !steps.has(p.index));
  for (const error of await findTakenValues(db, typed, state, probe)) steps.set(error.index, error);
  for (const p of typed) if (!steps.has(p.index)) steps.set(p.index, p);
  return items.map(({ index }) => steps.get(index) as Step);
}

/** Whether a plan only takes an existing user out of use (or leaves them out), changing nothing else. */
function isWithdrawal(p: Plan): boolean {
  return (
    p.existing !== undefined &&
    p.target.status !== 'active' &&
    p.target.passwordHash === null &&
    p.changes.every((c) => c.field === 'status' || c.field === 'is_active')
  );
}

/**
 * No user of a deactivated organization is created, changed or invited, whoever the caller
 * (superusers and platform keys included): its users can no longer sign in, and a write now would
 * wait for its reactivation to take effect unseen. Taking users out of use stays possible (cleanup;
 * deletion does not come here). The organizations are held in share mode to the end of the
 * caller's transaction, so a deactivation racing this write either waits for it or refuses it.
 */
async function refuseInactiveOrganizations(
  db: DbOrTx,
  plans: Plan[],
  state: CallState,
): Promise<{ index: number; error: AppError }[]> {
  const known = state.activeOrganizations;
  const unknown = new Set<string>();
  for (const p of plans) {
    const id = p.organization.id;
    // A missing organization is created (active) by this call.
    if (id !== null && !known.has(id) && !isWithdrawal(p)) unknown.add(id);
  }
  const active = await holdActiveOrganizations(db, [...unknown]);
  for (const id of unknown) known.set(id, active.has(id));
  return plans
    .filter((p) => p.organization.id !== null && known.get(p.organization.id) === false && !isWithdrawal(p))
    .map((p) => ({ index: p.index, error: organizationErrors.inactive(p.organization.code) }));
}

/**
 * An API key writes users within its creator's reach, as the admin API bounds the creator: a user
 * holding a role more powerful than the creator's, or a permission or module the creator lacks, is
 * refused (403 delegation_ceiling). Otherwise an
 * organization admin's key could change its owner's email, deactivate them, or take the account over
 * through a password reset. New users hold no role yet, so only existing ones are looked at.
 */
async function refuseAboveKeyCeiling(
  db: DbOrTx,
  actor: Actor,
  plans: Plan[],
): Promise<{ index: number; error: AppError }[]> {
  const reached = plans.flatMap((p) => (p.existing ? [{ index: p.index, id: p.existing.id }] : []));
  const above = await usersAboveKeyCeiling(
    db,
    actor,
    reached.map((r) => r.id),
  );
  return reached
    .filter((r) => above.has(r.id))
    .map((r) => ({ index: r.index, error: rbacErrors.aboveKeyCeiling(r.id) }));
}

function profileOf(attributes: Record<string, unknown> | undefined): unknown {
  return attributes?.profile ?? {};
}

/** Where the request holds the profile: `profile` for keys merged by a typed update, else inside `attributes`. */
function profileFieldOf(item: ProvisionItem): 'profile' | undefined {
  return item.profileChanges === undefined ? undefined : 'profile';
}

/**
 * A typed user's profile (`attributes.profile`) must match its type's JSON Schema, whichever API
 * writes it (the typed collections, the generic admin routes, an import): the type must exist in the
 * user's organization (its own or a global one) and the profile match it. Checked for a new typed
 * user, and for an existing one whose type or profile changes, so a write leaving both as they are
 * (a SCIM sync, a renaming) does not trip over a profile an edited schema no longer accepts.
 */
async function checkTypedProfiles(
  db: DbOrTx,
  plans: Plan[],
  state: CallState,
): Promise<{ index: number; error: AppError }[]> {
  const out: { index: number; error: AppError }[] = [];
  for (const p of plans) {
    const code = p.target.userType;
    if (code === null) continue;
    const profile = profileOf(p.target.attributes);
    if (p.existing && p.existing.userType === code && sameJson(profileOf(p.existing.attributes), profile)) continue;
    const key = `${p.organization.id ?? ''}\u0000${code}`;
    let type = state.types.get(key);
    if (type === undefined) {
      type = (await findUserTypeForUser(db, p.organization.id, code)) ?? null;
      state.types.set(key, type);
    }
    try {
      if (type === null) throw userTypeErrors.unknownType(code);
      if (typeof profile !== 'object' || profile === null || Array.isArray(profile)) {
        throw userTypeErrors.invalidProfile([{ field: 'attributes.profile', message: 'must be an object' }]);
      }
      validateProfile(type, profile as Record<string, unknown>, profileFieldOf(p.item) ?? 'attributes.profile');
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      out.push({ index: p.index, error: err });
    }
  }
  return out;
}

async function organizationById(db: DbOrTx, id: string, cache: Map<string, Organization | null>) {
  for (const org of cache.values()) if (org?.id === id) return org;
  const org = await findOrganizationById(db, id);
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
  probe: boolean,
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
      // The byte collation of the unique index (users.table.ts); equality means the same in either.
      column: sql`lower(${users.email}) collate "C"`,
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
    if (!probe) continue;
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

export function planToUser(p: Plan, stored?: { createdAt: Date; updatedAt: Date }): ProvisionedUser {
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
