import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import Provider from 'oidc-provider';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenOnLoopback } from '../../../test/loopback-server.js';
import { type Client, clientWithRole, seedOrganization } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { createEnvelope, type Envelope } from '../../platform/crypto/envelope.js';
import { queryRows } from '../../platform/db/client.js';
import { REDACTED } from '../../platform/secret-text.js';
import { findOrganizationIntegration } from './integrations.queries.js';
import { currentAccessToken } from './oauth2.js';

const CLIENT_ID = 'gatehouse-integration';
const CLIENT_SECRET = 'a-client-secret-of-the-provider-0123456789';
const API_RESOURCE = 'urn:example:api';
const CALLBACK = 'http://gatehouse.test/api/v1/integrations/oauth2/callback';

/** What the tests see of, and hold at, the provider's token endpoint. */
interface TokenEndpoint {
  requests: number;
  /** While set, token requests wait for it before the provider answers them. */
  hold: Promise<void> | null;
  /** Called as a token request arrives. */
  onRequest: (() => void) | null;
}

/**
 * A real OAuth2 authorization server on loopback. Its interaction step (login and consent) is
 * answered by the server itself for a fixed account, so the test drives the browser's part with
 * plain HTTP requests. It rotates refresh tokens and, like providers following RFC 9700 §4.14.2,
 * revokes the grant when a spent one comes back.
 */
async function startProvider(): Promise<{
  issuer: string;
  provider: Provider;
  tokenEndpoint: TokenEndpoint;
  close(): Promise<void>;
}> {
  let provider: Provider | undefined;
  const tokenEndpoint: TokenEndpoint = { requests: 0, hold: null, onRequest: null };
  const server: Server = createServer(async (req, res) => {
    const p = provider as Provider;
    if (req.url?.startsWith('/token')) {
      tokenEndpoint.requests++;
      tokenEndpoint.onRequest?.();
      await tokenEndpoint.hold;
    }
    if (req.url?.startsWith('/interaction/')) {
      try {
        const details = await p.interactionDetails(req, res);
        const grant = new p.Grant({ accountId: 'account-1', clientId: String(details.params.client_id) });
        // Scopes of the API are resource scopes; offline_access (for a refresh token) is the provider's own.
        grant.addResourceScope(API_RESOURCE, 'api:read');
        grant.addOIDCScope('offline_access');
        const grantId = await grant.save();
        await p.interactionFinished(
          req,
          res,
          { login: { accountId: 'account-1' }, consent: { grantId } },
          { mergeWithLastSubmission: false },
        );
      } catch (err) {
        res.writeHead(500).end(String(err));
      }
      return;
    }
    p.callback()(req, res);
  });
  const port = await new Promise<number>((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
  );
  const issuer = `http://127.0.0.1:${port}`;
  provider = new Provider(issuer, {
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: CLIENT_SECRET,
        redirect_uris: [CALLBACK],
        grant_types: ['authorization_code', 'refresh_token', 'client_credentials'],
        response_types: ['code'],
      },
    ],
    scopes: ['offline_access'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => API_RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({ scope: 'api:read', audience: API_RESOURCE, accessTokenFormat: 'opaque' }),
      },
    },
    pkce: { required: () => true },
    interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
    issueRefreshToken: async () => true,
    rotateRefreshToken: () => true,
    findAccount: async (_ctx, id) => ({ accountId: id, claims: async () => ({ sub: id }) }),
    cookies: { keys: ['test-cookie-key-0123456789'] },
    ttl: { AccessToken: 3600, ClientCredentials: 3600 },
  });
  return {
    issuer,
    provider,
    tokenEndpoint,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Plays the user's browser: follows redirects, keeping the provider's cookies, until the provider sends it back. */
async function authorizeInBrowser(authorizationUrl: string): Promise<URL> {
  const cookies = new Map<string, string>();
  let url = new URL(authorizationUrl);
  for (let hop = 0; hop < 10; hop++) {
    if (url.toString().startsWith(CALLBACK)) return url;
    const res = await fetch(url, {
      redirect: 'manual',
      headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') },
    });
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const [name, ...value] = (pair ?? '').split('=');
      if (name) cookies.set(name.trim(), value.join('='));
    }
    const location = res.headers.get('location');
    if (!location) throw new Error(`the provider answered ${res.status}: ${await res.text()}`);
    url = new URL(location, url);
  }
  throw new Error('too many redirects');
}

