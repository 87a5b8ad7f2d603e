import type { Db } from '../../platform/db/client.js';
import type { Actor } from '../../platform/http/auth.js';
import type { UserRow } from '../provisioning/provisioning.lookup.js';
import {
  type ProvisionedUser,
  type ProvisionItem,
  type ProvisionOutcome,
  provisionUsers,
} from '../provisioning/provisioning.service.js';
import type { User } from '../users/users.table.js';
import type { ScimUserFields, ScimUserRow } from './scim.user-mapping.js';

/**
 * SCIM user writes go through the provisioning core (one validation, one upsert, one audit for the
 * seed-000 API, SCIM and the admin paths). This file only translates SCIM fields into core items.
 */

export interface WriteContext {
  db: Db;
  actor: Actor;
  organizationId: string;
  ip?: string | null;
  userAgent?: string | null;
}

/** The core item for a SCIM create (no `current`) or full replace of `current`. */
export function provisionItemOf(current: User | undefined, fields: ScimUserFields): ProvisionItem {
  // Everything but `scim` is kept as stored; a rest copy rather than `delete`, which would leave the
  // object in V8's slow dictionary mode for the comparisons and serialisations that follow.
  const { scim: _previous, ...kept } = current?.attributes ?? {};
  const attributes: Record<string, unknown> =
    Object.keys(fields.scim).length > 0 ? { ...kept, scim: fields.scim } : kept;
  return {
    id: current?.id,
    email: fields.email,
    username: fields.username,
    firstName: fields.firstName,
    lastName: fields.lastName,
    active: fields.active,
    scimExternalId: fields.scimExternalId,
    attributes,
    writesScim: true,
  };
}

/** Writes several users through the core in one call; outcomes come back in item order. */
export async function provisionScimUsers(
  ctx: WriteContext,
  items: ProvisionItem[],
  options: { dryRun?: boolean; known?: UserRow[] } = {},
): Promise<ProvisionOutcome[]> {
  const report = await provisionUsers(ctx.db, ctx.actor, items, {
    dryRun: options.dryRun ?? false,
    known: options.known,
    context: { source: 'scim', ip: ctx.ip ?? null, userAgent: ctx.userAgent ?? null },
  });
  return [...report.results].sort((a, b) => a.index - b.index);
}

/** Creates (no `current`) or replaces one user; a refusal is thrown as the core's error. */
export async function writeScimUser(
  ctx: WriteContext,
  current: User | undefined,
  fields: ScimUserFields,
): Promise<ScimUserRow> {
  const [outcome] = await provisionScimUsers(ctx, [provisionItemOf(current, fields)]);
  if (!outcome) throw new Error('provisioning answered no outcome');
  if (!outcome.ok) throw outcome.error;
  return rowOf(outcome.user);
}

/** The stored user as the core reports it (no second read). */
export function rowOf(user: ProvisionedUser): ScimUserRow {
  return {
    id: user.id as string,
    scimExternalId: user.scimExternalId,
    username: user.username,
    email: user.email,
    firstName: user.firstName,
    lastName: user.lastName,
    attributes: user.attributes,
    status: user.status,
    dateJoined: user.createdAt ?? new Date(),
    updatedAt: user.updatedAt ?? new Date(),
  };
}
