import { and, eq, sql } from 'drizzle-orm';
import type { Config } from '../../config.js';
import type { Db } from '../../platform/db/client.js';
import type { Actor } from '../../platform/http/auth.js';
import type { AppError, FieldError } from '../../platform/http/errors.js';
import { forbiddenKeyIn } from '../../platform/http/json-body.js';
import { bodyItemProblem } from '../../platform/http/text-guard.js';
import { findOrganizationByCode } from '../organizations/organizations.queries.js';
import { organizations } from '../organizations/organizations.table.js';
import { provisioningErrors } from '../provisioning/provisioning.errors.js';
import { type ProvisionItem, provisionUsers } from '../provisioning/provisioning.service.js';
import { USER_STATUSES, type UserStatus, users } from '../users/users.table.js';

/**
 * Users exported by another system (seed 003's `export-users` answer, or this product's own export)
 * created in one organization through the provisioning core: the same validation, set-based writes
 * and audit events as every other write. Seed 003's importer skips users it already has; here a
 * user whose email, username, external id or SCIM externalId the organization already holds is
 * skipped, an entry repeating an earlier entry's external id, SCIM externalId, email or username fails, and every
 * other refusal is reported for its entry alone. A user keeps when they joined,
 * their status (suspended and locked included) and both external ids. Passwords never travel:
 * imported users sign in after an invitation (`send_invite`) or a password reset. Staff and
 * superuser flags are never taken from the source.
 */

export interface ImportOptions {
  /** The organization's code; it must exist. */
  organization: string;
  dryRun?: boolean;
  sendInvite?: boolean;
  config?: Pick<Config, 'publicUrl'>;
  /** Where the users came from, for the audit events (`import`, or the command line's source URL). */
  source?: string;
  /**
   * The ids of the users earlier calls of the same import created (or would create, on a dry run):
   * the command line imports a file in several calls, and a later entry repeating one of them fails
   * as it would within one call. Read and extended by each call.
   */
  claims?: ImportClaims;
}

/** External ids, SCIM externalIds, email addresses and usernames (lower case) an import has given to users so far. */
export interface ImportClaims {
  externalIds: Set<string>;
  scimExternalIds: Set<string>;
  emails: Set<string>;
  usernames: Set<string>;
}

export function newImportClaims(): ImportClaims {
  return { externalIds: new Set(), scimExternalIds: new Set(), emails: new Set(), usernames: new Set() };
}

/** The field of an entry that names its user, as a problem calls it, and how a message words it. */
const REPEATED = {
  external_id: 'external id',
  scim_external_id: 'SCIM externalId',
  email: 'email address',
  username: 'username',
} as const;

export type ImportResult =
  | { index: number; action: 'created'; id: string | null; email: string }
  | {
      index: number;
      action: 'skipped' | 'failed';
      email: string | null;
      code: string;
      error: string;
      errors?: FieldError[];
    };

export interface ImportReport {
  created: number;
  skipped: number;
  failed: number;
  results: ImportResult[];
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * Other systems' names for no more than active or not (`inactive`, a directory's `enabled` and
 * `disabled`): such a status says nothing `is_active` does not, so `is_active` decides.
 */
const OTHER_SYSTEMS_STATUSES: ReadonlySet<string> = new Set(['inactive', 'enabled', 'disabled']);

/**
 * An entry's status: one of Gatehouse's in any case (spreadsheets upper-case them), undefined when
 * empty or another system's name left to `is_active`, or the field error failing the entry; a
 * status dropped silently would import a suspended user as active.
 */
function statusOf(value: unknown): UserStatus | undefined | FieldError {
  if (value === undefined || value === null) return undefined;
  const text = typeof value === 'string' ? value.trim().toLowerCase() : undefined;
  if (text === '' || (text !== undefined && OTHER_SYSTEMS_STATUSES.has(text))) return undefined;
  if (text !== undefined && (USER_STATUSES as readonly string[]).includes(text)) return text as UserStatus;
  return { field: 'status', message: `Must be one of ${USER_STATUSES.join(', ')}.` };
}

/**
 * A boolean as exports and spreadsheets write it: JSON's true/false, or text (`true`, `True`, `TRUE`,
 * `1`, and their false forms). An empty cell is no value; anything else is left for the core to refuse.
 */
function booleanOf(value: unknown): unknown {
  if (typeof value !== 'string') return value ?? undefined;
  const text = value.trim().toLowerCase();
  if (text === '') return undefined;
  if (text === 'true' || text === '1') return true;
  if (text === 'false' || text === '0') return false;
  return value;
}

/** A date and time of day with no zone: Django's `isoformat()` (or `str()`) of a date with USE_TZ off. */
const WITHOUT_ZONE = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2}(?:\.\d+)?)$/;

/**
 * A seed-003 source running with USE_TZ = False exports `date_joined` without a zone; Django then
 * stores the server's local time, which the export does not name. Such a time is read as UTC (the
 * zone Django's default settings use) rather than failing every user; anything else is left to the
 * core, which takes RFC 3339 date-times only.
 */
