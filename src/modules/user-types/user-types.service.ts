import { isDeepStrictEqual } from 'node:util';
import { eq } from 'drizzle-orm';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import type { Actor, UserActor } from '../../platform/http/auth.js';
import { AppError, type FieldError } from '../../platform/http/errors.js';
import { recordAudit } from '../activity/audit.js';
import { findOrganizationByCode } from '../organizations/organizations.queries.js';
import { rbacErrors } from '../rbac/rbac.errors.js';
import { findUserById, type UserWithOrganization } from '../users/users.queries.js';
import { createUser, deleteUser, updateUser } from '../users/users.service.js';
import { userTypeErrors } from './user-types.errors.js';
import { findUserTypeById, isUserTypeInUse, type UserTypeWithOrganization } from './user-types.queries.js';
import type {
  CreateTypedUserInput,
  CreateUserTypeInput,
  UpdateTypedUserInput,
  UpdateUserTypeInput,
} from './user-types.schemas.js';
import { compileSchema } from './user-types.schemas.js';
import { type UserType, userTypes } from './user-types.table.js';

/**
 * Path segments under /api/v1/users/ that belong to other routes (now or planned), so a type may not
 * take them as its plural.
 */
export const RESERVED_PLURALS = new Set([
  'profile',
  'sessions',
  'login',
  'logout',
  'register',
  'token',
  'validate-token',
  'health',
  'user',
  'users',
  'change-password',
  'password-reset',
  'verify-email',
  'me',
  'roles',
  'mfa',
  'permissions',
  'search',
  'bulk',
  'export',
  'import',
  'admin',
  'api-keys',
  'activities',
]);

function checkPlural(plural: string): void {
  if (RESERVED_PLURALS.has(plural) || isUuid(plural)) throw userTypeErrors.reservedPlural(plural);
}

async function organizationIdOf(db: DbOrTx, code: string | null | undefined): Promise<string | null> {
  if (code === undefined || code === null) return null;
  const org = await findOrganizationByCode(db, code);
  if (!org) throw userTypeErrors.organizationNotFound(code);
  return org.id;
}

/**
 * Records a change to a user type, in the transaction of the change: a type decides which fields
 * its users' profiles hold and where they are served, a catalog change like a role's. The caller is
 * that of the request being served (the system for the CLI).
 */
function userTypeAudit(
  tx: DbOrTx,
  act: 'created' | 'updated' | 'deleted',
  type: UserType,
  details: Record<string, unknown> = {},
): Promise<void> {
  return recordAudit(tx, {
    type: `user_type.${act}`,
    category: 'user_management',
    organizationId: type.organizationId,
    description: `User type ${type.code} ${act}`,
    details: { code: type.code, ...details },
    severity: act === 'deleted' ? 'warning' : 'info',
    objectType: 'user_type',
    objectId: type.id,
  });
}

/**
 * Creates a user type; the plural must not be reserved. A caller confined to one organization
 * (`scopeOrganizationId`) creates only that organization's types, which is where one without an
 * organization goes: a global type is a platform object, and another organization answers the same
 * 403 whether it exists or not. Anyone else's type without an organization is global.
 */
export async function createUserType(
  db: Db,
  input: CreateUserTypeInput,
  scopeOrganizationId?: string,
): Promise<UserTypeWithOrganization> {
  // As for roles: left out, a confined caller's type is their organization's (a superuser's is global);
  // only null asks for a global one.
  if (scopeOrganizationId !== undefined && input.organization === null) {
    throw rbacErrors.platformObject('A global user type');
  }
  checkPlural(input.plural);
  compileSchema(input.schema ?? {});
  return db.transaction(async (tx) => {
    if (scopeOrganizationId !== undefined && input.organization !== undefined) {
      const org = await findOrganizationByCode(tx, input.organization as string);
      if (org?.id !== scopeOrganizationId) throw userTypeErrors.otherOrganization();
    }
    const organizationId =
      scopeOrganizationId !== undefined && input.organization === undefined
        ? scopeOrganizationId
        : await organizationIdOf(tx, input.organization);
    const [row] = await tx
      .insert(userTypes)
      .values({
        organizationId,
        code: input.code,
        plural: input.plural,
        label: input.label,
        schema: input.schema ?? {},
      })
      .returning();
    const created = row as UserType;
    await userTypeAudit(tx, 'created', created, { plural: created.plural, label: created.label });
    return (await findUserTypeById(tx, created.id)) as UserTypeWithOrganization;
  });
}

