import { isDeepStrictEqual } from 'node:util';
import { eq } from 'drizzle-orm';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import type { Actor } from '../../platform/http/auth.js';
import { publishInvalidation } from '../../platform/invalidation.js';
import { endAccountTokens } from '../account/account.queries.js';
import { type AuditEvent, recordAudit } from '../activity/audit.js';
import { revokeOrganizationSessions } from '../auth/auth.service.js';
import { users } from '../users/users.table.js';
import { organizationErrors } from './organizations.errors.js';
import { findOrganization } from './organizations.queries.js';
import {
  type CreateOrganizationInput,
  oversizedSettings,
  SETTINGS_MAX_BYTES,
  type UpdateOrganizationInput,
} from './organizations.schemas.js';
import { type Organization, organizations } from './organizations.table.js';

/** Refuses settings over SETTINGS_MAX_BYTES as JSON (400 naming `settings`). */
function assertSettingsFit(settings: Record<string, unknown> | undefined): void {
  const bytes = oversizedSettings(settings);
  if (bytes !== undefined) throw organizationErrors.settingsTooLarge(bytes, SETTINGS_MAX_BYTES);
}

/** The event of an organization's creation, by the API or a setup file. */
export function organizationCreated(
  row: Pick<Organization, 'id' | 'code' | 'settings' | 'isActive'>,
  actor: Actor | undefined,
): AuditEvent {
  return {
    type: 'organization.created',
    category: 'organization',
    organizationId: row.id,
    actor,
    description: `Organization ${row.code} created`,
    details: { code: row.code, settings: row.settings, is_active: row.isActive },
    objectType: 'organization',
    objectId: row.id,
  };
}

/** Creates an organization; codes are unique across the installation. */
export async function createOrganization(db: Db, input: CreateOrganizationInput, actor?: Actor): Promise<Organization> {
  assertSettingsFit(input.settings);
  return db.transaction(async (tx) => {
    const [row] = await tx
      .insert(organizations)
      .values({
        code: input.code,
        name: input.name,
        description: input.description ?? '',
        settings: input.settings ?? {},
        isActive: input.is_active ?? true,
      })
      .onConflictDoNothing({ target: organizations.code })
      .returning();
    if (!row) throw organizationErrors.codeTaken(input.code);
    await recordAudit(tx, organizationCreated(row, actor));
    return row;
  });
}

/**
 * The organization a write is aimed at, its row locked until the transaction ends and read as it
 * then stands: of concurrent writes, each sees what the one before it committed (a second
 * deactivation finds it inactive, a second deletion finds it gone), so each change is made and
 * recorded once.
 */
async function findLockedOrganization(
  tx: DbOrTx,
  ref: string,
  scopeOrganizationId: string | undefined,
  // The strength the write itself takes: an update's leaves foreign-key checks (new users) unblocked.
  strength: 'update' | 'no key update',
): Promise<Organization | undefined> {
  const found = await findOrganization(tx, ref, scopeOrganizationId);
  if (!found) return undefined;
  const [row] = await tx.select().from(organizations).where(eq(organizations.id, found.id)).for(strength);
  return row;
}

function changesOrganization(current: Organization, input: UpdateOrganizationInput): boolean {
  return (
    (input.name !== undefined && input.name !== current.name) ||
    (input.description !== undefined && input.description !== current.description) ||
    (input.settings !== undefined && !isDeepStrictEqual(input.settings, current.settings)) ||
    (input.is_active !== undefined && input.is_active !== current.isActive)
  );
}

/**
 * Updates an organization; a body that changes nothing writes and records nothing. Deactivating it
 * ends its users' sessions in the same transaction, so nobody keeps working in an organization that
 * has been switched off. A caller confined to one organization (`scopeOrganizationId`) sees no
 * other, and may not switch its own on or off.
 */
