import { AppError, commonErrors } from '../../platform/http/errors.js';

export const accountErrors = {
  registrationClosed: (code: string) =>
    new AppError(403, 'registration_closed', `Organization "${code}" does not accept self-registration.`),
  /** One answer for unknown, used and expired tokens: which one it was helps nobody but a guesser. */
  invalidToken: () =>
    new AppError(400, 'invalid_token', 'The link is not valid: it was already used, has expired, or never existed.', {
      errors: [{ field: 'token', message: 'Not a valid, unused, unexpired token.' }],
    }),
  confirmationDiffers: (field: string) => commonErrors.validation([{ field, message: 'Does not match `password`.' }]),
  wrongPassword: (field = 'old_password') =>
    new AppError(400, 'wrong_password', 'The current password is not correct.', {
      errors: [{ field, message: 'The current password is not correct.' }],
    }),
  samePassword: () =>
    new AppError(400, 'password_too_weak', 'The new password must differ from the current one.', {
      errors: [{ field: 'new_password', message: 'The new password must differ from the current one.' }],
    }),
  alreadyHasPassword: () =>
    new AppError(409, 'user_has_password', 'This user already has a password; they can use the password reset.'),
  userNotActive: (status: string) =>
    new AppError(409, 'user_not_active', `This user is ${status}; only active users can be invited.`),
};
