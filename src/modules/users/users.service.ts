import { isDeepStrictEqual } from 'node:util';
import { and, eq } from 'drizzle-orm';
import { assertPasswordPolicy, passwordPolicyOf } from '../../platform/crypto/password-policy.js';
import { hashPassword } from '../../platform/crypto/passwords.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { type Actor, organizationScopeOf, type UserActor } from '../../platform/http/auth.js';
import { commonErrors } from '../../platform/http/errors.js';
import { type AuditEvent, recordAudit } from '../activity/audit.js';
import { eraseUserActivity } from '../activity/audit-seal.js';
import { revokeKeysOfCreator } from '../api-keys/api-keys.service.js';
import { invalidateUserState, revokeUserSessions } from '../auth/auth.service.js';
import { userSyncStates } from '../downstream-sync/downstream-sync.table.js';
import { eraseUserFromLogs } from '../integrations/integration-calls.js';
import { deleteUserMails } from '../mail-outbox/mail-outbox.queries.js';
import { findOrganizationByCode, findOrganizationById } from '../organizations/organizations.queries.js';
import { type ProvisionItem, provisionUsers } from '../provisioning/provisioning.service.js';
import { assertMayManageUser } from '../rbac/delegation.js';
import { rbacErrors } from '../rbac/rbac.errors.js';
import { holderLeaving } from '../rbac/roles.service.js';
import { userErrors } from './users.errors.js';
import { findUserById, type UserWithOrganization } from './users.queries.js';
import type { CreateUserInput, UpdateUserInput } from './users.schemas.js';
import { users } from './users.table.js';

/**
 * The user an admin write is aimed at: looked up within the caller's organization (another
 * organization's user answers 404, as if absent), then held to the delegation rule (no superuser,
 * nobody holding a more powerful role or grants the caller lacks).
 */
export async function findUserToManage(db: Db, actor: Actor, id: string): Promise<UserWithOrganization> {
  const user = await findUserById(db, id, organizationScopeOf(actor));
  if (!user) throw userErrors.notFound(id);
  await assertMayManageUser(db, actor, user);
  return user;
}

/** Only superusers make superusers; `is_superuser: false` changes nothing a non-superuser may reach. */
export function assertMayGrantSuperuser(actor: Actor, input: { is_superuser?: boolean | undefined }): void {
  if (input.is_superuser === true && !(actor.kind === 'user' && actor.isSuperuser)) throw rbacErrors.superuserTarget();
}

/**
 * `is_staff` opens the staff-only user export and import, so only staff members and superusers
 * change it (on a new user: set it true), and nobody but a superuser changes their own (as with
 * roles). A value equal to the stored one changes nothing: a client may send back what it read.
 */
export function assertMayChangeStaff(
  actor: Actor,
  input: { is_staff?: boolean | undefined },
  target?: { id: string; isStaff: boolean },
): void {
  if (input.is_staff === undefined || input.is_staff === (target?.isStaff ?? false)) return;
  if (actor.kind === 'user' && actor.isSuperuser) return;
  if (actor.kind !== 'user' || !actor.isStaff) throw rbacErrors.staffTarget();
  if (target?.id === actor.userId) throw rbacErrors.ownFlags();
}

/**
 * An administrator does not take their own account out of use (deactivate, suspend, lock, delete):
 * an organization's only admin would lock it out, and a slip of a bulk selection would sign them out.
 */
export function assertNotOwnAccount(
  actor: Actor,
  target: { id: string },
  change: 'delete' | { status?: string | undefined; is_active?: boolean | undefined },
): void {
  if (actor.kind !== 'user' || target.id !== actor.userId) return;
  const leaving =
    change === 'delete' || (change.status !== undefined && change.status !== 'active') || change.is_active === false;
  if (leaving) throw rbacErrors.ownAccount();
}

/**
 * One admin write through the provisioning core, the path of the seed-000 API and SCIM too: the
 * same validation (a typed user's profile against its type's schema included), upsert and audit event. The item's refusal is thrown as the core answered it
 * (409 naming the field for a taken email, username or external_id), and the stored user is read back
 * (404 user_not_found when a parallel deletion has taken it).
 */
async function provisionOne(
  db: Db,
  actor: Actor,
  item: ProvisionItem,
  source = 'admin',
): Promise<UserWithOrganization> {
  const {
    results: [outcome],
  } = await provisionUsers(db, actor, [item], { recordCall: false, context: { source } });
  if (!outcome) throw new Error('provisioning answered no outcome');
  if (!outcome.ok) throw outcome.error;
  const id = outcome.user.id as string;
  // Read after the core's commit: a deletion may have committed in between (or before a write that
  // changed nothing); the user is gone either way.
  const user = await findUserById(db, id);
  if (!user) throw userErrors.notFound(id);
  return user;
}