/**
 * One user type as a caller confined to `scopeOrganizationId` may see it: its organization's and
 * the global ones; another organization's type is absent.
 */
export async function findVisibleUserType(
  db: DbOrTx,
  id: string,
  scopeOrganizationId?: string,
): Promise<UserTypeWithOrganization | undefined> {
  const type = await findUserTypeById(db, id);
  if (!type || scopeOrganizationId === undefined || type.organizationId === null) return type;
  return type.organizationId === scopeOrganizationId ? type : undefined;
}

/** A type the caller may change: visible to them, and not global unless they reach every organization. */
async function findUserTypeToManage(db: DbOrTx, id: string, scopeOrganizationId?: string): Promise<UserType> {
  const type = await findVisibleUserType(db, id, scopeOrganizationId);
  if (!type) throw userTypeErrors.notFound(id);
  if (scopeOrganizationId !== undefined && type.organizationId === null) {
    throw rbacErrors.platformObject(`Global user type "${type.code}"`);
  }
  return type;
}

/**
 * Changes a type's plural, label or schema; existing profiles are checked against a new schema on
 * their next write. A body that changes nothing writes and records nothing.
 */
export async function updateUserType(
  db: Db,
  id: string,
  input: UpdateUserTypeInput,
  scopeOrganizationId?: string,
): Promise<UserTypeWithOrganization> {
  if (input.plural !== undefined) checkPlural(input.plural);
  if (input.schema !== undefined) compileSchema(input.schema);
  return db.transaction(async (tx) => {
    const found = await findUserTypeToManage(tx, id, scopeOrganizationId);
    // Locked and read again as it now stands: of concurrent changes each sees what the one before
    // it committed, so a repeat finds nothing to change and records nothing. No key update, as the
    // write of a label or schema takes: user writes naming the type (key share) go on meanwhile.
    const [current] = await tx.select().from(userTypes).where(eq(userTypes.id, found.id)).for('no key update');
    if (!current) throw userTypeErrors.notFound(id);
    const unchanged =
      (input.plural === undefined || input.plural === current.plural) &&
      (input.label === undefined || input.label === current.label) &&
      (input.schema === undefined || isDeepStrictEqual(input.schema, current.schema));
    if (unchanged) return (await findUserTypeById(tx, id)) as UserTypeWithOrganization;
    await tx
      .update(userTypes)
      .set({
        ...(input.plural !== undefined ? { plural: input.plural } : {}),
        ...(input.label !== undefined ? { label: input.label } : {}),
        ...(input.schema !== undefined ? { schema: input.schema } : {}),
      })
      .where(eq(userTypes.id, id));
    await userTypeAudit(tx, 'updated', current, {
      fields: Object.keys(input),
      ...(input.plural !== undefined ? { plural: { from: current.plural, to: input.plural } } : {}),
      ...(input.label !== undefined ? { label: { from: current.label, to: input.label } } : {}),
    });
    return (await findUserTypeById(tx, id)) as UserTypeWithOrganization;
  });
}

/**
 * Deletes a type no user holds (409 `user_type_in_use` otherwise). The row is locked FOR UPDATE
 * before the users are looked at: a user write naming the type locks it FOR KEY SHARE in its own
 * transaction (the provisioning core), so it either commits first and is seen here, or waits and
 * then finds the type gone.
 */
