import { eq } from 'drizzle-orm';
import { assertPasswordPolicy, passwordPolicyOf } from '../../platform/crypto/password-policy.js';
import { hashPassword } from '../../platform/crypto/passwords.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { type Actor, organizationScopeOf, type UserActor } from '../../platform/http/auth.js';
import { type AuditEvent, recordAudit } from '../activity/audit.js';
import { eraseUserActivity } from '../activity/audit-seal.js';
import { invalidateUserState, revokeUserSessions } from '../auth/auth.service.js';
import { findOrganizationByCode, findOrganizationById } from '../organizations/organizations.queries.js';
import { assertMayManageUser } from '../rbac/delegation.js';
import { rbacErrors } from '../rbac/rbac.errors.js';
import { userTypeErrors } from '../user-types/user-types.errors.js';
import { findUserTypeByCode } from '../user-types/user-types.queries.js';
import { validateProfile } from '../user-types/user-types.schemas.js';
import { userErrors } from './users.errors.js';
import { findUserById, type UserWithOrganization } from './users.queries.js';
import type { CreateUserInput, UpdateUserInput } from './users.schemas.js';
import { type User, users } from './users.table.js';

/**
 * Profile data of a typed user (`attributes.profile`) must match its type's JSON Schema, whichever
 * route writes it: the typed collections and the generic admin routes alike.
 */
async function checkTypedProfile(
  db: DbOrTx,
  organizationId: string,
  userType: string | null | undefined,
  attributes: Record<string, unknown> | undefined,
): Promise<void> {
  const profile = attributes?.profile;
  if (!userType || profile === undefined) return;
  const type =
    (await findUserTypeByCode(db, organizationId, userType)) ?? (await findUserTypeByCode(db, null, userType));
  if (!type) return;
  if (typeof profile !== 'object' || profile === null || Array.isArray(profile)) {
    throw userTypeErrors.invalidProfile([{ field: 'attributes.profile', message: 'must be an object' }]);
  }
  validateProfile(type, profile as Record<string, unknown>);
}

/**
 * The user an admin write is aimed at: looked up within the caller's organization (another
 * organization's user answers 404, as if absent), then held to the delegation rule (no superuser,
 * nobody more powerful than the caller).
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
 * Creates a user in the named organization (default: the caller's); only superusers name another
 * one (refused before the look-up, so the answer does not tell whether it exists). Email and
 * username are stored as given and compared case-insensitively by the unique indexes; a clash
 * answers 409 naming the field.
 */
export async function createUser(db: Db, actor: UserActor, input: CreateUserInput): Promise<UserWithOrganization> {
  assertMayGrantSuperuser(actor, input);
  if (!actor.isSuperuser && input.organization !== undefined && input.organization !== actor.organizationCode) {
    throw userErrors.otherOrganization();
  }
  const code = input.organization ?? actor.organizationCode;
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
  const organizationId = org.id;
  await checkTypedProfile(db, organizationId, input.user_type, input.attributes);
  const passwordHash = input.password ? await hashPassword(input.password) : null;
  return db.transaction(async (tx) => {
    const [row] = await tx
      .insert(users)
      .values({
        organizationId,
        email: input.email,
        username: input.username ?? null,
        firstName: input.first_name ?? '',
        lastName: input.last_name ?? '',
        externalId: input.external_id ?? null,
        userType: input.user_type ?? null,
        attributes: input.attributes ?? {},
        status: input.status ?? 'active',
        isStaff: input.is_staff ?? false,
        isSuperuser: input.is_superuser ?? false,
        passwordHash,
      })
      .returning();
    const created = row as User;
    await recordAudit(tx, {
      type: 'user.created',
      category: 'user_management',
      organizationId,
      userId: created.id,
      actor,
      description: `User ${created.id} created`,
      details: {
        fields: Object.keys(input),
        status: created.status,
        is_staff: created.isStaff,
        is_superuser: created.isSuperuser,
      },
      objectType: 'user',
      objectId: created.id,
    });
    return (await findUserById(tx, created.id)) as UserWithOrganization;
  });
}