/** The admin API's fields as the provisioning core's item fields (absent stays absent: left unchanged). */
function itemFieldsOf(input: CreateUserInput | UpdateUserInput, passwordHash: string | undefined): ProvisionItem {
  return {
    externalId: input.external_id,
    email: input.email,
    username: input.username,
    firstName: input.first_name,
    lastName: input.last_name,
    attributes: input.attributes,
    status: input.status,
    userType: input.user_type,
    isStaff: input.is_staff,
    isSuperuser: input.is_superuser,
    passwordHash,
  };
}

/**
 * Creates a user in the named organization (default: the caller's); only superusers name another
 * one (refused before the look-up, so the answer does not tell whether it exists). Email and
 * username are stored as given and compared case-insensitively by the unique indexes; a clash
 * answers 409 naming the field.
 */
export async function createUser(db: Db, actor: UserActor, input: CreateUserInput): Promise<UserWithOrganization> {
  assertMayGrantSuperuser(actor, input);
  assertMayChangeStaff(actor, input);
  assertActiveAgreesWithStatus(input);
  if (!actor.isSuperuser && input.organization !== undefined && input.organization !== actor.organizationCode) {
    throw userErrors.otherOrganization();
  }
  const code = input.organization ?? actor.organizationCode;
  // Looked up here, not left to the core: the admin API never creates an organization on the way.
  const org = await findOrganizationByCode(db, code);
  if (!org) throw userErrors.organizationNotFound(code);
  // Checked and hashed before the transaction: argon2 takes milliseconds and must not hold a connection.
  if (input.password) {
    assertPasswordPolicy(
      input.password,
      { email: input.email, username: input.username },
      passwordPolicyOf(org.settings),
    );
  }
  const passwordHash = input.password ? await hashPassword(input.password) : undefined;
  return provisionOne(db, actor, {
    // An external_id someone holds is a clash here, not the upsert key it is for the seed-000 API.
    createOnly: true,
    organization: org.code,
    ...itemFieldsOf(input, passwordHash),
    active: input.is_active,
  });
}

/**
 * Applies a partial update. Leaving the `active` status or getting a new password ends the user's
 * sessions in the same transaction, so old tokens stop working with the change (the core does it).
 * `is_active` is the core's `active`: false deactivates, true reactivates only a deactivated user.
 */
export async function updateUser(
  db: Db,
  id: string,
  input: UpdateUserInput,
  scopeOrganizationId: string | undefined,
  actor: Actor,
  /** Keys to set in `attributes.profile` (null removes one), merged onto the profile as stored at the write. */
  profileChanges?: Record<string, unknown>,
): Promise<UserWithOrganization> {
  assertActiveAgreesWithStatus(input);
  let passwordHash: string | undefined;
  // The stored user is read first only when a rule needs it: the password policy. A typed profile is
  // checked by the provisioning core, in the transaction of the write.
  if (input.password) {
    const target = await findUserById(db, id, scopeOrganizationId);
    if (!target) throw userErrors.notFound(id);
    const org = await findOrganizationById(db, target.organizationId);
    assertPasswordPolicy(
      input.password,
      { email: input.email ?? target.email, username: input.username ?? target.username },
      passwordPolicyOf(org?.settings),
    );
    passwordHash = await hashPassword(input.password);
  } else if (scopeOrganizationId !== undefined && organizationScopeOf(actor) !== scopeOrganizationId) {
    // The core scopes by the actor; a narrower scope than the actor's is checked here.
    const target = await findUserById(db, id, scopeOrganizationId);
    if (!target) throw userErrors.notFound(id);
  }
  return provisionOne(db, actor, { id, ...itemFieldsOf(input, passwordHash), active: input.is_active, profileChanges });
}

function assertActiveAgreesWithStatus(input: { status?: string | undefined; is_active?: boolean | undefined }): void {
  if (input.status !== undefined && input.is_active !== undefined && (input.status === 'active') !== input.is_active) {
    throw userErrors.activeContradictsStatus(input.status);
  }
}

/** What a signed-in user changes about themselves (`PATCH /api/v1/users/profile/`). */
interface OwnProfileChange {
  username?: string | null;
  first_name?: string;
  last_name?: string;
  attributes?: Record<string, unknown>;
}

