import { AppError, commonErrors, registerUniqueConstraint } from '../../platform/http/errors.js';

registerUniqueConstraint('users_org_email_key', 'email', 'email_taken');
registerUniqueConstraint('users_org_username_key', 'username', 'username_taken');
registerUniqueConstraint('users_external_id_key', 'external_id', 'external_id_taken');
// A parallel write that took a SCIM externalId between the core's check and its write still answers
// 409, with the code the core gives the same clash.
registerUniqueConstraint('users_org_scim_external_id_key', 'scim_external_id', 'scim_external_id_taken');

export const userErrors = {
  notFound: (id: string) => new AppError(404, 'user_not_found', `User ${id} was not found.`),
  organizationNotFound: (code: string) =>
    new AppError(400, 'organization_not_found', `Organization "${code}" does not exist.`, {
      errors: [{ field: 'organization', message: 'No organization has this code.' }],
    }),
  activeContradictsStatus: (status: string) =>
    commonErrors.validation(
      [{ field: 'is_active', message: `Contradicts status "${status}"; give one of the two.` }],
      `is_active contradicts status "${status}".`,
    ),
  otherOrganization: () =>
    new AppError(403, 'organization_forbidden', 'Only a superuser may create users in another organization.', {
      errors: [{ field: 'organization', message: 'Name your own organization or leave it out.' }],
    }),
};
