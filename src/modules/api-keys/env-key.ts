import type { Actor } from '../../platform/http/auth.js';

/** The actor id of the key configured as PROVISIONING_API_KEY: it has no row in `api_keys`. */
export const ENV_API_KEY_ID = 'env:PROVISIONING_API_KEY';

/**
 * Who calls with PROVISIONING_API_KEY: a platform-wide key for the provisioning API alone (seed 000's
 * services share it, so it carries no scope they do not use), the operator's, so without a ceiling.
 */
export const ENV_KEY_ACTOR: Actor = {
  kind: 'api_key',
  apiKeyId: ENV_API_KEY_ID,
  organizationId: null,
  scopes: ['provisioning'],
  ceilingUserId: null,
};

/** The actor id of `gatehouse` commands that write as a platform operator (`import`); no row either. */
export const COMMAND_LINE_KEY_ID = 'cli:gatehouse';

/** The id of a key's row, for references; null for the keys above, which have none (events name them instead). */
export function apiKeyRowId(apiKeyId: string): string | null {
  return apiKeyId === ENV_API_KEY_ID || apiKeyId === COMMAND_LINE_KEY_ID ? null : apiKeyId;
}
