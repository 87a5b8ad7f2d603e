import type { OAuth2Settings } from './integrations.table.js';

/**
 * The origins (scheme, host, port) an integration's secrets are sent to. `base_url` receives the
 * credentials and the OAuth2 access token; the token endpoint receives the client secret and the
 * refresh token; the authorization endpoint is where users grant what the stored tokens carry.
 * Without an explicit token or authorization URL, discovery at the issuer names them, so the
 * issuer's origin stands for them.
 */
type SecretDestination = 'base_url' | 'oauth2.token_endpoint' | 'oauth2.authorization_endpoint';

export interface OriginChange {
  field: SecretDestination;
  from: string | null;
  to: string | null;
}

const originOf = (url: string | undefined) => (url ? new URL(url).origin : null);

function destinationsOf(baseUrl: string, oauth2: OAuth2Settings): Record<SecretDestination, string | null> {
  const issuer = originOf(oauth2.issuer);
  return {
    base_url: originOf(baseUrl),
    'oauth2.token_endpoint': originOf(oauth2.token_url) ?? issuer,
    'oauth2.authorization_endpoint': originOf(oauth2.authorization_url) ?? issuer,
  };
}

/**
 * Which destinations of secrets an update moves to another origin. A change of path keeps the
 * origin, and so the secrets; any other change means stored secrets would go to a host their owner
 * never named.
 */
export function originChanges(
  before: { baseUrl: string; oauth2: OAuth2Settings },
  after: { baseUrl: string; oauth2: OAuth2Settings },
): OriginChange[] {
  const was = destinationsOf(before.baseUrl, before.oauth2);
  const will = destinationsOf(after.baseUrl, after.oauth2);
  return (Object.keys(was) as SecretDestination[])
    .filter((field) => was[field] !== will[field])
    .map((field) => ({ field, from: was[field], to: will[field] }));
}
