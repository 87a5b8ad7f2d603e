import { and, eq, lt } from 'drizzle-orm';
import * as oauth from 'oauth4webapi';
import type { Envelope } from '../../platform/crypto/envelope.js';
import { sha256Hex } from '../../platform/crypto/tokens.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { recordAudit } from '../activity/audit.js';
import { codeVerifierContext, oauth2TokenContext, openCredentials } from './credentials.js';
import { integrationErrors } from './integrations.errors.js';
import { findOAuth2Token, findOrganizationIntegration } from './integrations.queries.js';
import {
  type Integration,
  integrationOAuth2States,
  integrationOAuth2Tokens,
  type OAuth2Settings,
} from './integrations.table.js';
import { checkHostAllowed } from './outbound-http.js';

/** A pending authorization may be completed within this long. */
const STATE_TTL_MS = 10 * 60_000;
/** A token this close to expiry is refreshed before use rather than sent and refused. */
const REFRESH_MARGIN_MS = 60_000;
const OAUTH_TIMEOUT_MS = 15_000;

/** The callback every integration's authorization returns to (PUBLIC_URL-based). */
export const callbackPath = '/api/v1/integrations/oauth2/callback';

/**
 * Token-endpoint and discovery calls go through the same address rules as every integration call,
 * and never follow redirects.
 */
const guardedFetch: typeof fetch = async (input, init) => {
  const url = new URL(input instanceof Request ? input.url : input.toString());
  await checkHostAllowed(url);
  return fetch(input, { ...init, redirect: 'manual', signal: AbortSignal.timeout(OAUTH_TIMEOUT_MS) });
};

function requestOptions(url: string) {
  // Plain http is accepted where the operator configured it (a provider on the local network), as for base_url.
  return { [oauth.customFetch]: guardedFetch, [oauth.allowInsecureRequests]: url.startsWith('http:') };
}

interface Endpoints {
  as: oauth.AuthorizationServer;
  client: oauth.Client;
  clientAuth: oauth.ClientAuth;
  settings: OAuth2Settings;
}

/** The authorization server and client of an integration, from its settings (discovery when only the issuer is given). */
async function endpointsOf(envelope: Envelope, integration: Integration): Promise<Endpoints> {
  if (integration.authType !== 'oauth2') throw integrationErrors.notOAuth2(integration.id);
  const settings = integration.oauth2;
  if (!settings.client_id) throw integrationErrors.oauth2NotConfigured('client_id');
  let as: oauth.AuthorizationServer;
  if (settings.issuer && (!settings.token_url || !settings.authorization_url)) {
    const issuer = new URL(settings.issuer);
    try {
      const response = await oauth.discoveryRequest(issuer, {
        ...requestOptions(settings.issuer),
        algorithm: 'oauth2',
      });
      as = await oauth.processDiscoveryResponse(issuer, response);
    } catch (err) {
      throw integrationErrors.oauth2Refused(`Discovery at ${settings.issuer} failed: ${(err as Error).message}`);
    }
  } else {
    if (!settings.token_url) throw integrationErrors.oauth2NotConfigured('token_url');
    // Without a configured issuer, an `iss` in the authorization response cannot be checked and is refused.
    as = { issuer: settings.issuer ?? new URL(settings.token_url).origin };
  }
  as = {
    ...as,
    ...(settings.authorization_url ? { authorization_endpoint: settings.authorization_url } : {}),
    ...(settings.token_url ? { token_endpoint: settings.token_url } : {}),
  };
  const secret = openCredentials(envelope, integration.id, integration.credentialsSealed).client_secret;
  return {
    as,
    client: { client_id: settings.client_id },
    clientAuth: secret ? oauth.ClientSecretBasic(secret) : oauth.None(),
    settings,
  };
}

/**
 * Starts the authorization-code flow with PKCE (RFC 7636, S256): stores the state's hash and the
 * sealed code verifier, bound to the integration and expiring, and returns the URL to send the
 * user to.
 */