export async function deleteUserType(db: Db, id: string, scopeOrganizationId?: string): Promise<void> {
  await db.transaction(async (tx) => {
    await findUserTypeToManage(tx, id, scopeOrganizationId);
    const [type] = await tx.select().from(userTypes).where(eq(userTypes.id, id)).for('update');
    if (!type) throw userTypeErrors.notFound(id);
    if (await isUserTypeInUse(tx, type)) throw userTypeErrors.inUse(type.code);
    await tx.delete(userTypes).where(eq(userTypes.id, id));
    await userTypeAudit(tx, 'deleted', type, { plural: type.plural });
  });
}

// --- users of a type

/** Whether a user is one of `type` (and inside the type's organization when it has one). */
export function isOfType(user: UserWithOrganization, type: UserType): boolean {
  return user.userType === type.code && (type.organizationId === null || type.organizationId === user.organizationId);
}

function profileOf(user: { attributes: Record<string, unknown> }): Record<string, unknown> {
  const profile = user.attributes.profile;
  return profile && typeof profile === 'object' && !Array.isArray(profile) ? (profile as Record<string, unknown>) : {};
}

export function toTypedUserView(u: UserWithOrganization) {
  return {
    id: u.id,
    organization: u.organizationCode,
    organization_id: u.organizationId,
    user_type: u.userType ?? '',
    username: u.username,
    email: u.email,
    first_name: u.firstName,
    last_name: u.lastName,
    profile: profileOf(u),
    status: u.status,
    is_active: u.status === 'active',
    mfa_enabled: u.mfaEnabled,
    date_joined: u.dateJoined.toISOString(),
    updated_at: u.updatedAt.toISOString(),
  };
}

/** Creates a user of a type; the provisioning core checks its profile against the type's schema. */
export async function createTypedUser(
  db: Db,
  actor: UserActor,
  type: UserTypeWithOrganization,
  input: CreateTypedUserInput,
): Promise<UserWithOrganization> {
  const profile = input.profile ?? {};
  // An organization's own type only has users in that organization.
  const organization = input.organization ?? type.organizationCode ?? undefined;
  if (type.organizationCode !== null && organization !== type.organizationCode) {
    throw userTypeErrors.invalidFilter('organization', `User type "${type.code}" belongs to another organization.`);
  }
  // Only the fields this route declares, named one by one: the generic create takes more (status,
  // is_staff, …), which the closed body refuses before this point.
  const { email, username, first_name, last_name, password } = input;
  try {
    return await createUser(db, actor, {
      email,
      ...(username === undefined ? {} : { username }),
      ...(first_name === undefined ? {} : { first_name }),
      ...(last_name === undefined ? {} : { last_name }),
      ...(password === undefined ? {} : { password }),
      organization,
      user_type: type.code,
      attributes: { profile },
    });
  } catch (err) {
    throw err instanceof AppError ? namingProfile(err) : err;
  }
}

/**
 * The generic create holds the profile in `attributes.profile`, the typed body in `profile`: a
 * refusal names the field the request has (the attributes' size is the profile's, all it holds).
 */
function namingProfile(err: AppError): AppError {
  const rename = (field: string) =>
    field === 'attributes'
      ? 'profile'
      : field === 'attributes.profile' || field.startsWith('attributes.profile.')
        ? field.slice('attributes.'.length)
        : field;
  if (!err.errors?.some((e) => rename(e.field) !== e.field)) return err;
  const errors = err.errors.map((e) => ({ ...e, field: rename(e.field) }));
  // A detail listing the fields (`attributes: Must be …`) lists them renamed.
  const listed = (list: FieldError[]) => list.map((e) => `${e.field}: ${e.message}`).join('; ');
  const detail = err.message === listed(err.errors) ? listed(errors) : err.message;
  return new AppError(err.status, err.code, detail, {
    title: err.title,
    errors,
    cause: err,
    ...(err.headers ? { headers: err.headers } : {}),
    ...(err.extensions ? { extensions: err.extensions } : {}),
  });
}

