import { AppError, commonErrors, type FieldError, registerUniqueConstraint } from '../../platform/http/errors.js';

registerUniqueConstraint('user_types_org_code_key', 'code', 'user_type_code_taken');
registerUniqueConstraint('user_types_org_plural_key', 'plural', 'user_type_plural_taken');

export const userTypeErrors = {
  notFound: (ref: string) => new AppError(404, 'user_type_not_found', `User type "${ref}" was not found.`),
  userNotFound: (id: string) => new AppError(404, 'user_not_found', `User ${id} was not found.`),
  // GET /api/v1/users/<segment>/ is a user by id or the users of a type: a segment that is neither
  // answers as the users module does for an unknown id, its detail naming both readings.
  userOrTypeNotFound: (segment: string) =>
    new AppError(404, 'user_not_found', `No user has the id "${segment}", and no user type the plural "${segment}".`),
  reservedPlural: (plural: string) =>
    commonErrors.validation(
      [{ field: 'plural', message: `"${plural}" is a reserved path under /api/v1/users/.` }],
      `"${plural}" cannot be a plural: it is a reserved path.`,
    ),
  invalidSchema: (message: string, field = 'schema') =>
    commonErrors.validation([{ field, message: `Not a usable JSON Schema: ${message}` }]),
  /** A type stored before its schema's rules were tightened: the write is fine, the type needs editing. */
  storedSchemaUnusable: (code: string, reason: string) =>
    new AppError(
      409,
      'user_type_schema_unusable',
      `The schema of user type "${code}" can no longer be used (${reason}); edit the type's schema to write its users.`,
    ),
  // Another organization's type answers the same as a type that does not exist.
  unknownType: (code: string) =>
    commonErrors.validation(
      [{ field: 'user_type', message: `No user type "${code}" in the user's organization.` }],
      `User type "${code}" does not exist in the user's organization.`,
    ),
  invalidProfile: (errors: FieldError[]) =>
    commonErrors.validation(errors, 'The profile does not match its user type.'),
  organizationNotFound: (code: string) =>
    new AppError(400, 'organization_not_found', `Organization "${code}" does not exist.`, {
      errors: [{ field: 'organization', message: 'No organization has this code.' }],
    }),
  inUse: (code: string) =>
    new AppError(
      409,
      'user_type_in_use',
      `User type "${code}" still has users; give them another type (or none) or delete them first.`,
    ),
  invalidFilter: (field: string, message: string) => commonErrors.validation([{ field, message }]),
  otherOrganization: () =>
    new AppError(403, 'organization_forbidden', 'Only a superuser may define user types for another organization.', {
      errors: [{ field: 'organization', message: 'Name your own organization.' }],
    }),
};