export async function startAuthorization(
  db: Db,
  envelope: Envelope,
  integration: Integration,
  input: { redirectUri: string; userId: string | null },
): Promise<{ authorizationUrl: string; expiresAt: Date }> {
  const { as, client, settings } = await endpointsOf(envelope, integration);
  if (!as.authorization_endpoint) throw integrationErrors.oauth2NotConfigured('authorization_url');
  const state = oauth.generateRandomState();
  const verifier = oauth.generateRandomCodeVerifier();
  const stateHash = sha256Hex(state);
  const expiresAt = new Date(Date.now() + STATE_TTL_MS);
  await db.transaction(async (tx) => {
    // Expired authorizations of this integration are cleared as new ones start.
    await tx
      .delete(integrationOAuth2States)
      .where(
        and(
          eq(integrationOAuth2States.integrationId, integration.id),
          lt(integrationOAuth2States.expiresAt, new Date()),
        ),
      );
    await tx.insert(integrationOAuth2States).values({
      stateHash,
      organizationId: integration.organizationId,
      integrationId: integration.id,
      codeVerifierSealed: envelope.seal(verifier, codeVerifierContext(stateHash)),
      redirectUri: input.redirectUri,
      createdBy: input.userId,
      expiresAt,
    });
  });
  const url = new URL(as.authorization_endpoint);
  url.searchParams.set('response_type', 'code');
  url.searchParams.set('client_id', client.client_id);
  url.searchParams.set('redirect_uri', input.redirectUri);
  if (settings.scope) url.searchParams.set('scope', settings.scope);
  url.searchParams.set('state', state);
  url.searchParams.set('code_challenge', await oauth.calculatePKCECodeChallenge(verifier));
  url.searchParams.set('code_challenge_method', 'S256');
  return { authorizationUrl: url.toString(), expiresAt };
}

async function storeTokens(
  db: DbOrTx,
  envelope: Envelope,
  integration: Integration,
  tokens: oauth.TokenEndpointResponse,
  keepRefreshToken: string | null,
): Promise<void> {
  const refresh = tokens.refresh_token ?? keepRefreshToken;
  const values = {
    accessTokenSealed: envelope.seal(tokens.access_token, oauth2TokenContext(integration.id, 'access')),
    refreshTokenSealed: refresh ? envelope.seal(refresh, oauth2TokenContext(integration.id, 'refresh')) : null,
    tokenType: tokens.token_type ?? 'Bearer',
    scope: tokens.scope ?? integration.oauth2.scope ?? null,
    expiresAt: typeof tokens.expires_in === 'number' ? new Date(Date.now() + tokens.expires_in * 1000) : null,
  };
  await db
    .insert(integrationOAuth2Tokens)
    .values({ organizationId: integration.organizationId, integrationId: integration.id, ...values })
    .onConflictDoUpdate({
      target: [integrationOAuth2Tokens.organizationId, integrationOAuth2Tokens.integrationId],
      set: { ...values, updatedAt: new Date() },
    });
}

/**
 * Completes an authorization: the state is consumed (used once, even when the exchange fails),
 * the code is exchanged with the PKCE verifier, and the tokens are stored sealed with their expiry
 * and scope. The state alone authorizes this step: it is random, single-use, expiring and bound to
 * one integration.
 */
export async function completeAuthorization(
  db: Db,
  envelope: Envelope,
  callbackParameters: URLSearchParams,
): Promise<{ integration: Integration; scope: string | null; expiresAt: Date | null }> {
  const state = callbackParameters.get('state');
  if (!state) throw integrationErrors.oauth2StateInvalid();
  const stateHash = sha256Hex(state);
  const [pending] = await db
    .delete(integrationOAuth2States)
    .where(eq(integrationOAuth2States.stateHash, stateHash))
    .returning();
  if (!pending || pending.expiresAt.getTime() < Date.now()) throw integrationErrors.oauth2StateInvalid();
  const integration = await findOrganizationIntegration(db, pending.organizationId, pending.integrationId);
  if (!integration) throw integrationErrors.oauth2StateInvalid();

  const { as, client, clientAuth } = await endpointsOf(envelope, integration);
  const verifier = envelope.openText(pending.codeVerifierSealed, codeVerifierContext(stateHash));
  let params: URLSearchParams;
  try {
    params = oauth.validateAuthResponse(as, client, callbackParameters, state);
  } catch (err) {
    // The user declined, or the provider refused the request (RFC 6749 §4.1.2.1): not a server fault.
    throw integrationErrors.oauth2Denied(describeOAuthError(err));
  }
  let tokens: oauth.TokenEndpointResponse;
  try {
    const response = await oauth.authorizationCodeGrantRequest(
      as,
      client,
      clientAuth,
      params,
      pending.redirectUri,
      verifier,
      requestOptions(as.token_endpoint ?? ''),
    );
    tokens = await oauth.processAuthorizationCodeResponse(as, client, response);
  } catch (err) {
    throw integrationErrors.oauth2Refused(`The authorization did not complete: ${describeOAuthError(err)}`);
  }
  await db.transaction(async (tx) => {
    await storeTokens(tx, envelope, integration, tokens, null);
    await recordAudit(tx, {
      type: 'integration.oauth2_authorized',
      category: 'integrations',
      organizationId: integration.organizationId,
      actorUserId: pending.createdBy,
      description: `Integration "${integration.name}" authorized through OAuth2`,
      details: { name: integration.name, scope: tokens.scope ?? null },
      objectType: 'integration',
      objectId: integration.id,
    });
  });
  const stored = await findOAuth2Token(db, integration.organizationId, integration.id);
  return { integration, scope: stored?.scope ?? null, expiresAt: stored?.expiresAt ?? null };
}

