import { and, eq, isNull, lt, or, sql } from 'drizzle-orm';
import * as oauth from 'oauth4webapi';
import type { Envelope } from '../../platform/crypto/envelope.js';
import { sha256Hex } from '../../platform/crypto/tokens.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { AppError } from '../../platform/http/errors.js';
import { formUrlEncoded, withoutSecrets } from '../../platform/secret-text.js';
import { recordAudit } from '../activity/audit.js';
import { codeVerifierContext, oauth2TokenContext, openCredentials } from './credentials.js';
import { secretValues } from './echoed-secrets.js';
import { integrationErrors } from './integrations.errors.js';
import { findOAuth2Token, findOrganizationIntegration } from './integrations.queries.js';
import {
  type Integration,
  type IntegrationOAuth2Token,
  integrationOAuth2States,
  integrationOAuth2Tokens,
  type OAuth2Settings,
} from './integrations.table.js';
import { requestGuarded, webUrlOf } from './outbound-http.js';
import type { AddressRules } from './refused-addresses.js';
import { originChanges } from './secret-destinations.js';

/** A pending authorization may be completed within this long. */
const STATE_TTL_MS = 10 * 60_000;
/** A token this close to expiry is refreshed before use rather than sent and refused. */
const REFRESH_MARGIN_MS = 60_000;
/**
 * How long one caller may hold the renewal of a token: longer than the renewal may take, which is
 * a discovery request (for an issuer without explicit endpoints) and then the token request, both
 * within the integration's `timeout_ms`.
 */
const renewalLeaseMs = (integration: Integration) => 2 * integration.timeoutMs + 5_000;
/** How often a caller waiting for another's renewal looks for the new token: soon, then less often. */
const RENEWAL_POLL_FIRST_MS = 50;
const RENEWAL_POLL_MAX_MS = 1_000;

/** The callback every integration's authorization returns to (PUBLIC_URL-based). */
export const callbackPath = '/api/v1/integrations/oauth2/callback';

/** Discovery documents and token responses are small; anything past this is cut. */
const MAX_OAUTH_RESPONSE_BYTES = 256 * 1024;

/**
 * The time the OAuth2 requests of one use of an integration have: together within its `timeout_ms`
 * (`statedMs`), ending at `deadline` (a Date.now() instant), which a caller with a budget of its own
 * (a health check) may bring forward.
 */
export interface OAuth2TimeLimit {
  deadline: number;
  statedMs: number;
}

const timeLimitOf = (integration: Integration, deadline?: number): OAuth2TimeLimit => ({
  deadline: Math.min(deadline ?? Number.POSITIVE_INFINITY, Date.now() + integration.timeoutMs),
  statedMs: integration.timeoutMs,
});

/** Whether an error is an OAuth2 request that got no answer in time (see `guardedFetch`). */
export function isOAuth2Timeout(err: unknown): boolean {
  return err instanceof AppError && (err.cause as { name?: string } | undefined)?.name === 'TimeoutError';
}

/**
 * Token-endpoint and discovery calls go through the same address rules as every integration call
 * (checked on the address connected to), never follow redirects, and end by the time limit.
 */
const guardedFetch =
  (rules: AddressRules, limit: OAuth2TimeLimit) =>
  async (url: string, init: oauth.CustomFetchOptions<string, unknown>): Promise<Response> => {
    const body = init.body;
    if (body !== undefined && typeof body !== 'string' && !(body instanceof URLSearchParams)) {
      throw new TypeError('Unexpected OAuth2 request body.');
    }
    let answer: Awaited<ReturnType<typeof requestGuarded>>;
    try {
      answer = await requestGuarded(
        new URL(url),
        {
          method: init.method,
          headers: init.headers,
          body: body?.toString(),
        },
        {
          timeoutMs: Math.max(1, limit.deadline - Date.now()),
          maxBodyBytes: MAX_OAUTH_RESPONSE_BYTES,
          rules,
        },
      );
    } catch (err) {
      if ((err as { name?: string }).name === 'TimeoutError')
        throw integrationErrors.oauth2TimedOut(limit.statedMs, err);
      throw err;
    }
    const headers = new Headers();
    for (const [name, value] of Object.entries(answer.headers)) {
      for (const one of Array.isArray(value) ? value : [value ?? '']) headers.append(name, one);
    }
    // A Response may not carry a body with these statuses.
    const empty = answer.status === 204 || answer.status === 205 || answer.status === 304;
    return new Response(empty ? null : answer.body, { status: answer.status, headers });
  };

