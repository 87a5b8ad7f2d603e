import { AppError, commonErrors, registerUniqueConstraint } from '../../platform/http/errors.js';
import type { OriginChange } from './secret-destinations.js';

registerUniqueConstraint('integrations_org_name_key', 'name', 'integration_name_taken');

export const integrationErrors = {
  notFound: (id: string) => new AppError(404, 'integration_not_found', `Integration ${id} was not found.`),
  organizationNotFound: (code: string) =>
    new AppError(400, 'organization_not_found', `Organization "${code}" does not exist.`, {
      errors: [{ field: 'organization', message: 'No organization has this code.' }],
    }),
  organizationRequired: () =>
    commonErrors.validation([{ field: 'organization', message: 'Name the organization the integration belongs to.' }]),
  otherOrganization: () =>
    new AppError(403, 'permission_denied', 'You may register integrations only for your own organization.', {
      errors: [{ field: 'organization', message: 'Not your organization.' }],
    }),
  invalidUrl: (field: string, message: string) => commonErrors.validation([{ field, message }]),
  apiKeyHeaderControlsRequest: (name: string) =>
    commonErrors.validation([
      {
        field: 'api_key_header',
        message: `"${name}" controls the request itself (framing, routing or a proxy); name a header that only carries the key.`,
      },
    ]),
  credentialsNotSendable: (errors: { field: string; message: string }[]) => commonErrors.validation(errors),
  oauth2ClientIdRequired: () =>
    commonErrors.validation([
      {
        field: 'oauth2.client_id',
        message: 'Required for auth_type `oauth2`; the `oauth2` object given replaces the stored one whole.',
      },
    ]),
  credentialsRequiredForNewOrigin: (moves: OriginChange[]) =>
    new AppError(
      400,
      'integration_credentials_required',
      `The integration moves to another host (${moves.map((m) => `${m.field}: ${m.from ?? 'none'} → ${m.to ?? 'none'}`).join(', ')}); ` +
        'stored credentials are not sent to a new host unless they are given again.',
      {
        errors: [
          {
            field: 'credentials',
            message:
              'Give the credentials for the new host in the same request; they replace the stored set (`{}` keeps none).',
          },
        ],
      },
    ),
  oauth2TokenUrlRequired: () =>
    commonErrors.validation([
      {
        field: 'oauth2.token_url',
        message: 'Required for auth_type `oauth2` unless `oauth2.issuer` is given to discover it from.',
      },
    ]),
  credentialsUnreadable: (id: string, needed: readonly string[]) =>
    new AppError(
      409,
      'integration_credentials_unreadable',
      `The stored credentials of integration ${id} cannot be opened (sealed under a master key this server does not hold), ` +
        'so they cannot be changed in part; give them whole.',
      {
        errors: [
          {
            field: 'credentials',
            message:
              needed.length > 0
                ? `Give every credential the auth type sends (${needed.join(', ')}) as a value; they replace the stored set.`
                : 'Give the credentials as values; they replace the stored set.',
          },
        ],
      },
    ),
  changedDuringCheck: (id: string) =>
    new AppError(
      409,
      'integration_changed',
      `Integration ${id} changed its address, authentication or timeout while it was checked; the result was discarded. Check it again.`,
    ),
  inactive: (id: string) =>
    new AppError(409, 'integration_inactive', `Integration ${id} is deactivated; activate it before calling it.`),
  blockedAddress: (host: string) =>
    new AppError(
      422,
      'integration_address_blocked',
      `The host ${host} resolves to a link-local, unspecified, multicast or cloud metadata address, which integrations may not call.`,
    ),
  notOAuth2: (id: string) =>
    new AppError(409, 'integration_not_oauth2', `Integration ${id} does not use auth_type "oauth2".`),
  oauth2NotConfigured: (field: string) =>
    new AppError(409, 'oauth2_not_configured', `The integration's OAuth2 settings lack ${field}.`, {
      errors: [{ field: `oauth2.${field}`, message: 'Required for this OAuth2 grant.' }],
    }),
  oauth2StateInvalid: () =>
    new AppError(400, 'oauth2_state_invalid', 'The OAuth2 state is unknown, used or expired.', {
      errors: [{ field: 'state', message: 'Start the authorization again.' }],
    }),
  oauth2Denied: (reason: string) =>
    new AppError(400, 'oauth2_authorization_denied', `The provider did not grant access: ${reason}.`),
  oauth2Refused: (detail: string) => new AppError(502, 'oauth2_exchange_failed', detail),
  oauth2TimedOut: (timeoutMs: number, cause: unknown) =>
    new AppError(502, 'oauth2_exchange_failed', `The OAuth2 provider gave no answer within ${timeoutMs} ms.`, {
      cause,
    }),
  oauth2NotAuthorized: (id: string) =>
    new AppError(409, 'oauth2_not_authorized', `Integration ${id} holds no OAuth2 token; authorize it first.`),
};
