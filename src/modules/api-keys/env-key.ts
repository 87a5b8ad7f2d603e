/** The actor id of the key configured as PROVISIONING_API_KEY: it has no row in `api_keys`. */
export const ENV_API_KEY_ID = 'env:PROVISIONING_API_KEY';

/** The id of a key's row, for references; null for the environment's key, which has no row. */
export function apiKeyRowId(apiKeyId: string): string | null {
  return apiKeyId === ENV_API_KEY_ID ? null : apiKeyId;
}
