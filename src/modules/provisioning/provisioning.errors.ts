import { AppError, commonErrors, type FieldError } from '../../platform/http/errors.js';

/** Refusals of the provisioning core; each is either thrown (single calls) or one item's error (bulk). */
export const provisioningErrors = {
  invalid: (errors: FieldError[]) =>
    new AppError(400, 'validation_failed', errors.map((e) => `${e.field}: ${e.message}`).join('; '), { errors }),
  organizationRequired: () =>
    new AppError(400, 'organization_required', 'Name the organization (its code) of a new user.', {
      errors: [{ field: 'organization', message: 'This field is required for a platform-wide caller.' }],
    }),
  otherOrganization: (code: string) =>
    new AppError(403, 'organization_forbidden', `This API key may not provision users into organization "${code}".`, {
      errors: [{ field: 'organization', message: "Name the key's own organization." }],
    }),
  /** A client other than a scoped key's own, existing or not: one answer, so nothing is told. */
  clientNotFound: (code: string) =>
    new AppError(404, 'client_not_found', `Client "${code}" was not found.`, {
      errors: [{ field: 'client_id', message: "Name the key's own organization." }],
    }),
  /** As the credential itself is refused once its organization is inactive (a key's state, a session's end). */
  organizationInactive: () =>
    commonErrors.unauthenticated('The organization of these credentials has been deactivated.'),
  userNotFound: (ref: string) => new AppError(404, 'user_not_found', `User ${ref} was not found.`),
  organizationMismatch: (ref: string, code: string) =>
    new AppError(
      409,
      'organization_mismatch',
      `User ${ref} belongs to organization "${code}"; provisioning does not move users between organizations.`,
      { errors: [{ field: 'organization', message: `The user belongs to "${code}".` }] },
    ),
  duplicateInRequest: (ref: string, firstIndex: number) =>
    new AppError(409, 'duplicate_in_request', `User ${ref} already appears at index ${firstIndex} of this request.`),
  taken: (field: string, value: string) =>
    new AppError(409, `${field}_taken`, `Another user already has ${field} "${value}".`, {
      errors: [{ field, message: 'Another user already has this value.' }],
    }),
  /** `attributes.scim` is the identity provider's, written through SCIM only. */
  scimAttributesReadOnly: () =>
    new AppError(400, 'validation_failed', 'attributes.scim cannot be changed: it is written through SCIM only.', {
      errors: [{ field: 'attributes.scim', message: 'This field is written through SCIM only; leave it out.' }],
    }),
  tooManyItems: (max: number) =>
    new AppError(413, 'too_many_items', `A bulk request takes at most ${max} items.`, {
      errors: [{ field: 'body', message: `At most ${max} items.` }],
    }),
};