export async function updateOrganization(
  db: Db,
  ref: string,
  input: UpdateOrganizationInput,
  scopeOrganizationId?: string,
  actor?: Actor,
): Promise<Organization> {
  assertSettingsFit(input.settings);
  return db.transaction(async (tx) => {
    const current = await findLockedOrganization(tx, ref, scopeOrganizationId, 'no key update');
    if (!current) throw organizationErrors.notFound(ref);
    if (scopeOrganizationId !== undefined && input.is_active !== undefined && input.is_active !== current.isActive) {
      throw organizationErrors.superuserOnly(
        input.is_active ? 'activate an organization' : 'deactivate an organization',
      );
    }
    // A write that changes nothing (a repeated deactivation) is answered as it stands, unrecorded.
    if (!changesOrganization(current, input)) return current;
    const [row] = await tx
      .update(organizations)
      .set({
        ...(input.name !== undefined ? { name: input.name } : {}),
        ...(input.description !== undefined ? { description: input.description } : {}),
        ...(input.settings !== undefined ? { settings: input.settings } : {}),
        ...(input.is_active !== undefined ? { isActive: input.is_active } : {}),
      })
      .where(eq(organizations.id, current.id))
      .returning();
    if (current.isActive && input.is_active === false) {
      await revokeOrganizationSessions(tx, current.id, 'organization_deactivated');
      // And the mailed links of its users, which would set a password or verify an address in it.
      await endAccountTokens(tx, { organizationId: current.id });
    } else if (!current.isActive && input.is_active === true) {
      // Nodes cached its API keys and its users' access as switched off; they are back at once.
      await publishInvalidation(tx, 'organization', current.id);
    }
    const deactivated = current.isActive && input.is_active === false;
    const activated = !current.isActive && input.is_active === true;
    // Switching it off or on is the event's type whatever else the body changes; every field given
    // keeps its values before and after.
    const change = deactivated ? 'deactivated' : activated ? 'activated' : 'updated';
    await recordAudit(tx, {
      type:
        change !== 'updated'
          ? `organization.${change}`
          : input.settings !== undefined
            ? 'organization.settings_changed'
            : 'organization.updated',
      category: 'organization',
      organizationId: current.id,
      actor,
      description: `Organization ${current.code} ${change}`,
      details: {
        fields: Object.keys(input),
        ...(input.name !== undefined ? { name: { from: current.name, to: input.name } } : {}),
        ...(input.description !== undefined
          ? { description: { from: current.description, to: input.description } }
          : {}),
        ...(input.settings !== undefined ? { settings: { from: current.settings, to: input.settings } } : {}),
        ...(input.is_active !== undefined ? { is_active: { from: current.isActive, to: input.is_active } } : {}),
      },
      severity: deactivated ? 'warning' : 'info',
      objectType: 'organization',
      objectId: current.id,
    });
    return row as Organization;
  });
}

/**
 * Deletes an organization that has no users left; one with users must be emptied or deactivated.
 * A caller confined to one organization (`scopeOrganizationId`) sees no other and may not delete its own.
 */
export async function deleteOrganization(
  db: Db,
  ref: string,
  scopeOrganizationId?: string,
  actor?: Actor,
): Promise<void> {
  await db.transaction(async (tx) => {
    const current = await findLockedOrganization(tx, ref, scopeOrganizationId, 'update');
    if (!current) throw organizationErrors.notFound(ref);
    if (scopeOrganizationId !== undefined) throw organizationErrors.superuserOnly('delete an organization');
    const [member] = await tx.select({ id: users.id }).from(users).where(eq(users.organizationId, current.id)).limit(1);
    if (member) throw organizationErrors.hasUsers();
    await tx.delete(organizations).where(eq(organizations.id, current.id));
    // Its API keys and roles went with it; every node drops what it cached of them.
    await publishInvalidation(tx, 'organization', current.id);
    await recordAudit(tx, {
      type: 'organization.deleted',
      category: 'organization',
      organizationId: current.id,
      actor,
      description: `Organization ${current.code} deleted`,
      severity: 'warning',
      objectType: 'organization',
      objectId: current.id,
    });
  });
}