/**
 * Applies a partial update; profile keys are merged (null removes one) by the core onto the profile as
 * it stands when the user is written, so concurrent updates of different keys all stay; the result is
 * checked by the core.
 */
export async function updateTypedUser(
  db: Db,
  actor: Actor,
  user: UserWithOrganization,
  input: UpdateTypedUserInput,
): Promise<UserWithOrganization> {
  const { profile: changes, ...rest } = input;
  return updateUser(db, user.id, rest, user.organizationId, actor, changes);
}

/** Deletes a user of a type. */
export async function deleteTypedUser(db: Db, user: UserWithOrganization, actor: Actor): Promise<void> {
  await deleteUser(db, user.id, user.organizationId, actor);
}

/** One user of a type, or undefined (also when the id names a user of another type). */
export async function findTypedUser(
  db: DbOrTx,
  type: UserType,
  id: string,
  organizationId?: string,
): Promise<UserWithOrganization | undefined> {
  const user = await findUserById(db, id, organizationId);
  return user && isOfType(user, type) ? user : undefined;
}

// --- templates

interface TypeTemplate {
  code: string;
  plural: string;
  label: string;
  schema: Record<string, unknown>;
}

const date = { type: 'string', format: 'date' };
const text = (maxLength = 200) => ({ type: 'string', maxLength });

/** Built-in sets of types for `gatehouse setup --template`. */
export const TEMPLATES: Record<string, TypeTemplate[]> = {
  // Seed 001: students, staff and admin HODs of a school.
  school: [
    {
      code: 'student',
      plural: 'students',
      label: 'Student',
      schema: {
        type: 'object',
        properties: {
          student_id: text(64),
          grade: { type: 'integer', minimum: 0, maximum: 20 },
          course: text(),
          session_year: { type: 'string', pattern: '^\\d{4}(-\\d{4})?$' },
          gender: { type: 'string', enum: ['female', 'male', 'other', 'unspecified'] },
          date_of_birth: date,
          address: text(500),
          phone: text(32),
          guardian_name: text(),
          guardian_phone: text(32),
          enrollment_date: date,
        },
      },
    },
    {
      code: 'staff',
      plural: 'staff',
      label: 'Staff',
      schema: {
        type: 'object',
        properties: {
          employee_id: text(64),
          department: text(),
          position: text(),
          hire_date: date,
          gender: { type: 'string', enum: ['female', 'male', 'other', 'unspecified'] },
          address: text(500),
          phone: text(32),
          qualification: text(),
        },
      },
    },
    {
      code: 'admin',
      plural: 'admins',
      label: 'Admin HOD',
      schema: {
        type: 'object',
        properties: {
          employee_id: text(64),
          department: text(),
          office: text(),
          phone: text(32),
          address: text(500),
        },
      },
    },
  ],
};

export interface TemplateResult {
  created: string[];
  unchanged: string[];
}

/**
 * Creates a template's global user types that do not exist yet (by code); existing ones are left
 * as they are, so running it again changes nothing.
 */
export async function applyUserTypeTemplate(db: Db, template: string): Promise<TemplateResult> {
  const types = TEMPLATES[template];
  if (!types) {
    throw userTypeErrors.invalidFilter('template', `Unknown template; known: ${Object.keys(TEMPLATES).join(', ')}.`);
  }
  return db.transaction(async (tx) => {
    const result: TemplateResult = { created: [], unchanged: [] };
    for (const t of types) {
      const [inserted] = await tx
        .insert(userTypes)
        .values({ organizationId: null, ...t })
        .onConflictDoNothing()
        .returning();
      // A conflict on code or plural: a global type of that name already exists and is kept as it is.
      if (inserted) await userTypeAudit(tx, 'created', inserted, { plural: t.plural, label: t.label, template });
      (inserted ? result.created : result.unchanged).push(t.code);
    }
    return result;
  });
}