function inUtc(value: unknown): string {
  const naive = typeof value === 'string' ? WITHOUT_ZONE.exec(value) : null;
  return naive ? `${naive[1]}T${naive[2]}Z` : (value as string);
}

/** Seed 003's service flags, which this product keeps in `attributes` (the export's `flag=` reads them). */
const SERVICE_FLAGS = ['tv_service', 'movie_service'] as const;

/**
 * Entries are checked by the core; this only maps seed 003's field names (and those this product's
 * export adds) onto its item, with the status statusOf read.
 * A username equal to the email is no username: exports stand the email in for a user without one
 * (Django's importers need a username), and taking it as one would refuse emails the username rule
 * does not allow and collide with a user whose username it really is. Names a CSV writer left empty
 * are empty, as the provisioning API stores a null name.
 */
function itemOf(entry: Record<string, unknown>, organization: string, status: UserStatus | undefined): ProvisionItem {
  const item: ProvisionItem = { createOnly: true, organization, email: entry.email as string };
  if (entry.date_joined !== undefined && entry.date_joined !== null) item.dateJoined = inUtc(entry.date_joined);
  if (status !== undefined) item.status = status;
  if (entry.username !== undefined) {
    const standsIn =
      typeof entry.username === 'string' &&
      typeof entry.email === 'string' &&
      entry.username.toLowerCase() === entry.email.toLowerCase();
    item.username = standsIn ? null : (entry.username as string | null);
  }
  if (entry.first_name !== undefined) item.firstName = (entry.first_name ?? '') as string;
  if (entry.last_name !== undefined) item.lastName = (entry.last_name ?? '') as string;
  const active = booleanOf(entry.is_active);
  if (active !== undefined) item.active = active as boolean;
  if (entry.user_type !== undefined) item.userType = entry.user_type as string | null;
  if (entry.attributes !== undefined) item.attributes = entry.attributes as Record<string, unknown>;
  for (const flag of SERVICE_FLAGS) {
    const value = booleanOf(entry[flag]);
    if (typeof value !== 'boolean') continue;
    if (item.attributes === undefined) item.attributes = { [flag]: value };
    else if (isObject(item.attributes) && !(flag in item.attributes))
      item.attributes = { ...item.attributes, [flag]: value };
  }
  if (entry.external_id !== undefined && entry.external_id !== null) item.externalId = entry.external_id as string;
  if (entry.scim_external_id !== undefined && entry.scim_external_id !== null) {
    item.scimExternalId = entry.scim_external_id as string;
  }
  return item;
}

/** Of the external ids the core found taken, those a user of the importing organization holds. */
async function externalIdsHeldIn(
  db: Db,
  organization: string,
  results: { ok: boolean; index: number; error?: { code: string } }[],
  items: ProvisionItem[],
): Promise<Set<string>> {
  const taken = results.flatMap((r) => {
    const externalId = items[r.index]?.externalId;
    return !r.ok && r.error?.code === 'external_id_taken' && typeof externalId === 'string' ? [externalId] : [];
  });
  if (taken.length === 0) return new Set();
  const rows = await db
    .select({ externalId: users.externalId })
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(and(eq(organizations.code, organization), sql`${users.externalId} = any(${sql.param(taken)}::text[])`));
  return new Set(rows.map((r) => r.externalId as string));
}

/**
 * How deep a user sits in an export's JSON answer (`{"users": [user]}`), the body of
 * `import-users`: the nesting limit counts from there, so a file and a request take the same users.
 */
const ENTRY_DEPTH = 2;

/**
 * What refuses an entry before any of its fields is read, as the HTTP layer refuses a whole body
 * elsewhere: a `__proto__` key (or `constructor` holding `prototype`), text PostgreSQL cannot store,
 * a number beyond a double's range, nesting deeper than the limit. A 3000-level `attributes` was
 * stored by the command line, then broke every export and search that read it back.
 */
function unsafeIn(entry: Record<string, unknown>): FieldError | undefined {
  const found = forbiddenKeyIn(entry, { proto: true, constructor: true }) ?? bodyItemProblem(entry, ENTRY_DEPTH);
  return found && { field: found.field || 'item', message: found.message };
}

