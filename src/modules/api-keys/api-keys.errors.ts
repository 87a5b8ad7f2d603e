import { AppError, commonErrors } from '../../platform/http/errors.js';

export const apiKeyErrors = {
  notFound: (id: string) => new AppError(404, 'api_key_not_found', `API key ${id} was not found.`),
  organizationNotFound: (code: string) =>
    new AppError(400, 'organization_not_found', `Organization "${code}" does not exist.`, {
      errors: [{ field: 'organization', message: 'No organization has this code.' }],
    }),
  organizationRequired: () =>
    commonErrors.validation([
      { field: 'organization', message: 'Name an organization, or null for a platform-wide key.' },
    ]),
  otherOrganization: () =>
    new AppError(403, 'permission_denied', 'You may create API keys only for your own organization.', {
      errors: [{ field: 'organization', message: 'Not your organization.' }],
    }),
  platformKeyForbidden: () =>
    new AppError(403, 'permission_denied', 'Only superusers may create platform-wide API keys.', {
      errors: [{ field: 'organization', message: 'A platform-wide key (null) needs a superuser.' }],
    }),
  /** Scopes whose permissions the key's creator lacks: a key reaches no further than its creator. */
  scopesAboveCreator: (missing: ReadonlyMap<string, readonly string[]>) => {
    const detail = [...missing].map(([scope, perms]) => `"${scope}" needs ${perms.join(', ')}`).join('; ');
    return new AppError(403, 'delegation_ceiling', `You do not hold what these scopes need: ${detail}.`, {
      errors: [{ field: 'scopes', message: `You do not hold what these scopes need: ${detail}.` }],
    });
  },
  /** A key made by someone beyond the caller's reach: a superuser, the operator, or a more powerful user. */
  creatorBeyondReach: (detail: string) =>
    new AppError(403, 'delegation_ceiling', detail, { errors: [{ field: 'api_key', message: detail }] }),
  /**
   * A key reaching past its creator's organization (platform-wide, or another organization's) whose
   * creator is no longer a superuser: 401 like a deactivated creator's key, since the key as a
   * credential does not stand; it stands again if they are made a superuser again.
   */
  creatorNoLongerSuperuser: () => {
    const detail =
      "This API key reaches beyond its creator's organization, and its creator is no longer a superuser; " +
      'it works again if they are made one again, and a superuser may revoke it.';
    return new AppError(401, 'not_authenticated', detail, {
      errors: [{ field: 'api_key', message: detail }],
      headers: { 'www-authenticate': 'Bearer' },
    });
  },
  unknownScope: (scope: string) => commonErrors.validation([{ field: 'scopes', message: `Unknown scope "${scope}".` }]),
  noScopes: () => commonErrors.validation([{ field: 'scopes', message: 'Give at least one scope.' }]),
  // SCIM acts within one organization: a platform-wide key with this scope could never be used.
  scimNeedsOrganization: () =>
    commonErrors.validation([
      { field: 'organization', message: 'A key with the scim scope acts within one organization: name it.' },
    ]),
  expiryInPast: () => commonErrors.validation([{ field: 'expires_at', message: 'Must be in the future.' }]),
  revoked: (id: string) => new AppError(409, 'api_key_revoked', `API key ${id} is revoked and cannot be rotated.`),
  expired: (id: string) => new AppError(409, 'api_key_expired', `API key ${id} has expired and cannot be rotated.`),
};