/**
 * Keys of `attributes` that others write and a user may not change about themselves: `scim` is the
 * identity provider's (SCIM keeps its attributes there and gives them back as sent).
 */
const NOT_SELF_WRITTEN_ATTRIBUTES = ['scim'] as const;

/**
 * A user's change of their own profile, through the provisioning core like every other user write:
 * a typed user's `attributes.profile` is checked against their type's schema, a taken username
 * answers 409 `username_taken`, the change is audited. `attributes` is replaced whole except the keys
 * others write: left out they are kept, given they must be as stored (400 naming `attributes.<key>`).
 */
export async function updateOwnProfile(
  db: Db,
  actor: UserActor,
  change: OwnProfileChange,
): Promise<UserWithOrganization> {
  let attributes: Record<string, unknown> | undefined;
  if (change.attributes !== undefined) {
    const current = await findUserById(db, actor.userId);
    if (!current) throw userErrors.notFound(actor.userId);
    attributes = { ...change.attributes };
    const refused: string[] = [];
    for (const key of NOT_SELF_WRITTEN_ATTRIBUTES) {
      if (!Object.hasOwn(attributes, key)) continue;
      if (!isDeepStrictEqual(attributes[key], current.attributes[key])) refused.push(`attributes.${key}`);
      // Sent back as read: left out, so the core keeps the value on the row it locks. This read may be
      // older than that row (a SCIM write in between), and copying it would be a change.
      delete attributes[key];
    }
    if (refused.length > 0) throw commonErrors.readOnlyFields(refused, 'through the profile');
  }
  const user = await provisionOne(
    db,
    actor,
    {
      id: actor.userId,
      username: change.username,
      firstName: change.first_name,
      lastName: change.last_name,
      attributes,
    },
    'profile',
  );
  // Names travel in cached session state (validate-token's user); it must show the change at once.
  await invalidateUserState(db, actor.userId);
  return user;
}

/** Deletes a user and, through the foreign keys, their sessions and tokens. */
export async function deleteUser(db: Db, id: string, scopeOrganizationId?: string, actor?: Actor): Promise<void> {
  await db.transaction(async (tx) => {
    const current = await findUserById(tx, id, scopeOrganizationId);
    if (!current) throw userErrors.notFound(id);
    await removeUser(tx, current, { actor, category: 'user_management', description: 'User deleted' });
  });
}

/**
 * The deletion itself, in the caller's transaction, for every path that deletes a user (admin API,
 * SCIM): sessions end on every node, the row goes (its tokens, roles and keys' references with it),
 * the deletion is recorded, and the user is erased from the activity trail (pseudonym), from the
 * integration request logs about them, and from the mail outbox.
 */
export async function removeUser(
  tx: DbOrTx,
  user: { id: string; organizationId: string },
  event: Pick<AuditEvent, 'actor' | 'category' | 'description' | 'details'>,
): Promise<void> {
  // Locked before anything is ended: of deletions racing for the user, one goes on, the others wait
  // and find the row gone (404 user_not_found, as a repeat would), with nothing done or recorded.
  const [held] = await tx
    .select({ id: users.id, externalId: users.externalId })
    .from(users)
    .where(eq(users.id, user.id))
    .for('update');
  if (!held) throw userErrors.notFound(user.id);
  // Every keycloak_id a downstream still knows the user by, read before the row goes.
  const sentAs = await tx
    .select({ keycloakId: userSyncStates.keycloakId })
    .from(userSyncStates)
    .where(and(eq(userSyncStates.organizationId, user.organizationId), eq(userSyncStates.userId, user.id)));
  const identifiers = [...new Set([held.externalId, ...sentAs.map((s) => s.keycloakId)])].filter(
    (id): id is string => id !== null,
  );
  await revokeUserSessions(tx, user.id, 'user_deleted');
  await revokeKeysOfCreator(tx, user.id, event.actor);
  // The cascade takes their assignments: the groups they were in change version.
  await holderLeaving(tx, user.id);
  await tx.delete(users).where(eq(users.id, user.id));
  // Naming the user only as its object: the deletion is the caller's act, whose IP address, user
  // agent and details stay; the erasure then puts the user's pseudonym in place of the object's id.
  await recordAudit(tx, {
    ...event,
    type: 'user.deleted',
    organizationId: user.organizationId,
    userId: null,
    severity: 'warning',
    objectType: 'user',
    objectId: user.id,
  });
  await eraseUserActivity(tx, user.id);
  await eraseUserFromLogs(tx, user.id, identifiers);
  await deleteUserMails(tx, user.id);
}
