import { and, eq, sql } from 'drizzle-orm';
import type { Config } from '../../config.js';
import type { Db } from '../../platform/db/client.js';
import type { Actor } from '../../platform/http/auth.js';
import type { FieldError } from '../../platform/http/errors.js';
import { organizations } from '../organizations/organizations.table.js';
import { type ProvisionItem, provisionUsers } from '../provisioning/provisioning.service.js';
import { USER_STATUSES, type UserStatus, users } from '../users/users.table.js';

/**
 * Users exported by another system (seed 003's `export-users` answer, or this product's own export)
 * created in one organization through the provisioning core: the same validation, set-based writes
 * and audit events as every other write. Seed 003's importer skips users it already has; here a
 * user whose email, username, external id or SCIM externalId the organization already holds is
 * skipped, and every other refusal is reported for its entry alone. A user keeps when they joined,
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
}

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

const isUserStatus = (value: unknown): value is UserStatus => (USER_STATUSES as readonly unknown[]).includes(value);

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

/** Seed 003's service flags, which this product keeps in `attributes` (the export's `flag=` reads them). */
const SERVICE_FLAGS = ['tv_service', 'movie_service'] as const;

/**
 * Entries are checked by the core; this only maps seed 003's field names (and those this product's
 * export adds) onto its item. A status another system names its own way is left out: `is_active` decides.
 * A username equal to the email is no username: exports stand the email in for a user without one
 * (Django's importers need a username), and taking it as one would refuse emails the username rule
 * does not allow and collide with a user whose username it really is. Names a CSV writer left empty
 * are empty, as the provisioning API stores a null name.
 */
function itemOf(entry: Record<string, unknown>, organization: string): ProvisionItem {
  const item: ProvisionItem = { createOnly: true, organization, email: entry.email as string };
  if (entry.date_joined !== undefined && entry.date_joined !== null) item.dateJoined = entry.date_joined as string;
  if (isUserStatus(entry.status)) item.status = entry.status;
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

export async function importUsers(
  db: Db,
  actor: Actor,
  entries: unknown[],
  options: ImportOptions,
): Promise<ImportReport> {
  const results: ImportResult[] = new Array(entries.length);
  const items: ProvisionItem[] = [];
  const indexes: number[] = [];
  entries.forEach((entry, index) => {
    if (!isObject(entry)) {
      const error = 'Each user must be an object.';
      results[index] = {
        index,
        action: 'failed',
        email: null,
        code: 'validation_failed',
        error,
        errors: [{ field: 'item', message: error }],
      };
      return;
    }
    items.push(itemOf(entry, options.organization));
    indexes.push(index);
  });
  const report = await provisionUsers(db, actor, items, {
    dryRun: options.dryRun,
    sendInvite: options.sendInvite,
    config: options.config,
    context: { source: options.source ?? 'import' },
  });
  const heldHere = await externalIdsHeldIn(db, options.organization, report.results, items);
  for (const outcome of report.results) {
    const index = indexes[outcome.index] as number;
    if (outcome.ok) {
      results[index] = { index, action: 'created', id: outcome.user.id, email: outcome.user.email };
      continue;
    }
    const email = items[outcome.index]?.email;
    const { error } = outcome;
    // A clash with a user the organization holds is what an importer skips; anything else failed,
    // a keycloak id another organization's user holds (unique across the installation) included.
    const elsewhere = error.code === 'external_id_taken' && !heldHere.has(items[outcome.index]?.externalId ?? '');
    // A deactivated organization is no clash with a user it holds: nothing was imported.
    const clash = error.status === 409 && error.code !== 'organization_inactive';
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
