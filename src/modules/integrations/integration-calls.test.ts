import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, clientWithRole, seedOrganization } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { createEnvelope, type Envelope } from '../../platform/crypto/envelope.js';
import { queryRows } from '../../platform/db/client.js';
import { REDACTED } from '../../platform/secret-text.js';
import { callIntegration, MAX_LOGGED_BODY } from './integration-calls.js';

describe('calling an integration', () => {
  let t: TestApp;
  let admin: Client;
  let envelope: Envelope;
  let baseUrl: string;
  const seen: { method: string; url: string; headers: IncomingHttpHeaders; body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      if (req.url?.startsWith('/v1/echo-key')) {
        // A service that names the key it was given in its error text.
        const key = String(req.headers['x-key'] ?? req.headers.authorization ?? '');
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ error: `bad key ${key}` }));
      } else if (req.url?.startsWith('/v1/error')) {
        res.writeHead(500, { 'content-type': 'application/json' }).end('{"error":"internal"}');
      } else if (req.url?.startsWith('/v1/moved')) {
        res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
      } else if (req.url?.startsWith('/v1/big')) {
        res.writeHead(200, { 'content-type': 'text/plain' }).end('x'.repeat(20_000));
      } else {
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(
            JSON.stringify({ id: 'msg_1', access_token: 'issued-secret-token', echo: body ? JSON.parse(body) : null }),
          );
      }
    });
  });

  beforeAll(async () => {
    t = await startTestApp();
    envelope = createEnvelope(t.config.masterKey);
    const org = await seedOrganization(t);
    admin = await clientWithRole(t, org.id, 'org_admin');
    baseUrl = await new Promise<string>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`)),
    );
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await t.close();
  });

  async function register(overrides: Record<string, unknown>) {
    const res = await admin.post('/api/v1/integrations/', {
      name: unique('sms '),
      service_type: 'sms_provider',
      auth_type: 'api_key',
      base_url: baseUrl,
      ...overrides,
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { id: string; organization_id: string };
  }
  const target = (i: { id: string; organization_id: string }) => ({
    organizationId: i.organization_id,
    integrationId: i.id,
  });

  it('applies the API key, logs the call with secrets redacted and counts it', async () => {
    const apiKey = `key_${unique('live')}_abcdefgh`;
    const created = await register({ api_key_header: 'X-Key', credentials: { api_key: apiKey } });
    const response = await callIntegration(t.database.db, envelope, { loopback: true }, target(created), {
      method: 'POST',
      path: '/messages',
      query: { to: '+15550100', api_key: 'query-secret' },
      body: { to: '+15550100', text: 'hello', password: 'body-secret' },
    });
    expect(response).toMatchObject({ success: true, status: 200, error: null });
    expect(JSON.parse(response.body)).toMatchObject({ id: 'msg_1' });

    const request = seen.findLast((s) => s.url.startsWith('/v1/messages'));
    expect(request?.headers['x-key']).toBe(apiKey);
    expect(JSON.parse(request?.body ?? '{}')).toMatchObject({ password: 'body-secret' });

    const logs = await admin.get(`/api/v1/integrations/${created.id}/logs/`);
    expect(logs.statusCode).toBe(200);
    const [log] = (logs.json() as { results: Record<string, unknown>[] }).results;
    expect(log).toMatchObject({
      method: 'POST',
      endpoint: `/v1/messages?to=%2B15550100&api_key=${encodeURIComponent(REDACTED)}`,
      response_status: 200,
      success: true,
      error_message: null,
    });
    expect((log?.request_headers ?? {}) as Record<string, string>).toMatchObject({ 'X-Key': REDACTED });
    expect(JSON.parse(log?.request_body as string)).toEqual({ to: '+15550100', text: 'hello', password: REDACTED });
    expect(JSON.parse(log?.response_body as string)).toMatchObject({ id: 'msg_1', access_token: REDACTED });

    // Nowhere in the stored log, in any form.
    const raw = JSON.stringify(
      await queryRows(t.database.db, sql`select * from integration_logs where integration_id = ${created.id}::uuid`),
    );
    for (const secret of [apiKey, 'query-secret', 'body-secret', 'issued-secret-token']) {
      expect(raw).not.toContain(secret);
    }

    expect((await admin.get(`/api/v1/integrations/${created.id}`)).json()).toMatchObject({
      total_requests: 1,
      failed_requests: 0,
      success_rate: 100,
      health_status: 'HEALTHY',
    });
  });

  it('cuts the credentials out of what the service answers, wherever it puts them', async () => {
    for (const [auth, credentials] of [
      ['api_key', { api_key: `key_${unique('echo')}_abcdefgh` }],
      ['bearer', { token: `tok_${unique('echo')}_abcdefgh` }],
    ] as const) {
      const created = await register({ auth_type: auth, api_key_header: 'X-Key', credentials });
      const secret = Object.values(credentials)[0] as string;
      const response = await callIntegration(t.database.db, envelope, { loopback: true }, target(created), {
        method: 'POST',
        path: '/echo-key',
        body: { note: `sent with ${secret}` },
      });
      expect(response).toMatchObject({ success: false, status: 401 });
      expect(response.body).toContain(REDACTED);
      expect(response.body).not.toContain(secret);
      const raw = JSON.stringify(
        await queryRows(t.database.db, sql`select * from integration_logs where integration_id = ${created.id}::uuid`),
      );
      expect(raw).not.toContain(secret);
      expect(raw).toContain('bad key');
    }
  });

  it('counts failures into the success rate and health, and truncates large bodies', async () => {
    const created = await register({
      auth_type: 'basic',
      credentials: { username: 'svc', password: 'pw-basic' },
    });
    await callIntegration(t.database.db, envelope, { loopback: true }, target(created), { method: 'GET', path: '/ok' });
    const failed = await callIntegration(t.database.db, envelope, { loopback: true }, target(created), {
      method: 'GET',
      path: '/error',
    });
    expect(failed).toMatchObject({ success: false, status: 500, error: 'HTTP 500' });
    const big = await callIntegration(t.database.db, envelope, { loopback: true }, target(created), {
      method: 'GET',
      path: '/big',
    });
    expect(big.body).toHaveLength(20_000);

    const sent = seen.findLast((s) => s.url === '/v1/ok');
    expect(sent?.headers.authorization).toBe(`Basic ${Buffer.from('svc:pw-basic').toString('base64')}`);

    expect((await admin.get(`/api/v1/integrations/${created.id}`)).json()).toMatchObject({
      total_requests: 3,
      failed_requests: 1,
      success_rate: 66.67,
      consecutive_failures: 0,
      health_status: 'HEALTHY',
    });

    const page = (await admin.get(`/api/v1/integrations/${created.id}/logs?limit=2`)).json() as {
      results: { endpoint: string; response_body: string; request_headers: Record<string, string> }[];
      next: string;
    };
    expect(page.results.map((r) => r.endpoint)).toEqual(['/v1/big', '/v1/error']);
    expect(page.results[0]?.response_body.length).toBeLessThan(MAX_LOGGED_BODY + 100);
    expect(page.results[0]?.response_body).toMatch(/…\[truncated 15904 characters\]$/);
    expect(page.results[0]?.request_headers.authorization).toBe(REDACTED);
    const rest = (await admin.get(`/api/v1/integrations/${created.id}/logs?limit=2&cursor=${page.next}`)).json();
    expect(rest).toMatchObject({ results: [{ endpoint: '/v1/ok' }], next: null });
    const failures = (await admin.get(`/api/v1/integrations/${created.id}/logs?success=false`)).json() as {
      results: { endpoint: string }[];
    };
    expect(failures.results.map((r) => r.endpoint)).toEqual(['/v1/error']);
  });

  it('logs and counts a call answered with a redirect, which is not followed, as a failure', async () => {
    const created = await register({ credentials: { api_key: 'redirected-key-0123456789' } });
    const moved = await callIntegration(t.database.db, envelope, { loopback: true }, target(created), {
      method: 'PUT',
      path: '/moved',
    });
    expect(moved).toMatchObject({ success: false, status: 302, error: 'HTTP 302' });
    const logs = (await admin.get(`/api/v1/integrations/${created.id}/logs`)).json();
    expect(logs.results).toEqual([
      expect.objectContaining({ response_status: 302, success: false, error_message: 'HTTP 302' }),
    ]);
    expect((await admin.get(`/api/v1/integrations/${created.id}`)).json()).toMatchObject({
      failed_requests: 1,
      consecutive_failures: 1,
      health_status: 'DEGRADED',
    });
  });

  it('refuses to call a deactivated integration or one of another organization', async () => {
    const created = await register({ auth_type: 'none' });
    await admin.post(`/api/v1/integrations/${created.id}/deactivate`);
    await expect(
      callIntegration(t.database.db, envelope, { loopback: true }, target(created), { method: 'GET', path: '/ok' }),
    ).rejects.toMatchObject({ status: 409, code: 'integration_inactive' });

    const other = await seedOrganization(t);
    await expect(
      callIntegration(
        t.database.db,
        envelope,
        { loopback: true },
        { organizationId: other.id, integrationId: created.id },
        {
          method: 'GET',
          path: '/ok',
        },
      ),
    ).rejects.toMatchObject({ status: 404, code: 'integration_not_found' });
    expect((await admin.get(`/api/v1/integrations/${created.id}/logs`)).json()).toEqual({ results: [], next: null });
  });
});
