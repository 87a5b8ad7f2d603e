import { AppError, commonErrors, registerUniqueConstraint } from '../../platform/http/errors.js';

registerUniqueConstraint('modules_code_key', 'code', 'module_code_taken');
registerUniqueConstraint('permissions_code_key', 'code', 'permission_code_taken');
registerUniqueConstraint('roles_global_code_key', 'code', 'role_code_taken');
registerUniqueConstraint('roles_org_code_key', 'code', 'role_code_taken');
registerUniqueConstraint('user_roles_one_primary_key', 'is_primary', 'primary_role_conflict');

export const rbacErrors = {
  moduleNotFound: (ref: string) => new AppError(404, 'module_not_found', `Module ${ref} was not found.`),
  permissionNotFound: (ref: string) => new AppError(404, 'permission_not_found', `Permission ${ref} was not found.`),
  roleNotFound: (ref: string) => new AppError(404, 'role_not_found', `Role ${ref} was not found.`),
  otherOrganization: () =>
    new AppError(403, 'other_organization', 'You may act only within your own organization.', {
      errors: [{ field: 'organization', message: 'Name your own organization, or leave it out.' }],
    }),
  roleAlreadyAssigned: (code: string) =>
    new AppError(409, 'role_already_assigned', `The user already holds role "${code}".`, {
      errors: [{ field: 'role', message: 'Already held; send is_primary to change which role is primary.' }],
    }),
  /** A code the unique indexes leave free but that stays with a built-in role (assertRoleCodeFree). */
  roleCodeTaken: (code: string, detail: string) =>
    new AppError(409, 'role_code_taken', detail, {
      errors: [{ field: 'code', message: `"${code}" is taken.` }],
    }),
  /** Exactly one of a user's roles is primary: the only one cannot be left unmarked. */
  onlyRoleIsPrimary: () =>
    commonErrors.validation(
      [{ field: 'is_primary', message: 'A user’s only role is their primary one; give them another role first.' }],
      'A user’s only role is their primary one.',
    ),
  assignmentNotFound: () => new AppError(404, 'role_assignment_not_found', 'The user does not hold this role.'),
  /** Codes in a body that name nothing; the field says which list. */
  unknownCodes: (field: string, codes: string[]) =>
    new AppError(400, 'unknown_reference', `Unknown ${field}: ${codes.join(', ')}.`, {
      errors: [{ field, message: `Unknown: ${codes.join(', ')}.` }],
    }),
  aboveCeiling: (field: string, detail: string) =>
    new AppError(403, 'delegation_ceiling', detail, { errors: [{ field, message: detail }] }),
  aboveKeyCeiling: (userId: string) =>
    new AppError(403, 'delegation_ceiling', `User ${userId} holds a role or grants beyond the key's creator's.`, {
      errors: [{ field: 'user', message: "Holds a role or grants beyond the key's creator's." }],
    }),
  superuserTarget: () =>
    new AppError(403, 'superuser_protected', 'Only a superuser may change a superuser or grant superuser status.'),
  staffTarget: () =>
    new AppError(403, 'staff_protected', 'Only a staff member or a superuser may change is_staff.', {
      errors: [{ field: 'is_staff', message: 'Only a staff member or a superuser may change it.' }],
    }),
  ownFlags: () =>
    new AppError(403, 'own_flags', 'Nobody may change their own is_staff.', {
      errors: [{ field: 'is_staff', message: 'Nobody may change their own.' }],
    }),
  platformObject: (what: string) =>
    new AppError(403, 'platform_object', `${what} belongs to the whole installation; only a superuser may change it.`),
  builtinRole: (code: string) =>
    new AppError(409, 'builtin_role', `Role "${code}" is built in and cannot be deleted or recoded.`),
  builtinRoleLevel: (code: string) =>
    new AppError(409, 'builtin_role', `Role "${code}" is built in and its level cannot be changed.`, {
      errors: [{ field: 'level', message: 'Fixed for built-in roles.' }],
    }),
  ownRoles: () => new AppError(403, 'own_roles', 'Nobody may change their own role assignments.'),
  ownAccount: () =>
    new AppError(
      403,
      'own_account',
      'Nobody may deactivate, suspend, lock or delete their own account; another administrator can.',
    ),
  builtinCatalog: () =>
    new AppError(
      409,
      'builtin_catalog',
      'Gatehouse’s own module and its permissions are fixed; they guard its routes.',
    ),
  moduleInUse: (code: string) =>
    new AppError(409, 'module_in_use', `Module "${code}" still has permissions; delete or move them first.`),
  moduleGranted: (code: string, roles: number) =>
    new AppError(
      409,
      'module_in_use',
      `Module "${code}" is still granted by ${roles} ${roles === 1 ? 'role' : 'roles'}; take it out of them first.`,
    ),
  permissionInUse: (code: string, roles: number) =>
    new AppError(
      409,
      'permission_in_use',
      `Permission "${code}" is still granted by ${roles} ${roles === 1 ? 'role' : 'roles'}; take it out of them first.`,
    ),
};
