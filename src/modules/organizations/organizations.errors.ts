import { AppError, commonErrors, registerUniqueConstraint } from '../../platform/http/errors.js';

registerUniqueConstraint('organizations_code_key', 'code', 'organization_code_taken');

export const organizationErrors = {
  notFound: (ref: string) => new AppError(404, 'organization_not_found', `Organization ${ref} was not found.`),
  codeTaken: (code: string) =>
    new AppError(409, 'organization_code_taken', `An organization with code "${code}" already exists.`, {
      errors: [{ field: 'code', message: 'This code is taken.' }],
    }),
  /** A write of users of a deactivated organization: only taking them out of use, or deleting them, goes on. */
  inactive: (code: string) =>
    new AppError(
      409,
      'organization_inactive',
      `Organization "${code}" is deactivated: its users are neither created, changed nor mailed links until it is reactivated (they may still be deactivated or deleted).`,
      { errors: [{ field: 'organization', message: `"${code}" is deactivated.` }] },
    ),
  /** Creating, deleting, activating and deactivating organizations are acts on the whole installation. */
  superuserOnly: (act: string) =>
    new AppError(
      403,
      'platform_object',
      `Only a superuser may ${act}; organizations belong to the whole installation.`,
    ),
  settingsTooLarge: (bytes: number, limit: number) =>
    commonErrors.validation(
      [{ field: 'settings', message: `Must be at most ${limit} bytes as JSON; these are ${bytes}.` }],
      `The settings are ${bytes} bytes as JSON; an organization's settings hold at most ${limit}.`,
    ),
  hasUsers: () =>
    new AppError(
      409,
      'organization_not_empty',
      'The organization still has users; deactivate it or remove them first.',
    ),
};