function requestOptions(url: string, rules: AddressRules, limit: OAuth2TimeLimit) {
  // Plain http is accepted where the operator configured it (a provider on the local network), as for base_url.
  return { [oauth.customFetch]: guardedFetch(rules, limit), [oauth.allowInsecureRequests]: url.startsWith('http:') };
}

interface Endpoints {
  as: oauth.AuthorizationServer;
  client: oauth.Client;
  clientAuth: oauth.ClientAuth;
  settings: OAuth2Settings;
  /** What a provider's answer must not show: the client secret, and the Basic credentials made of it. */
  secrets: string[];
  limit: OAuth2TimeLimit;
}

/**
 * The client secret as the token endpoint receives it and may echo it: as is, form-encoded, and
 * in the Basic credentials of ClientSecretBasic, read off the header the library itself builds
 * (each part form-encoded first, RFC 6749 §2.3.1), whole, decoded and by its password part.
 */
function clientSecrets(client: oauth.Client, clientAuth: oauth.ClientAuth, secret: string | undefined): string[] {
  if (!secret) return [];
  const headers = new Headers();
  void clientAuth({ issuer: 'https://issuer.invalid' }, client, new URLSearchParams(), headers);
  const credentials = (headers.get('authorization') ?? '').replace(/^Basic\s+/i, '');
  const pair = Buffer.from(credentials, 'base64').toString();
  return secretValues([
    secret,
    formUrlEncoded(secret),
    credentials,
    pair,
    pair.slice(pair.indexOf(':') + 1),
    Buffer.from(`${client.client_id}:${secret}`).toString('base64'),
  ]);
}

