import { AppError, commonErrors } from '../../platform/http/errors.js';

export const authErrors = {
  /** The one answer for an unknown account and a wrong password alike (no account enumeration). */
  invalidCredentials: () =>
    new AppError(401, 'invalid_credentials', 'No active account found with the given credentials.'),
  organizationRequired: () =>
    new AppError(
      400,
      'organization_required',
      'These credentials match accounts in several organizations; name the organization.',
      { errors: [{ field: 'organization', message: 'Name the organization (its code) to log in to.' }] },
    ),
  /**
   * Only after the password matched: the person knows the account, so saying why is safe and helpful.
   * 401 as for any login that yields no token (seed 001's token endpoint answers an inactive account
   * so), told apart by its code.
   */
  accountInactive: (detail: string) => new AppError(401, 'account_inactive', detail),
  /** The organization requires a verified address; only after the password matched. */
  emailNotVerified: () =>
    new AppError(
      403,
      'email_not_verified',
      'Confirm your email address (see the link we mailed you) before signing in.',
    ),
  identifierRequired: () =>
    commonErrors.validation(
      [{ field: 'email', message: 'Provide an email or a username.' }],
      'Provide an email or a username.',
    ),
  invalidRefreshToken: () =>
    new AppError(401, 'invalid_refresh_token', 'The refresh token is not valid or has expired.', {
      errors: [{ field: 'refresh', message: 'The refresh token is not valid or has expired.' }],
    }),
  logoutNeedsCredential: () =>
    commonErrors.validation([{ field: 'refresh', message: 'This field is required without a Bearer token.' }]),
};