/** Creates the entries' users in one organization; each entry that cannot be imported is reported alone. */
export async function importUsers(
  db: Db,
  actor: Actor,
  entries: unknown[],
  options: ImportOptions,
): Promise<ImportReport> {
  const results: ImportResult[] = new Array(entries.length);
  const items: ProvisionItem[] = [];
  const indexes: number[] = [];
  const claims = options.claims ?? newImportClaims();
  // The same user twice in one import is no user the organization holds: the first entry stands
  // and a later one fails, naming the field (as seed 000's bulk call refuses it, not skips it).
  // Entries refused here are items of the call all the same: its event counts them with the core's refusals.
  const refused: AppError[] = [];
  const repeated = (index: number, email: unknown, field: keyof typeof REPEATED, value: string) => {
    results[index] = {
      index,
      action: 'failed',
      email: typeof email === 'string' ? email : null,
      code: 'duplicate_in_request',
      error: `User ${value} appears twice in this import; the first entry stands.`,
      errors: [{ field, message: `An earlier entry of this import gives the same ${REPEATED[field]}.` }],
    };
  };
  const refuse = (index: number, email: unknown, errors: FieldError[]) => {
    const invalid = provisioningErrors.invalid(errors);
    refused.push(invalid);
    // As the core words a refusal; an entry that is no object only says so.
    const error = errors[0]?.field === 'item' ? errors[0].message : invalid.message;
    results[index] = {
      index,
      action: 'failed',
      email: typeof email === 'string' ? email : null,
      code: 'validation_failed',
      error,
      errors,
    };
  };
  entries.forEach((entry, index) => {
    if (!isObject(entry)) {
      refuse(index, null, [{ field: 'item', message: 'Each user must be an object.' }]);
      return;
    }
    const unsafe = unsafeIn(entry);
    if (unsafe) {
      refuse(index, entry.email, [unsafe]);
      return;
    }
    const status = statusOf(entry.status);
    if (typeof status === 'object') {
      refuse(index, entry.email, [status]);
      return;
    }
    const item = itemOf(entry, options.organization, status);
    if (typeof item.externalId === 'string' && claims.externalIds.has(item.externalId)) {
      repeated(index, item.email, 'external_id', item.externalId);
      refused.push(provisioningErrors.duplicateInRequest(item.externalId, index));
      return;
    }
    if (typeof item.scimExternalId === 'string' && claims.scimExternalIds.has(item.scimExternalId)) {
      repeated(index, item.email, 'scim_external_id', item.scimExternalId);
      refused.push(provisioningErrors.duplicateInRequest(item.scimExternalId, index));
      return;
    }
    items.push(item);
    indexes.push(index);
  });
  const source = options.source ?? 'import';
  const target = await findOrganizationByCode(db, options.organization);
  const report = await provisionUsers(db, actor, items, {
    dryRun: options.dryRun,
    sendInvite: options.sendInvite,
    config: options.config,
    context: { source },
    refused,
    // The organization's admins see the call among its activities, whatever organization the actor has.
    call: { organizationId: target?.id ?? null, details: { source, dry_run: options.dryRun === true } },
  });
  const heldHere = await externalIdsHeldIn(db, options.organization, report.results, items);
  // What this call's created entries hold: the core gives a value to the first valid entry naming it
  // and refuses any other as taken, so a taken SCIM externalId one of them holds is a repeat, not a
  // user the organization already had (which would have refused that entry too).
  for (const outcome of report.results) {
    if (!outcome.ok) continue;
    const { externalId, scimExternalId, username } = items[outcome.index] ?? {};
    if (typeof externalId === 'string') claims.externalIds.add(externalId);
    if (typeof scimExternalId === 'string') claims.scimExternalIds.add(scimExternalId);
    claims.emails.add(outcome.user.email.toLowerCase());
    if (typeof username === 'string') claims.usernames.add(username.toLowerCase());
  }
  for (const outcome of report.results) {
    const index = indexes[outcome.index] as number;
    if (outcome.ok) {
      results[index] = { index, action: 'created', id: outcome.user.id, email: outcome.user.email };
      continue;
    }
    const item = items[outcome.index];
    const email = item?.email;
    const { error } = outcome;
    if (error.code === 'duplicate_in_request') {
      repeated(index, email, 'external_id', item?.externalId ?? '');
      continue;
    }
    if (error.code === 'scim_external_id_taken' && claims.scimExternalIds.has(item?.scimExternalId ?? '')) {
      repeated(index, email, 'scim_external_id', item?.scimExternalId as string);
      continue;
    }
    // Taken by an entry of this import, not by a user the organization held before it.
    if (error.code === 'email_taken' && typeof email === 'string' && claims.emails.has(email.toLowerCase())) {
      repeated(index, email, 'email', email);
      continue;
    }
    const username = item?.username;
    if (
      error.code === 'username_taken' &&
      typeof username === 'string' &&
      claims.usernames.has(username.toLowerCase())
    ) {
      repeated(index, email, 'username', username);
      continue;
    }
    // A clash with a user the organization holds is what an importer skips; anything else failed,
    // a keycloak id another organization's user holds (unique across the installation) included.
    const elsewhere = error.code === 'external_id_taken' && !heldHere.has(items[outcome.index]?.externalId ?? '');
    // A deactivated organization is no clash with a user it holds, nor a user type whose schema
    // cannot be used: nothing was imported.
    const clash =
      error.status === 409 && error.code !== 'organization_inactive' && error.code !== 'user_type_schema_unusable';
    results[index] = {
      index,
      action: clash && !elsewhere ? 'skipped' : 'failed',
      email: typeof email === 'string' ? email : null,
      code: error.code,
      error: error.message,
      ...(error.errors ? { errors: error.errors } : {}),
    };
  }
  const count = (action: ImportResult['action']) => results.filter((r) => r.action === action).length;
  return { created: count('created'), skipped: count('skipped'), failed: count('failed'), results };
}
