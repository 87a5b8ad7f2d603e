import { AppError, commonErrors } from '../../platform/http/errors.js';
import { GRANT_TYPES } from './auth.schemas.js';

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
  /** `field` is what the route calls the token: `refresh`, or OAuth2's `refresh_token` on /api/token/. */
  invalidRefreshToken: (field = 'refresh') =>
    new AppError(401, 'invalid_refresh_token', 'The refresh token is not valid or has expired.', {
      errors: [{ field, message: 'The refresh token is not valid or has expired.' }],
    }),
  /** RFC 6749 §5.2's `unsupported_grant_type`, as the problem's code. */
  unsupportedGrantType: () =>
    new AppError(400, 'unsupported_grant_type', `This grant type is not supported; use ${GRANT_TYPES.join(' or ')}.`, {
      errors: [{ field: 'grant_type', message: `Must be one of ${GRANT_TYPES.join(', ')}.` }],
    }),
  logoutNeedsCredential: () =>
    commonErrors.validation([{ field: 'refresh', message: 'This field is required without a Bearer token.' }]),
  /** A refresh token may be an old one found somewhere: only a working Bearer token names whose sessions to end. */
  logoutAllNeedsBearer: () =>
    commonErrors.validation([{ field: 'all', message: 'Ending every session needs the Bearer token of one of them.' }]),
};