/** The authorization server and client of an integration, from its settings (discovery when only the issuer is given). */
async function endpointsOf(
  envelope: Envelope,
  rules: AddressRules,
  integration: Integration,
  limit = timeLimitOf(integration),
): Promise<Endpoints> {
  if (integration.authType !== 'oauth2') throw integrationErrors.notOAuth2(integration.id);
  // Authorizing or renewing sends the client secret: a deactivated integration is not called at all.
  if (!integration.isActive) throw integrationErrors.inactive(integration.id);
  const settings = integration.oauth2;
  if (!settings.client_id) throw integrationErrors.oauth2NotConfigured('client_id');
  const secret = openCredentials(envelope, integration.id, integration.credentialsSealed).client_secret;
  const client: oauth.Client = { client_id: settings.client_id };
  const clientAuth = secret ? oauth.ClientSecretBasic(secret) : oauth.None();
  const secrets = clientSecrets(client, clientAuth, secret);
  let as: oauth.AuthorizationServer;
  if (settings.issuer && (!settings.token_url || !settings.authorization_url)) {
    const issuer = new URL(settings.issuer);
    try {
      const response = await oauth.discoveryRequest(issuer, {
        ...requestOptions(settings.issuer, rules, limit),
        algorithm: 'oauth2',
      });
      as = await oauth.processDiscoveryResponse(issuer, response);
    } catch (err) {
      if (isOAuth2Timeout(err)) throw err;
      throw integrationErrors.oauth2Refused(
        `Discovery at ${settings.issuer} failed: ${describeOAuthError(err, secrets)}`,
      );
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
  return { as, client, clientAuth, settings, secrets, limit };
}

/**
 * Starts the authorization-code flow with PKCE (RFC 7636, S256): stores the state's hash and the
 * sealed code verifier, bound to the integration and expiring, and returns the URL to send the
 * user to.
 */
export async function startAuthorization(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  integration: Integration,
  input: { redirectUri: string; userId: string | null },
): Promise<{ authorizationUrl: string; expiresAt: Date }> {
  // The provider sends the user's browser there with the code: an absolute URI without a fragment
  // (RFC 6749 §3.1.2), and a web address, since `javascript:` or `data:` would run in the browser.
  const redirect = webUrlOf(input.redirectUri, 'redirect_uri');
  // Credentials in it would be handed to the provider and land in the browser's address bar and
  // history (RFC 3986 §3.2.1 deprecates them in URIs): refused, as in every address configured here.
  if (redirect.username || redirect.password) {
    throw integrationErrors.invalidUrl('redirect_uri', 'A URL with credentials (user:password@) is not allowed.');
  }
  const { as, client, settings } = await endpointsOf(envelope, rules, integration);
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

/**
 * The longest token lifetime believed. The token endpoint's `expires_in` (RFC 6749 §5.1) is only
 * known to be a non-negative finite number here; beyond this (1e300 s), the expiry would be no date
 * at all, and a token is renewed long before anyway.
 */
const MAX_TOKEN_LIFETIME_S = 10 * 366 * 24 * 3600;

/** When a token stating `expiresIn` seconds expires, bounded to MAX_TOKEN_LIFETIME_S; null when not stated. */
function expiryOf(expiresIn: number | undefined): Date | null {
  if (typeof expiresIn !== 'number' || Number.isNaN(expiresIn)) return null;
  const seconds = Math.min(Math.max(expiresIn, 0), MAX_TOKEN_LIFETIME_S);
  return new Date(Date.now() + seconds * 1000);
}

function tokenColumns(
  envelope: Envelope,
  integration: Integration,
  tokens: oauth.TokenEndpointResponse,
  keepRefreshToken: string | null,
) {
  const refresh = tokens.refresh_token ?? keepRefreshToken;
  return {
    accessTokenSealed: envelope.seal(tokens.access_token, oauth2TokenContext(integration.id, 'access')),
    refreshTokenSealed: refresh ? envelope.seal(refresh, oauth2TokenContext(integration.id, 'refresh')) : null,
    tokenType: tokens.token_type ?? 'Bearer',
    scope: tokens.scope ?? integration.oauth2.scope ?? null,
    expiresAt: expiryOf(tokens.expires_in),
    renewalLeaseUntil: null,
  };
}

/**
 * Tokens were obtained from the endpoints `integration` named when read: they may be stored only
 * if it still sends secrets to the same origins. Locks the integration row for the caller's
 * transaction, so a move (which drops stored tokens) cannot slip in between.
 */
async function assertSameDestinations(tx: DbOrTx, integration: Integration): Promise<void> {
  const now = await findOrganizationIntegration(tx, integration.organizationId, integration.id, { lock: true });
  if (!now) throw integrationErrors.notFound(integration.id);
  if (originChanges(integration, now).length > 0) {
    throw integrationErrors.oauth2Refused('The integration moved to another host while its tokens were requested.');
  }
}

/** Stores the tokens of a completed authorization, replacing whatever the integration held. */
async function storeTokens(
  db: DbOrTx,
  envelope: Envelope,
  integration: Integration,
  tokens: oauth.TokenEndpointResponse,
): Promise<void> {
  await assertSameDestinations(db, integration);
  const values = tokenColumns(envelope, integration, tokens, null);
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
  rules: AddressRules,
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

  const { as, client, clientAuth, secrets, limit } = await endpointsOf(envelope, rules, integration);
  const verifier = envelope.openText(pending.codeVerifierSealed, codeVerifierContext(stateHash));
  // A refusal without `iss` (RFC 9207 §2 lets a provider that does not send it leave it out) is
  // told in the provider's words: it grants nothing, so there is no mix-up to guard against.
  const refusal = callbackParameters.get('error');
  if (refusal !== null && !callbackParameters.has('iss')) {
    const description = callbackParameters.get('error_description');
    throw integrationErrors.oauth2Denied(withoutSecrets(`${refusal}${description ? `: ${description}` : ''}`, secrets));
  }
  let params: URLSearchParams;
  try {
    params = oauth.validateAuthResponse(as, client, callbackParameters, state);
  } catch (err) {
    // The user declined, or the provider refused the request (RFC 6749 §4.1.2.1): not a server fault.
    throw integrationErrors.oauth2Denied(describeOAuthError(err, secrets));
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
      requestOptions(as.token_endpoint ?? '', rules, limit),
    );
    tokens = await oauth.processAuthorizationCodeResponse(as, client, response);
  } catch (err) {
    if (isOAuth2Timeout(err)) throw err;
    throw integrationErrors.oauth2Refused(`The authorization did not complete: ${describeOAuthError(err, secrets)}`);
  }
  await db.transaction(async (tx) => {
    await storeTokens(tx, envelope, integration, tokens);
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

/**
 * What went wrong, in the provider's words where it gave any: those go into problem details, logs
 * and the health-check history, so the secrets of the request are cut out of them first.
 */
function describeOAuthError(err: unknown, secrets: readonly string[]): string {
  let text: string;
  if (err instanceof oauth.ResponseBodyError || err instanceof oauth.AuthorizationResponseError) {
    text = `${err.error}${err.error_description ? `: ${err.error_description}` : ''}`;
  } else {
    text = err instanceof Error ? err.message : 'unknown error';
  }
  return withoutSecrets(text, secrets);
}

const isFresh = (expiresAt: Date | null, now: Date) =>
  expiresAt === null || expiresAt.getTime() - REFRESH_MARGIN_MS > now.getTime();

const ofToken = (token: IntegrationOAuth2Token) =>
  and(
    eq(integrationOAuth2Tokens.organizationId, token.organizationId),
    eq(integrationOAuth2Tokens.integrationId, token.integrationId),
    // Every seal has a fresh random nonce, so the sealed access token identifies one stored version.
    eq(integrationOAuth2Tokens.accessTokenSealed, token.accessTokenSealed),
  );

/**
 * Claims the renewal of the token version read, unless another caller holds an unexpired claim or
 * the version has already been replaced. The lease is on the database clock, shared by every
 * instance, and outlasts the token request.
 */
async function claimRenewal(
  db: Db,
  integration: Integration,
  token: IntegrationOAuth2Token,
): Promise<string | undefined> {
  const claimed = await db
    .update(integrationOAuth2Tokens)
    .set({
      renewalLeaseUntil: sql`now() + ${`${renewalLeaseMs(integration)} milliseconds`}::interval`,
      // A claim is not a new token.
      updatedAt: sql`${integrationOAuth2Tokens.updatedAt}`,
    })
    .where(
      and(
        ofToken(token),
        or(
          isNull(integrationOAuth2Tokens.renewalLeaseUntil),
          lt(integrationOAuth2Tokens.renewalLeaseUntil, sql`now()`),
        ),
      ),
    )
    // As text: the database keeps microseconds, a Date would round them away and never match again.
    .returning({ leaseUntil: sql<string>`${integrationOAuth2Tokens.renewalLeaseUntil}::text` });
  return claimed[0]?.leaseUntil;
}

/**
 * Gives a claim back after a failed renewal, so the next caller tries at once rather than after
 * the lease. Only the holder's own claim (its lease value): one that ran out may have been taken.
 */
async function releaseRenewal(db: Db, token: IntegrationOAuth2Token, leaseUntil: string): Promise<void> {
  await db
    .update(integrationOAuth2Tokens)
    .set({ renewalLeaseUntil: null, updatedAt: sql`${integrationOAuth2Tokens.updatedAt}` })
    .where(and(ofToken(token), sql`${integrationOAuth2Tokens.renewalLeaseUntil}::text = ${leaseUntil}`));
}

/**
 * Asks the token endpoint for a new access token: the refresh-token grant with `refreshToken`, or
 * the client-credentials grant. A network call: never made inside a transaction.
 */
async function requestTokens(
  envelope: Envelope,
  rules: AddressRules,
  integration: Integration,
  refreshToken: string | null,
  limit: OAuth2TimeLimit,
): Promise<oauth.TokenEndpointResponse> {
  let secrets = secretValues([refreshToken]);
  try {
    const endpoints = await endpointsOf(envelope, rules, integration, limit);
    const { as, client, clientAuth, settings } = endpoints;
    secrets = secretValues([...endpoints.secrets, refreshToken, refreshToken && formUrlEncoded(refreshToken)]);
    const options = requestOptions(as.token_endpoint ?? '', rules, limit);
    if (refreshToken === null) {
      const parameters: Record<string, string> = settings.scope ? { scope: settings.scope } : {};
      const response = await oauth.clientCredentialsGrantRequest(as, client, clientAuth, parameters, options);
      return await oauth.processClientCredentialsResponse(as, client, response);
    }
    const response = await oauth.refreshTokenGrantRequest(as, client, clientAuth, refreshToken, options);
    return await oauth.processRefreshTokenResponse(as, client, response);
  } catch (err) {
    if (err instanceof AppError) throw err;
    throw integrationErrors.oauth2Refused(`The OAuth2 token could not be renewed: ${describeOAuthError(err, secrets)}`);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * The access token to send now. One that is expiring is refreshed first (refresh-token grant), or,
 * for the client-credentials grant, a new one is obtained. The token request runs outside any
 * transaction: on PGlite a transaction holds the only connection, and on PostgreSQL a row lock held
 * across it would stall every change of the integration for up to its timeout. Instead, one
 * caller claims the renewal with a lease on the token row, and the new token is stored only if the
 * row still holds the version read (compare-and-swap); callers that find the renewal claimed wait
 * for its result. So a refresh token is spent once even across instances: providers that rotate
 * refresh tokens treat a second use as theft and revoke the whole grant (RFC 9700 §4.14.2).
 * Asking, or waiting for another caller's answer, ends within the integration's `timeout_ms`, or by
 * `deadline` (a Date.now() instant) when that comes first.
 */
export async function currentAccessToken(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  integration: Integration,
  now = new Date(),
  deadline?: number,
): Promise<string> {
  const limit = timeLimitOf(integration, deadline);
  const open = (sealed: string) => envelope.openText(sealed, oauth2TokenContext(integration.id, 'access'));
  let token = await findOAuth2Token(db, integration.organizationId, integration.id);
  if (token && isFresh(token.expiresAt, now)) return open(token.accessTokenSealed);
  const clientCredentials = integration.oauth2.grant === 'client_credentials';
  if (!clientCredentials && !token?.refreshTokenSealed) throw integrationErrors.oauth2NotAuthorized(integration.id);

  if (!token) {
    // A first client-credentials token: nothing is spent by asking, so concurrent callers may each
    // ask; the first stored stands and the others use it.
    const tokens = await requestTokens(envelope, rules, integration, null, limit);
    const inserted = await db.transaction(async (tx) => {
      await assertSameDestinations(tx, integration);
      return tx
        .insert(integrationOAuth2Tokens)
        .values({
          organizationId: integration.organizationId,
          integrationId: integration.id,
          ...tokenColumns(envelope, integration, tokens, null),
        })
        .onConflictDoNothing()
        .returning({ integrationId: integrationOAuth2Tokens.integrationId });
    });
    if (inserted.length > 0) return tokens.access_token;
    return storedAccessToken(db, integration, open);
  }

  const giveUpAt = Date.now() + 2 * renewalLeaseMs(integration);
  let pause = RENEWAL_POLL_FIRST_MS;
  let leaseUntil = await claimRenewal(db, integration, token);
  while (leaseUntil === undefined) {
    // Another caller renews this version: wait for what it stores rather than spend the refresh token again.
    await sleep(Math.min(pause, Math.max(0, limit.deadline - Date.now())));
    pause = Math.min(pause * 2, RENEWAL_POLL_MAX_MS);
    const current = await findOAuth2Token(db, integration.organizationId, integration.id);
    if (!current) throw integrationErrors.oauth2NotAuthorized(integration.id);
    if (current.accessTokenSealed !== token.accessTokenSealed) {
      if (isFresh(current.expiresAt, now)) return open(current.accessTokenSealed);
      // The same expiring token sealed anew (a master-key reseal): this version is the one to renew.
      token = current;
    }
    if (Date.now() > giveUpAt) {
      throw integrationErrors.oauth2Refused('The OAuth2 token is being renewed by another caller that did not finish.');
    }
    if (Date.now() >= limit.deadline) {
      throw integrationErrors.oauth2TimedOut(limit.statedMs, new DOMException('waited for a renewal', 'TimeoutError'));
    }
    leaseUntil = await claimRenewal(db, integration, token);
  }

  const refreshToken = token.refreshTokenSealed
    ? envelope.openText(token.refreshTokenSealed, oauth2TokenContext(integration.id, 'refresh'))
    : null;
  let tokens: oauth.TokenEndpointResponse;
  try {
    tokens = await requestTokens(envelope, rules, integration, clientCredentials ? null : refreshToken, limit);
  } catch (err) {
    await releaseRenewal(db, token, leaseUntil);
    throw err;
  }
  const swapped = await db
    .update(integrationOAuth2Tokens)
    .set({ ...tokenColumns(envelope, integration, tokens, refreshToken), updatedAt: new Date() })
    .where(ofToken(token))
    .returning({ integrationId: integrationOAuth2Tokens.integrationId });
  if (swapped.length > 0) return tokens.access_token;
  // Replaced meanwhile (a new authorization, or the lease ran out and another caller renewed): the
  // stored version stands. If the tokens were dropped (the integration moved host), there is none.
  return storedAccessToken(db, integration, open);
}

async function storedAccessToken(db: Db, integration: Integration, open: (sealed: string) => string): Promise<string> {
  const stored = await findOAuth2Token(db, integration.organizationId, integration.id);
  if (!stored) throw integrationErrors.oauth2NotAuthorized(integration.id);
  return open(stored.accessTokenSealed);
}