function describeOAuthError(err: unknown): string {
  if (err instanceof oauth.ResponseBodyError)
    return `${err.error}${err.error_description ? `: ${err.error_description}` : ''}`;
  if (err instanceof oauth.AuthorizationResponseError) {
    return `${err.error}${err.error_description ? `: ${err.error_description}` : ''}`;
  }
  return err instanceof Error ? err.message : 'unknown error';
}

const isFresh = (expiresAt: Date | null, now: Date) =>
  expiresAt === null || expiresAt.getTime() - REFRESH_MARGIN_MS > now.getTime();

/**
 * The access token to send now. One that is expiring is refreshed first (refresh-token grant), or,
 * for the client-credentials grant, a new one is obtained. The renewal runs under a lock on the
 * integration, so concurrent callers renew once and a rotated refresh token is never used twice.
 */
export async function currentAccessToken(
  db: Db,
  envelope: Envelope,
  integration: Integration,
  now = new Date(),
): Promise<string> {
  const open = (sealed: string) => envelope.openText(sealed, oauth2TokenContext(integration.id, 'access'));
  const token = await findOAuth2Token(db, integration.organizationId, integration.id);
  if (token && isFresh(token.expiresAt, now)) return open(token.accessTokenSealed);
  const clientCredentials = integration.oauth2.grant === 'client_credentials';
  if (!clientCredentials && !token?.refreshTokenSealed) throw integrationErrors.oauth2NotAuthorized(integration.id);

  return db.transaction(async (tx) => {
    await findOrganizationIntegration(tx, integration.organizationId, integration.id, { lock: true });
    const current = await findOAuth2Token(tx, integration.organizationId, integration.id);
    if (current && isFresh(current.expiresAt, now)) return open(current.accessTokenSealed);
    const { as, client, clientAuth, settings } = await endpointsOf(envelope, integration);
    const options = requestOptions(as.token_endpoint ?? '');
    let tokens: oauth.TokenEndpointResponse;
    let keep: string | null = null;
    try {
      if (clientCredentials) {
        const parameters: Record<string, string> = settings.scope ? { scope: settings.scope } : {};
        const response = await oauth.clientCredentialsGrantRequest(as, client, clientAuth, parameters, options);
        tokens = await oauth.processClientCredentialsResponse(as, client, response);
      } else {
        if (!current?.refreshTokenSealed) throw integrationErrors.oauth2NotAuthorized(integration.id);
        keep = envelope.openText(current.refreshTokenSealed, oauth2TokenContext(integration.id, 'refresh'));
        const response = await oauth.refreshTokenGrantRequest(as, client, clientAuth, keep, options);
        tokens = await oauth.processRefreshTokenResponse(as, client, response);
      }
    } catch (err) {
      if (err instanceof Error && err.name === 'AppError') throw err;
      throw integrationErrors.oauth2Refused(`The OAuth2 token could not be renewed: ${describeOAuthError(err)}`);
    }
    await storeTokens(tx, envelope, integration, tokens, keep);
    return tokens.access_token;
  });
}
