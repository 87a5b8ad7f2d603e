import { AppError, commonErrors } from '../../platform/http/errors.js';

/** What a login answers instead of tokens when the account has a second factor. */
export interface MfaChallengeView {
  mfa_required: true;
  mfa_token: string;
  methods: ['totp'];
  expires_in: number;
}

/**
 * Thrown by the password step when a second factor is needed. The token endpoints turn it into
 * their 200 `{mfa_required, mfa_token, methods}` answer; any other caller of the password login
 * (one that does not know about MFA) answers 401 mfa_required, so it can never skip the factor.
 */
export class MfaRequiredError extends AppError {
  readonly challenge: MfaChallengeView;
  constructor(challenge: MfaChallengeView) {
    super(401, 'mfa_required', 'This account needs a second factor; finish at POST /api/v1/users/login/mfa/.');
    this.challenge = challenge;
  }
}

export const mfaErrors = {
  invalidCode: () =>
    new AppError(401, 'invalid_mfa_code', 'The code is not valid.', {
      errors: [{ field: 'code', message: 'The code is not valid.' }],
    }),
  invalidMfaToken: () =>
    new AppError(401, 'invalid_mfa_token', 'The MFA token is not valid, was used, or has expired; log in again.', {
      errors: [{ field: 'mfa_token', message: 'Log in again to get a new one.' }],
    }),
  notEnrolled: () => new AppError(409, 'mfa_not_enrolled', 'There is no TOTP authenticator to confirm or disable.'),
  alreadyEnabled: () =>
    new AppError(409, 'mfa_already_enabled', 'TOTP is already enabled; disable it first to enrol a new authenticator.'),
  requiredByOrganization: () =>
    new AppError(
      403,
      'mfa_required_by_organization',
      'This organization requires two-factor authentication (settings.require_mfa): the authenticator cannot be ' +
        'turned off. An administrator can reset it, after which the next login enrols a new one.',
    ),
  /**
   * The password matched, but the organization requires a second factor the account lacks: the
   * problem carries a single-use `mfa_token` to enrol one with and then log in (no tokens before).
   */
  enrolmentRequired: (mfaToken: string, expiresIn: number) =>
    new AppError(
      403,
      'mfa_enrollment_required',
      'This organization requires two-factor authentication and the account has none: enrol an authenticator ' +
        'with the mfa_token at POST /api/v1/users/login/mfa/enrol/, then log in with its first code at ' +
        'POST /api/v1/users/login/mfa/.',
      { extensions: { mfa_token: mfaToken, methods: ['totp'], expires_in: expiresIn } },
    ),
  userNotFound: (id: string) => commonErrors.notFound(`User ${id}`),
};