/**
 * Applies a partial update. Leaving the `active` status or getting a new password ends the user's
 * sessions in the same transaction, so old tokens stop working with the change.
 */
export async function updateUser(
  db: Db,
  id: string,
  input: UpdateUserInput,
  scopeOrganizationId?: string,
  actor?: Actor,
): Promise<UserWithOrganization> {
  let passwordHash: string | undefined;
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
  }
  return db.transaction(async (tx) => {
    const current = await findUserById(tx, id, scopeOrganizationId);
    if (!current) throw userErrors.notFound(id);
    if (input.attributes !== undefined || input.user_type !== undefined) {
      await checkTypedProfile(
        tx,
        current.organizationId,
        input.user_type === undefined ? current.userType : input.user_type,
        input.attributes ?? current.attributes,
      );
    }
    const changes: Partial<typeof users.$inferInsert> = {};
    if (input.email !== undefined) changes.email = input.email;
    if (input.username !== undefined) changes.username = input.username;
    if (input.first_name !== undefined) changes.firstName = input.first_name;
    if (input.last_name !== undefined) changes.lastName = input.last_name;
    if (input.external_id !== undefined) changes.externalId = input.external_id;
    if (input.user_type !== undefined) changes.userType = input.user_type;
    if (input.attributes !== undefined) changes.attributes = input.attributes;
    if (input.status !== undefined) changes.status = input.status;
    if (input.is_staff !== undefined) changes.isStaff = input.is_staff;
    if (input.is_superuser !== undefined) changes.isSuperuser = input.is_superuser;
    if (passwordHash !== undefined) changes.passwordHash = passwordHash;
    await tx.update(users).set(changes).where(eq(users.id, current.id));

    const leavesActive = input.status !== undefined && input.status !== 'active' && current.status === 'active';
    if (leavesActive) await revokeUserSessions(tx, current.id, `status_${input.status}`);
    else if (passwordHash !== undefined) await revokeUserSessions(tx, current.id, 'password_set_by_admin');
    // Flags travel in cached session state; a change must be seen at once, not after the cache TTL.
    else if (input.is_staff !== undefined || input.is_superuser !== undefined || input.status !== undefined) {
      await invalidateUserState(tx, current.id);
    }
    await recordAudit(tx, {
      type: leavesActive && input.status === 'deactivated' ? 'user.deactivated' : 'user.updated',
      category: 'user_management',
      organizationId: current.organizationId,
      userId: current.id,
      actor,
      description: leavesActive ? `User ${current.id} set to ${input.status}` : `User ${current.id} updated`,
      details: {
        fields: Object.keys(changes).filter((k) => k !== 'passwordHash'),
        password_set: passwordHash !== undefined,
        ...(input.status !== undefined ? { status: { from: current.status, to: input.status } } : {}),
        ...(input.is_superuser !== undefined ? { is_superuser: input.is_superuser } : {}),
        ...(input.is_staff !== undefined ? { is_staff: input.is_staff } : {}),
      },
      severity: input.is_superuser !== undefined || passwordHash !== undefined ? 'warning' : 'info',
      objectType: 'user',
      objectId: current.id,
    });
    return (await findUserById(tx, current.id)) as UserWithOrganization;
  });
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
 * the deletion is recorded, and the user is then erased from the activity trail (pseudonym).
 */
export async function removeUser(
  tx: DbOrTx,
  user: { id: string; organizationId: string },
  event: Pick<AuditEvent, 'actor' | 'category' | 'description' | 'details'>,
): Promise<void> {
  await revokeUserSessions(tx, user.id, 'user_deleted');
  await tx.delete(users).where(eq(users.id, user.id));
  await recordAudit(tx, {
    ...event,
    type: 'user.deleted',
    organizationId: user.organizationId,
    userId: user.id,
    severity: 'warning',
    objectType: 'user',
    objectId: user.id,
  });
  await eraseUserActivity(tx, user.id);
}