describe('OAuth2 integrations', () => {
  let t: TestApp;
  let admin: Client;
  let envelope: Envelope;
  let as: Awaited<ReturnType<typeof startProvider>>;

  beforeAll(async () => {
    t = await startTestApp();
    envelope = createEnvelope(t.config.masterKey);
    const org = await seedOrganization(t);
    admin = await clientWithRole(t, org.id, 'org_admin');
    as = await startProvider();
  });
  afterAll(async () => {
    await as.close();
    await t.close();
  });

  async function register(oauth2: Record<string, unknown>) {
    const res = await admin.post('/api/v1/integrations/', {
      name: unique('crm '),
      service_type: 'crm',
      auth_type: 'oauth2',
      base_url: `${as.issuer}/`,
      oauth2: { issuer: as.issuer, client_id: CLIENT_ID, scope: 'api:read offline_access', ...oauth2 },
      credentials: { client_secret: CLIENT_SECRET },
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { id: string; organization_id: string };
  }

  /** An integration through the whole authorization-code flow, holding tokens. */
  async function authorized(oauth2: Record<string, unknown> = {}) {
    const created = await register(oauth2);
    const start = await admin.post(`/api/v1/integrations/${created.id}/oauth2/authorize`, {});
    const back = await authorizeInBrowser((start.json() as { authorization_url: string }).authorization_url);
    const done = await t.request({ method: 'GET', url: `${back.pathname}${back.search}` });
    expect(done.statusCode, done.body).toBe(200);
    const integration = await findOrganizationIntegration(t.database.db, created.organization_id, created.id);
    if (!integration) throw new Error('integration missing');
    return integration;
  }

  /** Makes the stored access token due for renewal, on the real clock. */
  async function expireToken(integrationId: string) {
    await t.database.db.execute(
      sql`update integration_oauth2_tokens set expires_at = now() where integration_id = ${integrationId}::uuid`,
    );
  }

  it('runs the authorization-code flow with PKCE and stores the tokens encrypted', async () => {
    const created = await register({});
    const start = await admin.post(`/api/v1/integrations/${created.id}/oauth2/authorize/`, {});
    expect(start.statusCode, start.body).toBe(200);
    const { authorization_url } = start.json() as { authorization_url: string };
    const sent = new URL(authorization_url);
    expect(sent.origin).toBe(as.issuer);
    expect(sent.searchParams.get('code_challenge_method')).toBe('S256');
    expect(sent.searchParams.get('redirect_uri')).toBe(CALLBACK);
    expect(sent.searchParams.get('state')).toMatch(/^[\w-]{20,}$/);

    const back = await authorizeInBrowser(authorization_url);
    expect(back.searchParams.get('code')).toBeTruthy();
    const done = await t.request({ method: 'GET', url: `${back.pathname}${back.search}` });
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json()).toMatchObject({ integration_id: created.id, status: 'authorized' });
    expect(done.json().scope).toContain('api:read');

    const view = (await admin.get(`/api/v1/integrations/${created.id}`)).json();
    expect(view.oauth2_token).toMatchObject({ scope: done.json().scope, has_refresh_token: true });
    expect(new Date(view.oauth2_token.expires_at).getTime()).toBeGreaterThan(Date.now() + 3000_000);

    // The token works at the authorization server, and is stored only sealed.
    const integration = await findOrganizationIntegration(t.database.db, created.organization_id, created.id);
    if (!integration) throw new Error('integration missing');
    const access = await currentAccessToken(t.database.db, envelope, { loopback: true }, integration);
    expect(await as.provider.AccessToken.find(access)).toBeTruthy();
    const raw = JSON.stringify(
      await queryRows(
        t.database.db,
        sql`select * from integration_oauth2_tokens where integration_id = ${created.id}::uuid`,
      ),
    );
    expect(raw).not.toContain(access);

    // The state was used once: replaying the callback is refused.
    const replay = await t.request({ method: 'GET', url: `${back.pathname}${back.search}` });
    expect(replay.json()).toMatchObject({ status: 400, code: 'oauth2_state_invalid' });

    // A browser coming back is sent on to the integration's page in the admin console.
    const again = await admin.post(`/api/v1/integrations/${created.id}/oauth2/authorize/`, {});
    const backAgain = await authorizeInBrowser((again.json() as { authorization_url: string }).authorization_url);
    const browser = await t.request({
      method: 'GET',
      url: `${backAgain.pathname}${backAgain.search}`,
      headers: { accept: 'text/html,application/xhtml+xml,*/*;q=0.8' },
    });
    expect(browser.statusCode, browser.body).toBe(303);
    expect(browser.headers.location).toBe(`http://gatehouse.test/admin/integrations/${created.id}/show`);

    // An expiring token is refreshed before use; the new one works and replaces the old.
    const later = new Date(Date.now() + 2 * 3600_000);
    const refreshed = await currentAccessToken(t.database.db, envelope, { loopback: true }, integration, later);
    expect(refreshed).not.toBe(access);
    expect(await as.provider.AccessToken.find(refreshed)).toBeTruthy();
    expect(await currentAccessToken(t.database.db, envelope, { loopback: true }, integration)).toBe(refreshed);

    const events = await queryRows<{ activity_type: string }>(
      t.database.db,
      sql`select activity_type from activities where object_id = ${created.id} order by id`,
    );
    expect(events.map((e) => e.activity_type)).toContain('integration.oauth2_authorized');
  });

  it('renews an expiring token once for concurrent callers, and both get the stored one', async () => {
    const integration = await authorized();
    const first = await currentAccessToken(t.database.db, envelope, { loopback: true }, integration);
    await expireToken(integration.id);
    const before = as.tokenEndpoint.requests;
    const [a, b, c] = await Promise.all([
      currentAccessToken(t.database.db, envelope, { loopback: true }, integration),
      currentAccessToken(t.database.db, envelope, { loopback: true }, integration),
      currentAccessToken(t.database.db, envelope, { loopback: true }, integration),
    ]);
    // One refresh: the provider rotates refresh tokens, and a second use of the spent one would have
    // revoked the grant (and failed the caller that made it).
    expect(as.tokenEndpoint.requests - before).toBe(1);
    expect(a).not.toBe(first);
    expect([b, c]).toEqual([a, a]);
    expect(await as.provider.AccessToken.find(a)).toBeTruthy();
    expect(await currentAccessToken(t.database.db, envelope, { loopback: true }, integration)).toBe(a);

    // The rotated refresh token was stored: the next renewal works too.
    await expireToken(integration.id);
    const next = await currentAccessToken(t.database.db, envelope, { loopback: true }, integration);
    expect(next).not.toBe(a);
    expect(await as.provider.AccessToken.find(next)).toBeTruthy();
  });

  it('keeps the database usable while the token endpoint is slow', async () => {
    const integration = await authorized();
    await expireToken(integration.id);
    let release = () => {};
    as.tokenEndpoint.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const arrived = new Promise<void>((resolve) => {
      as.tokenEndpoint.onRequest = resolve;
    });
    let settled = false;
    const renewal = currentAccessToken(t.database.db, envelope, { loopback: true }, integration).finally(() => {
      settled = true;
    });
    try {
      await arrived;
      // While the token request is pending: a change of the same integration (which locks its row)
      // and a second caller's wait both go ahead, on PGlite's single connection too.
      const within = <T>(promise: Promise<T>) =>
        Promise.race([
          promise,
          new Promise<never>((_, reject) =>
            setTimeout(() => reject(new Error('the database was held during the token request')), 5_000),
          ),
        ]);
      const patched = await within(
        admin.patch(`/api/v1/integrations/${integration.id}`, { description: 'changed during a renewal' }),
      );
      expect(patched.statusCode, patched.body).toBe(200);
      const [{ n }] = (await within(
        queryRows<{ n: number }>(t.database.db, sql`select count(*)::int as n from integrations`),
      )) as [{ n: number }];
      expect(n).toBeGreaterThan(0);
      expect(settled).toBe(false);
    } finally {
      as.tokenEndpoint.hold = null;
      as.tokenEndpoint.onRequest = null;
      release();
    }
    const token = await renewal;
    expect(await as.provider.AccessToken.find(token)).toBeTruthy();
  });

  it('asks the token endpoint within the integration’s timeout: a stuck one makes the health check a timeout', async () => {
    const integration = await authorized();
    expect((await admin.patch(`/api/v1/integrations/${integration.id}`, { timeout_ms: 300 })).statusCode).toBe(200);
    await expireToken(integration.id);
    let release = () => {};
    as.tokenEndpoint.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    try {
      const started = Date.now();
      const res = await admin.post(`/api/v1/integrations/${integration.id}/health-check/`);
      const took = Date.now() - started;
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().check).toMatchObject({ status: 'timeout', http_status: null });
      expect(res.json().check.error_message).toContain('300 ms');
      expect(res.json().check.response_time_ms).toBeGreaterThanOrEqual(250);
      expect(took).toBeLessThan(3_000);
    } finally {
      as.tokenEndpoint.hold = null;
      release();
    }
    // The renewal given up is released: the next use tries again at once, not after the lease.
    const [lease] = await queryRows<{ renewal_lease_until: string | null }>(
      t.database.db,
      sql`select renewal_lease_until from integration_oauth2_tokens where integration_id = ${integration.id}::uuid`,
    );
    expect(lease).toEqual({ renewal_lease_until: null });
  });

  it('drops the tokens when the token endpoint moves to another host, and keeps them for a path change', async () => {
    const integration = await authorized();
    const oauth2 = { issuer: as.issuer, client_id: CLIENT_ID, scope: 'api:read offline_access' };
    const samePath = await admin.patch(`/api/v1/integrations/${integration.id}`, {
      oauth2: { ...oauth2, token_url: `${as.issuer}/token` },
    });
    expect(samePath.statusCode, samePath.body).toBe(200);
    expect(samePath.json().oauth2_token).toMatchObject({ has_refresh_token: true });

    // 127.0.0.2 is another origin, though loopback too.
    const elsewhere = `http://127.0.0.2:${new URL(as.issuer).port}/token`;
    const refused = await admin.patch(`/api/v1/integrations/${integration.id}`, {
      oauth2: { ...oauth2, token_url: elsewhere },
    });
    expect(refused.json()).toMatchObject({
      status: 400,
      code: 'integration_credentials_required',
      errors: [{ field: 'credentials' }],
    });
    expect(refused.json().detail).toContain('oauth2.token_endpoint');

    const moved = await admin.patch(`/api/v1/integrations/${integration.id}`, {
      oauth2: { ...oauth2, token_url: elsewhere },
      credentials: { client_secret: CLIENT_SECRET },
    });
    expect(moved.statusCode, moved.body).toBe(200);
    expect(moved.json()).toMatchObject({ oauth2_token: null, credentials: { client_secret: { set: true } } });
    await expect(currentAccessToken(t.database.db, envelope, { loopback: true }, integration)).rejects.toMatchObject({
      code: 'oauth2_not_authorized',
    });
    const [updated] = await queryRows<{ details: Record<string, unknown> }>(
      t.database.db,
      sql`select details from activities where object_id = ${integration.id}
          and activity_type = 'integration.updated' order by id desc limit 1`,
    );
    expect(updated?.details).toMatchObject({
      origin_changes: [{ field: 'oauth2.token_endpoint', from: as.issuer, to: new URL(elsewhere).origin }],
      dropped: ['oauth2_tokens'],
    });
  });

  it('obtains tokens with the client-credentials grant when configured', async () => {
    const created = await register({ grant: 'client_credentials', scope: 'api:read' });
    const integration = await findOrganizationIntegration(t.database.db, created.organization_id, created.id);
    if (!integration) throw new Error('integration missing');
    const token = await currentAccessToken(t.database.db, envelope, { loopback: true }, integration);
    expect(await as.provider.ClientCredentials.find(token)).toBeTruthy();
    // Reused while fresh.
    expect(await currentAccessToken(t.database.db, envelope, { loopback: true }, integration)).toBe(token);
  });

  it('does not store tokens obtained for a host the integration left meanwhile', async () => {
    const created = await register({ grant: 'client_credentials', scope: 'api:read' });
    const integration = await findOrganizationIntegration(t.database.db, created.organization_id, created.id);
    if (!integration) throw new Error('integration missing');
    let release = () => {};
    as.tokenEndpoint.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const arrived = new Promise<void>((resolve) => {
      as.tokenEndpoint.onRequest = resolve;
    });
    const asked = currentAccessToken(t.database.db, envelope, { loopback: true }, integration).then(
      () => 'stored',
      (err: { code?: string; message?: string }) => `${err.code}: ${err.message}`,
    );
    try {
      await arrived;
      // While the token request is pending, the integration moves to another host (new secrets given).
      const moved = await admin.patch(`/api/v1/integrations/${created.id}`, {
        base_url: 'https://elsewhere.example/',
        credentials: { client_secret: 'another-secret' },
      });
      expect(moved.statusCode, moved.body).toBe(200);
    } finally {
      as.tokenEndpoint.hold = null;
      as.tokenEndpoint.onRequest = null;
      release();
    }
    expect(await asked).toMatch(/^oauth2_exchange_failed: .*moved to another host/);
    const rows = await queryRows(
      t.database.db,
      sql`select 1 from integration_oauth2_tokens where integration_id = ${created.id}::uuid`,
    );
    expect(rows).toEqual([]);
  });

  it('takes only an absolute http(s) redirect_uri without a fragment or credentials, and sends it as given', async () => {
    const created = await register({});
    for (const redirect_uri of [
      'javascript:alert(1)',
      'data:text/html,hi',
      '/api/v1/integrations/oauth2/callback',
      'https://app.example/callback#frag',
      'http://u:p@x.example.com/cb',
      'https://only-user@x.example.com/cb',
    ]) {
      const res = await admin.post(`/api/v1/integrations/${created.id}/oauth2/authorize/`, { redirect_uri });
      expect(res.statusCode, `${redirect_uri} → ${res.body}`).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.json().errors).toEqual([expect.objectContaining({ field: 'redirect_uri' })]);
    }
    expect(
      await queryRows(t.database.db, sql`select 1 from integration_oauth2_states where integration_id = ${created.id}`),
    ).toEqual([]);

    const redirect = 'http://localhost:8080/relay?to=gatehouse';
    const start = await admin.post(`/api/v1/integrations/${created.id}/oauth2/authorize/`, { redirect_uri: redirect });
    expect(start.statusCode, start.body).toBe(200);
    expect(new URL(start.json().authorization_url).searchParams.get('redirect_uri')).toBe(redirect);
  });

  it('refuses unknown or expired states, other auth types, and other organizations’ integrations', async () => {
    const unknown = await t.request({
      method: 'GET',
      url: '/api/v1/integrations/oauth2/callback?state=made-up&code=abc',
    });
    expect(unknown.json()).toMatchObject({ status: 400, code: 'oauth2_state_invalid' });
    const missing = await t.request({ method: 'GET', url: '/api/v1/integrations/oauth2/callback?code=abc' });
    expect(missing.statusCode).toBe(400);

    // The user declines at the provider: the provider's error comes back with the state.
    const declined = await register({});
    const declinedStart = await admin.post(`/api/v1/integrations/${declined.id}/oauth2/authorize`);
    const declinedState = new URL(
      (declinedStart.json() as { authorization_url: string }).authorization_url,
    ).searchParams.get('state');
    const denied = await t.request({
      method: 'GET',
      url: `/api/v1/integrations/oauth2/callback?state=${declinedState}&error=access_denied&iss=${encodeURIComponent(as.issuer)}`,
    });
    expect(denied.json()).toMatchObject({ status: 400, code: 'oauth2_authorization_denied' });
    expect(denied.json().detail).toContain('access_denied');
    // A provider that leaves out `iss` on an error (RFC 9207 §2.4 is optional for it): its own error is told.
    const withoutIss = await register({});
    const withoutIssStart = await admin.post(`/api/v1/integrations/${withoutIss.id}/oauth2/authorize`);
    const withoutIssState = new URL(
      (withoutIssStart.json() as { authorization_url: string }).authorization_url,
    ).searchParams.get('state');
    const deniedWithoutIss = await t.request({
      method: 'GET',
      url: `/api/v1/integrations/oauth2/callback?state=${withoutIssState}&error=access_denied&error_description=The+user+said+no`,
    });
    expect(deniedWithoutIss.json()).toMatchObject({ status: 400, code: 'oauth2_authorization_denied' });
    expect(deniedWithoutIss.json().detail).toBe('The provider did not grant access: access_denied: The user said no.');
    expect((await admin.get(`/api/v1/integrations/${declined.id}`)).json()).toMatchObject({ oauth2_token: null });

    const created = await register({});
    const start = await admin.post(`/api/v1/integrations/${created.id}/oauth2/authorize`, {});
    const state = new URL((start.json() as { authorization_url: string }).authorization_url).searchParams.get('state');
    await t.database.db.execute(
      sql`update integration_oauth2_states set expires_at = now() - interval '1 minute' where integration_id = ${created.id}::uuid`,
    );
    const expired = await t.request({
      method: 'GET',
      url: `/api/v1/integrations/oauth2/callback?state=${state}&code=x`,
    });
    expect(expired.json()).toMatchObject({ status: 400, code: 'oauth2_state_invalid' });

    const plain = await admin.post('/api/v1/integrations/', {
      name: unique('plain '),
      service_type: 'other',
      auth_type: 'api_key',
      base_url: as.issuer,
    });
    const notOAuth = await admin.post(`/api/v1/integrations/${plain.json().id}/oauth2/authorize`);
    expect(notOAuth.json()).toMatchObject({ status: 409, code: 'integration_not_oauth2' });

    const stranger = await clientWithRole(t, (await seedOrganization(t)).id, 'org_admin');
    expect((await stranger.post(`/api/v1/integrations/${created.id}/oauth2/authorize`, {})).statusCode).toBe(404);
    expect(
      (await t.request({ method: 'POST', url: `/api/v1/integrations/${created.id}/oauth2/authorize`, payload: {} }))
        .statusCode,
    ).toBe(401);

    // Without a token, a health check fails (and says why) rather than erroring.
    const check = await admin.post(`/api/v1/integrations/${created.id}/health-check`);
    expect(check.json()).toMatchObject({ check: { status: 'failure' }, integration: { health_status: 'DEGRADED' } });
    expect(check.json().check.error_message).toContain('authorize it first');
  });

  /** An oauth2 integration of a test provider at `providerUrl` (authorize and token under it). */
  async function registerOAuth2(providerUrl: string, clientSecret: string, oauth2: Record<string, unknown> = {}) {
    const res = await admin.post('/api/v1/integrations/', {
      name: unique('oauth2 '),
      service_type: 'crm',
      auth_type: 'oauth2',
      base_url: providerUrl,
      oauth2: {
        authorization_url: `${providerUrl}/authorize`,
        token_url: `${providerUrl}/token`,
        client_id: 'c',
        ...oauth2,
      },
      credentials: { client_secret: clientSecret },
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json().id as string;
  }

  /** The provider's redirect back with a code, for an authorization started earlier (`state`). */
  const callbackWith = (state: string | null) =>
    t.request({ method: 'GET', url: `/api/v1/integrations/oauth2/callback?state=${state}&code=the-code` });

  /** Starts an integration's authorization-code flow: the state the provider would send back. */
  async function startAuthorizing(id: string) {
    const start = await admin.post(`/api/v1/integrations/${id}/oauth2/authorize/`, {});
    return new URL(start.json().authorization_url).searchParams.get('state');
  }

  /**
   * A token endpoint that refuses every client and, like some providers do, quotes what it was sent:
   * the secret, the Authorization header, and the password part of it (form-encoded).
   */
  async function startEchoingProvider() {
    const authorizations: string[] = [];
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (!req.url?.startsWith('/token')) return void res.writeHead(404).end();
        const authorization = String(req.headers.authorization ?? '');
        authorizations.push(authorization);
        const pair = Buffer.from(authorization.replace(/^Basic /, ''), 'base64').toString();
        res.writeHead(401, { 'content-type': 'application/json' }).end(
          JSON.stringify({
            error: 'invalid_client',
            error_description: `client secret ${ECHOED_SECRET} is wrong (sent ${authorization}, password ${pair.split(':')[1]})`,
          }),
        );
      });
    });
    return { ...(await listenOnLoopback(server)), authorizations };
  }
  const ECHOED_SECRET = 'CLIENTSECRET-opqr 7654/&+';

  it('cuts the client secret, in any form, out of what a refusing token endpoint says', async () => {
    const echoing = await startEchoingProvider();
    try {
      const make = (extra: Record<string, unknown>) =>
        registerOAuth2(echoing.url, ECHOED_SECRET, { client_id: 'gh-client', ...extra });

      // The authorization-code exchange at the callback.
      const callback = await callbackWith(await startAuthorizing(await make({})));
      expect(callback.json()).toMatchObject({ status: 502, code: 'oauth2_exchange_failed' });
      expect(callback.json().detail).toContain(`invalid_client: client secret ${REDACTED} is wrong`);

      // The client-credentials grant of a health check, and the history a viewer reads.
      const credentials = await make({ grant: 'client_credentials' });
      const check = await admin.post(`/api/v1/integrations/${credentials}/health-check/`);
      expect(check.json().check).toMatchObject({ status: 'failure' });
      expect(check.json().check.error_message).toContain(`client secret ${REDACTED} is wrong`);
      const viewer = await clientWithRole(t, check.json().integration.organization_id, 'viewer');
      const history = await viewer.get(`/api/v1/integrations/${credentials}/health-checks/`);
      expect(history.statusCode).toBe(200);

      expect(echoing.authorizations).toHaveLength(2);
      const [sent] = echoing.authorizations as [string];
      const password = Buffer.from(sent.replace(/^Basic /, ''), 'base64')
        .toString()
        .split(':')[1] as string;
      expect(password).not.toBe(ECHOED_SECRET);
      for (const shown of [callback.body, check.body, history.body]) {
        for (const form of ['CLIENTSECRET', sent.replace(/^Basic /, ''), password, encodeURIComponent(ECHOED_SECRET)]) {
          expect(shown).not.toContain(form);
        }
      }
    } finally {
      await echoing.close();
    }
  });

  /** A token endpoint that grants every request, with the `expires_in` the test sets; other paths answer 200. */
  async function startGrantingProvider() {
    const state = { expiresIn: undefined as unknown };
    const server = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        if (!req.url?.startsWith('/token')) return void res.writeHead(200).end('ok');
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ access_token: 'granted-token', token_type: 'Bearer', expires_in: state.expiresIn }));
      });
    });
    return { ...(await listenOnLoopback(server)), state };
  }

  it('bounds a token lifetime the provider states beyond ten years, and refuses a negative or unreadable one', async () => {
    const granting = await startGrantingProvider();
    const tenYears = 10 * 366 * 24 * 3600_000;
    try {
      const make = (extra: Record<string, unknown>) => registerOAuth2(granting.url, CLIENT_SECRET, extra);
      for (const expiresIn of [1e300, '1e300', 1e15]) {
        granting.state.expiresIn = expiresIn;
        // The client-credentials grant of a health check.
        const credentials = await make({ grant: 'client_credentials' });
        const check = await admin.post(`/api/v1/integrations/${credentials}/health-check/`);
        expect(check.statusCode, `${expiresIn} → ${check.body}`).toBe(200);
        expect(check.json().check).toMatchObject({ status: 'success' });
        const held = (await admin.get(`/api/v1/integrations/${credentials}`)).json().oauth2_token;
        expect(new Date(held.expires_at).getTime()).toBeLessThanOrEqual(Date.now() + tenYears);
        expect(new Date(held.expires_at).getTime()).toBeGreaterThan(Date.now() + tenYears / 2);

        // The authorization-code exchange at the callback.
        const callback = await callbackWith(await startAuthorizing(await make({})));
        expect(callback.statusCode, `${expiresIn} → ${callback.body}`).toBe(200);
        expect(new Date(callback.json().expires_at).getTime()).toBeLessThanOrEqual(Date.now() + tenYears);
      }
      // Not a lifetime at all: the provider's answer is refused, as any malformed answer, and the check fails.
      for (const expiresIn of [-5, 'soon', 'NaN']) {
        granting.state.expiresIn = expiresIn;
        const credentials = await make({ grant: 'client_credentials' });
        const check = await admin.post(`/api/v1/integrations/${credentials}/health-check/`);
        expect(check.statusCode, `${expiresIn} → ${check.body}`).toBe(200);
        expect(check.json().check).toMatchObject({ status: 'failure' });
        expect(check.json().check.error_message).toContain('expires_in');
        const callback = await callbackWith(await startAuthorizing(await make({})));
        expect(callback.json(), `${expiresIn}`).toMatchObject({ status: 502, code: 'oauth2_exchange_failed' });
      }
    } finally {
      await granting.close();
    }
  });

  it('neither starts nor completes an authorization of a deactivated integration', async () => {
    const echoing = await startEchoingProvider();
    try {
      const id = await registerOAuth2(echoing.url, ECHOED_SECRET);
      // Started while active, then turned off before the provider sends the user back.
      const state = await startAuthorizing(id);
      expect((await admin.post(`/api/v1/integrations/${id}/deactivate/`)).statusCode).toBe(200);

      const again = await admin.post(`/api/v1/integrations/${id}/oauth2/authorize/`, {});
      expect(again.json()).toMatchObject({ status: 409, code: 'integration_inactive' });
      const back = await callbackWith(state);
      expect(back.json()).toMatchObject({ status: 409, code: 'integration_inactive' });
      expect(echoing.authorizations).toEqual([]);
    } finally {
      await echoing.close();
    }
  });
});
