import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, clientWithRole, seedOrganization } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { createEnvelope } from '../../platform/crypto/envelope.js';
import { queryRows } from '../../platform/db/client.js';
import { checkDueIntegrations } from './health-checks.js';

/** A real service on loopback: healthy, failing, slow and redirecting endpoints, remembering what it was sent. */
function startService() {
  const seen: { url: string; headers: IncomingHttpHeaders }[] = [];
  let failing = false;
  /** While set, /held (below any base path) waits for it before answering. */
  let hold: Promise<void> | null = null;
  const server: Server = createServer(async (req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    if (req.url?.endsWith('/held')) {
      await hold;
      res.end('ok');
      return;
    }
    if (req.url === '/slow') {
      setTimeout(() => res.end('late'), 2_000).unref();
      return;
    }
    if (req.url === '/redirect') {
      res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
      return;
    }
    if (req.url?.startsWith('/flaky')) {
      res.writeHead(failing ? 503 : 200).end(failing ? 'unavailable' : 'ok');
      return;
    }
    if (req.url === '/fail') {
      res.writeHead(500).end('boom');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
  });
  return {
    seen,
    setFailing: (value: boolean) => {
      failing = value;
    },
    /** Holds /held until the returned function is called. */
    hold: () => {
      let release = () => {};
      hold = new Promise<void>((resolve) => {
        release = resolve;
      });
      return release;
    },
    listen: () =>
      new Promise<string>((resolve) =>
        server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
      ),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('integration health checks', () => {
  let t: TestApp;
  let admin: Client;
  let service: ReturnType<typeof startService>;
  let baseUrl: string;

  beforeAll(async () => {
    t = await startTestApp();
    const org = await seedOrganization(t);
    admin = await clientWithRole(t, org.id, 'org_admin');
    service = startService();
    baseUrl = await service.listen();
  });
  afterAll(async () => {
    await service.close();
    await t.close();
  });

  async function register(overrides: Record<string, unknown>) {
    const res = await admin.post('/api/v1/integrations/', {
      name: unique('svc '),
      service_type: 'sms_provider',
      auth_type: 'none',
      base_url: baseUrl,
      timeout_ms: 500,
      ...overrides,
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { id: string; organization_id: string };
  }

  const check = async (id: string) => {
    const res = await admin.post(`/api/v1/integrations/${id}/health-check/`);
    expect(res.statusCode, res.body).toBe(200);
    return res.json() as {
      check: { status: string; http_status: number | null; response_time_ms: number; error_message: string | null };
      integration: { health_status: string; consecutive_failures: number; last_health_check_at: string | null };
    };
  };

  it('records a healthy check with the integration’s authentication applied', async () => {
    const token = `tok_${unique('bearer')}_0123456789`;
    const created = await register({ auth_type: 'bearer', health_check_path: '/health', credentials: { token } });
    const result = await check(created.id);
    expect(result.check).toMatchObject({ status: 'success', http_status: 200, error_message: null });
    expect(result.check.response_time_ms).toBeGreaterThanOrEqual(0);
    expect(result.integration).toMatchObject({ health_status: 'HEALTHY', consecutive_failures: 0 });
    expect(result.integration.last_health_check_at).not.toBeNull();
    const request = service.seen.findLast((s) => s.url === '/health');
    expect(request?.headers.authorization).toBe(`Bearer ${token}`);
  });

  it('moves from DEGRADED to DOWN after three consecutive failures and back to HEALTHY on a success', async () => {
    service.setFailing(true);
    const created = await register({ health_check_path: '/flaky' });
    const statuses: string[] = [];
    for (let i = 0; i < 3; i++) {
      const result = await check(created.id);
      expect(result.check).toMatchObject({ status: 'failure', http_status: 503, error_message: 'HTTP 503' });
      statuses.push(result.integration.health_status);
    }
    expect(statuses).toEqual(['DEGRADED', 'DEGRADED', 'DOWN']);
    service.setFailing(false);
    expect((await check(created.id)).integration).toMatchObject({ health_status: 'HEALTHY', consecutive_failures: 0 });

    const history = await admin.get(`/api/v1/integrations/${created.id}/health-checks/?limit=3`);
    expect(history.statusCode).toBe(200);
    const page = history.json() as { results: { status: string }[]; next: string };
    expect(page.results.map((r) => r.status)).toEqual(['success', 'failure', 'failure']);
    const rest = await admin.get(`/api/v1/integrations/${created.id}/health-checks/?limit=3&cursor=${page.next}`);
    expect(rest.json()).toEqual({ results: [expect.objectContaining({ status: 'failure' })], next: null });
  });

  it('records a timeout when the service answers too late', async () => {
    const created = await register({ health_check_path: '/slow', timeout_ms: 200 });
    const result = await check(created.id);
    expect(result.check).toMatchObject({ status: 'timeout', http_status: null });
    expect(result.check.error_message).toContain('200 ms');
    expect(result.integration.health_status).toBe('DEGRADED');
  });

  it('records a failure for a closed port and does not follow redirects', async () => {
    const closed = createServer();
    const port = await new Promise<number>((resolve) =>
      closed.listen(0, '127.0.0.1', () => resolve((closed.address() as AddressInfo).port)),
    );
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const down = await register({ base_url: `http://127.0.0.1:${port}` });
    const result = await check(down.id);
    expect(result.check).toMatchObject({ status: 'failure', http_status: null });
    expect(result.check.error_message).toContain('ECONNREFUSED');

    // A redirect is not followed, so what it points at was never checked: a failure, like any call answered so.
    const redirecting = await register({ health_check_path: '/redirect' });
    const redirected = await check(redirecting.id);
    expect(redirected.check).toMatchObject({ status: 'failure', http_status: 302, error_message: 'HTTP 302' });
    expect(redirected.integration).toMatchObject({ health_status: 'DEGRADED', consecutive_failures: 1 });
    expect(service.seen.filter((s) => s.url.includes('meta-data'))).toEqual([]);
  });

  it('refuses link-local addresses: at registration, and when a name resolves to one', async () => {
    const res = await admin.post('/api/v1/integrations/', {
      name: unique('metadata '),
      service_type: 'other',
      auth_type: 'none',
      base_url: 'http://169.254.169.254/latest',
    });
    expect(res.json()).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
    const mapped = await admin.post('/api/v1/integrations/', {
      name: unique('metadata '),
      service_type: 'other',
      auth_type: 'none',
      base_url: 'http://[::ffff:169.254.169.254]/',
    });
    expect(mapped.json()).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
  });

  it('refuses IPv6 spellings of refused IPv4 addresses and cloud metadata IPv6 addresses, on create and update', async () => {
    const allowed = await admin.post('/api/v1/integrations/', {
      name: unique('allowed '),
      service_type: 'other',
      auth_type: 'none',
      base_url: 'http://[64:ff9b::a00:1]/', // 10.0.0.1 through NAT64: private, allowed like the address
    });
    expect(allowed.statusCode, allowed.body).toBe(201);
    const id = allowed.json().id as string;
    for (const host of [
      '64:ff9b::a9fe:a9fe',
      '::a9fe:a9fe',
      '::ffff:0:a9fe:a9fe',
      '2002:a9fe:a9fe::',
      'fd00:ec2::254',
      '::ffff:0:0:0',
      '2002:e000:1::',
    ]) {
      const created = await admin.post('/api/v1/integrations/', {
        name: unique('metadata '),
        service_type: 'other',
        auth_type: 'none',
        base_url: `http://[${host}]/latest`,
      });
      expect(created.json(), host).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
      const updated = await admin.patch(`/api/v1/integrations/${id}`, { base_url: `http://[${host}]/` });
      expect(updated.json(), host).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
    }
  });

  it('refuses the Alibaba Cloud and Azure metadata addresses in every spelling, on create and update', async () => {
    const allowed = await admin.post('/api/v1/integrations/', {
      name: unique('allowed '),
      service_type: 'other',
      auth_type: 'none',
      base_url: 'http://100.100.100.201/', // the rest of carrier-grade NAT space stays allowed
    });
    expect(allowed.statusCode, allowed.body).toBe(201);
    const id = allowed.json().id as string;
    for (const host of [
      '100.100.100.200', // Alibaba Cloud instance metadata
      '1684301000',
      '0x64.0x64.0x64.0xc8',
      '0144.0144.0144.0310',
      '100.100.25800',
      '100.100.100.200.',
      '[::ffff:100.100.100.200]',
      '[64:ff9b::6464:64c8]',
      '[2002:6464:64c8::]',
      '168.63.129.16', // Azure wire server
      '2822734096',
      '0xa83f8110',
      '0250.077.0201.020',
      '168.4161808',
      '[::ffff:a83f:8110]',
      '[::a83f:8110]',
      '[64:ff9b:1::a83f:8110]',
    ]) {
      const created = await admin.post('/api/v1/integrations/', {
        name: unique('metadata '),
        service_type: 'other',
        auth_type: 'none',
        base_url: `http://${host}/latest`,
      });
      expect(created.json(), host).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
      const updated = await admin.patch(`/api/v1/integrations/${id}`, { base_url: `http://${host}/` });
      expect(updated.json(), host).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
    }
  });

  it('the scheduled sweep checks active integrations that are due, and skips deactivated ones', async () => {
    const org = await seedOrganization(t);
    const other = await clientWithRole(t, org.id, 'org_admin');
    const make = async (name: string) => {
      const res = await other.post('/api/v1/integrations/', {
        name,
        service_type: 'webhook',
        auth_type: 'none',
        base_url: baseUrl,
        health_check_path: `/sweep-${name}`,
        timeout_ms: 500,
      });
      return res.json() as { id: string };
    };
    // Checked first (never checked, oldest first), and broken: its credentials were sealed for another row.
    const broken = await make('broken');
    const active = await make('active');
    const inactive = await make('inactive');
    await other.post(`/api/v1/integrations/${inactive.id}/deactivate`);
    await other.patch(`/api/v1/integrations/${active.id}`, { auth_type: 'bearer', credentials: { token: 't0ken' } });
    await t.database.db.execute(
      sql`update integrations set auth_type = 'bearer', credentials_sealed =
        (select credentials_sealed from integrations where id = ${active.id}::uuid) where id = ${broken.id}::uuid`,
    );

    const envelope = createEnvelope(t.config.masterKey);
    const errors: string[] = [];
    const first = await checkDueIntegrations(
      t.database.db,
      envelope,
      { loopback: true },
      {
        intervalSeconds: 300,
        concurrency: 1,
        onError: (id) => errors.push(id),
      },
    );
    expect(errors).toEqual([broken.id]);
    expect(first.failed).toBe(1);
    expect(first.checked).toBeGreaterThanOrEqual(1);
    expect(service.seen.some((s) => s.url === '/sweep-active')).toBe(true);
    expect(service.seen.some((s) => s.url === '/sweep-inactive')).toBe(false);
    // Just checked: not due again within the interval.
    const before = service.seen.filter((s) => s.url === '/sweep-active').length;
    await checkDueIntegrations(t.database.db, envelope, { loopback: true }, { intervalSeconds: 300 });
    expect(service.seen.filter((s) => s.url === '/sweep-active').length).toBe(before);

    const got = (await other.get(`/api/v1/integrations/${active.id}`)).json();
    expect(got).toMatchObject({ health_status: 'HEALTHY' });
    expect((await other.get(`/api/v1/integrations/${inactive.id}`)).json()).toMatchObject({
      health_status: 'UNKNOWN',
      last_health_check_at: null,
    });
  });

  it('refuses a health_check_path that could leave the host, on create and update, naming it', async () => {
    const created = await register({ health_check_path: '/health' });
    for (const health_check_path of [
      `/\\127.0.0.1:${new URL(baseUrl).port}/steal`,
      '//127.0.0.1/steal',
      '/\t/127.0.0.1/steal',
      '/a\\b',
      '/a\nb',
    ]) {
      for (const res of [
        await admin.post('/api/v1/integrations/', {
          name: unique('bad path '),
          service_type: 'webhook',
          auth_type: 'none',
          base_url: baseUrl,
          health_check_path,
        }),
        await admin.patch(`/api/v1/integrations/${created.id}/`, { health_check_path }),
      ]) {
        expect(res.statusCode, `${JSON.stringify(health_check_path)} → ${res.body}`).toBe(400);
        // In words, never the regular expression.
        expect(res.json().errors).toEqual([
          {
            field: 'health_check_path',
            message: 'Must begin with a single "/", without backslashes or control characters.',
          },
        ]);
      }
    }
    expect((await admin.get(`/api/v1/integrations/${created.id}`)).json().health_check_path).toBe('/health');
    expect(service.seen.some((s) => s.url.includes('steal'))).toBe(false);
  });

  it('keeps a health_check_path below the base URL’s path: dot segments may not climb above it', async () => {
    const base = `${baseUrl}/tenant-a`;
    const create = (health_check_path: string) =>
      admin.post('/api/v1/integrations/', {
        name: unique('dots '),
        service_type: 'webhook',
        auth_type: 'none',
        base_url: base,
        health_check_path,
      });
    for (const health_check_path of ['/../tenant-b/health', '/%2e%2e/tenant-b/health', '/x/../../tenant-b', '/..']) {
      const res = await create(health_check_path);
      expect(res.statusCode, `${health_check_path} → ${res.body}`).toBe(400);
      expect(res.json().errors).toEqual([
        { field: 'health_check_path', message: `"${health_check_path}" leaves the base URL's path (/tenant-a).` },
      ]);
    }
    // Within it, dot segments are harmless.
    const fine = await create('/x/../health');
    expect(fine.statusCode, fine.body).toBe(201);
    const id = fine.json().id as string;
    // Changing the base URL is checked against the stored path too.
    const moved = await admin.patch(`/api/v1/integrations/${id}/`, { base_url: `${baseUrl}/tenant-a/deeper` });
    expect(moved.statusCode).toBe(200);
    expect(
      (await admin.patch(`/api/v1/integrations/${id}/`, { health_check_path: '/../../tenant-b' })).statusCode,
    ).toBe(400);

    // A path stored before the rule: the check fails without calling anything above the base path.
    await t.database.db.execute(
      sql`update integrations set health_check_path = '/../../tenant-b' where id = ${id}::uuid`,
    );
    const now = await admin.post(`/api/v1/integrations/${id}/health-check/`);
    expect(now.statusCode, now.body).toBe(200);
    expect(now.json().check).toMatchObject({ status: 'failure', http_status: null });
    expect(service.seen.some((s) => s.url.includes('tenant-b'))).toBe(false);
  });

  it('records a failed check for a stored path that cannot be called, by hand and from the sweep', async () => {
    const org = await seedOrganization(t);
    const own = await clientWithRole(t, org.id, 'org_admin');
    const res = await own.post('/api/v1/integrations/', {
      name: unique('stored '),
      service_type: 'webhook',
      auth_type: 'none',
      base_url: baseUrl,
      timeout_ms: 500,
    });
    const id = res.json().id as string;
    // Saved before the rules were tightened.
    const stolen = `/\\127.0.0.1:${new URL(baseUrl).port}/steal`;
    await t.database.db.execute(sql`update integrations set health_check_path = ${stolen} where id = ${id}::uuid`);

    const now = await own.post(`/api/v1/integrations/${id}/health-check/`);
    expect(now.statusCode, now.body).toBe(200);
    expect(now.json().check).toMatchObject({ status: 'failure', http_status: null });
    expect(now.json().check.error_message).toMatch(/^health_check_path: /);

    await t.database.db.execute(
      sql`update integrations set last_health_check_at = now() - interval '1 hour' where id = ${id}::uuid`,
    );
    const errors: unknown[] = [];
    await checkDueIntegrations(
      t.database.db,
      createEnvelope(t.config.masterKey),
      { loopback: true },
      {
        intervalSeconds: 300,
        onError: (failed, err) => {
          if (failed === id) errors.push(err);
        },
      },
    );
    expect(errors).toEqual([]);
    const after = (await own.get(`/api/v1/integrations/${id}`)).json();
    expect(after).toMatchObject({ health_status: 'DEGRADED', consecutive_failures: 2 });
    expect(Date.now() - Date.parse(after.last_health_check_at)).toBeLessThan(60_000);
    expect(service.seen.some((s) => s.url.includes('steal'))).toBe(false);
  });

  it('does not check a deactivated integration: 409, and its key is not sent', async () => {
    const key = `key_${unique('off')}_0123456789`;
    const created = await register({ auth_type: 'api_key', health_check_path: '/off', credentials: { api_key: key } });
    await admin.post(`/api/v1/integrations/${created.id}/deactivate/`);
    const res = await admin.post(`/api/v1/integrations/${created.id}/health-check/`);
    expect(res.json()).toMatchObject({ status: 409, code: 'integration_inactive' });
    expect(service.seen.some((s) => s.url === '/off' || s.headers['x-api-key'] === key)).toBe(false);
    expect((await admin.get(`/api/v1/integrations/${created.id}/health-checks/`)).json().results).toEqual([]);
  });

  it('answers 404, not a server error, when the integration is deleted during its check', async () => {
    const created = await register({ health_check_path: '/held', timeout_ms: 10_000 });
    const release = service.hold();
    const before = service.seen.length;
    const running = admin.post(`/api/v1/integrations/${created.id}/health-check/`);
    try {
      while (!service.seen.slice(before).some((s) => s.url === '/held')) await new Promise((r) => setTimeout(r, 10));
      expect((await admin.delete(`/api/v1/integrations/${created.id}/`)).statusCode).toBe(204);
    } finally {
      release();
    }
    const res = await running;
    expect(res.statusCode, res.body).toBe(404);
    expect(res.json()).toMatchObject({ code: 'integration_not_found' });
    expect(
      await queryRows(t.database.db, sql`select 1 from integration_health_checks where integration_id = ${created.id}`),
    ).toEqual([]);
  });

  it('discards a check whose integration changed its address while the check was out', async () => {
    const created = await register({ health_check_path: '/held', timeout_ms: 10_000 });
    const during = async <T>(
      change: Record<string, unknown>,
      check: () => Promise<T> = () => admin.post(`/api/v1/integrations/${created.id}/health-check/`) as Promise<T>,
    ) => {
      const release = service.hold();
      const before = service.seen.length;
      const running = check();
      try {
        while (!service.seen.slice(before).some((s) => s.url.endsWith('/held'))) {
          await new Promise((r) => setTimeout(r, 10));
        }
        const patched = await admin.patch(`/api/v1/integrations/${created.id}/`, change);
        expect(patched.statusCode, patched.body).toBe(200);
      } finally {
        release();
      }
      return running;
    };

    /** No check recorded, and the integration at its new address still unchecked. */
    const expectNeverChecked = async (address: string) => {
      expect(
        await queryRows(
          t.database.db,
          sql`select 1 from integration_health_checks where integration_id = ${created.id}`,
        ),
      ).toEqual([]);
      expect((await admin.get(`/api/v1/integrations/${created.id}/`)).json()).toMatchObject({
        base_url: address,
        health_status: 'UNKNOWN',
        last_health_check_at: null,
      });
    };

    // The answer came from the address the integration has left: nothing is recorded.
    const moved = (await during({ base_url: `${baseUrl}/v2` })) as LightMyRequestResponse;
    expect(moved.statusCode, moved.body).toBe(409);
    expect(moved.json()).toMatchObject({ status: 409, code: 'integration_changed' });
    await expectNeverChecked(`${baseUrl}/v2`);

    // The scheduled sweep discards it too, and leaves the integration due for the next sweep.
    const failures: string[] = [];
    await during({ base_url: `${baseUrl}/v3` }, () =>
      checkDueIntegrations(
        t.database.db,
        createEnvelope(t.config.masterKey),
        { loopback: true },
        {
          intervalSeconds: 300,
          onError: (id) => failures.push(id),
        },
      ),
    );
    expect(failures).not.toContain(created.id);
    await expectNeverChecked(`${baseUrl}/v3`);

    // A change that does not alter the check (its description) leaves the result standing.
    const described = (await during({ description: 'renamed while checked' })) as LightMyRequestResponse;
    expect(described.statusCode, described.body).toBe(200);
    expect(described.json()).toMatchObject({ check: { status: 'success' } });
  });
});

/** An app with INTEGRATIONS_ALLOW_LOOPBACK as given, an organization admin, and a service on loopback. */
function withLoopback(setting: 'on' | 'off') {
  const s = {} as { t: TestApp; admin: Client; service: ReturnType<typeof startService>; baseUrl: string };
  beforeAll(async () => {
    s.t = await startTestApp({ INTEGRATIONS_ALLOW_LOOPBACK: setting });
    const org = await seedOrganization(s.t);
    s.admin = await clientWithRole(s.t, org.id, 'org_admin');
    s.service = startService();
    s.baseUrl = await s.service.listen();
  });
  afterAll(async () => {
    await s.service.close();
    await s.t.close();
  });
  return s;
}
describe('integrations with INTEGRATIONS_ALLOW_LOOPBACK=off', () => {
  const s = withLoopback('off');

  it('refuses loopback in every spelling on create and update, naming the field', async () => {
    const allowed = await s.admin.post('/api/v1/integrations/', {
      name: unique('allowed '),
      service_type: 'other',
      auth_type: 'none',
      base_url: 'http://10.0.0.1/', // private addresses stay allowed
    });
    expect(allowed.statusCode, allowed.body).toBe(201);
    const id = allowed.json().id as string;
    for (const host of [
      '127.0.0.1',
      '127.5.6.7',
      '127.1',
      '2130706433',
      '0x7f.0.0.1',
      '0177.0.0.1',
      'localhost',
      'api.localhost',
      'localhost.',
      'LOCALHOST.',
      'foo.localhost.',
      'localhost.localdomain',
      'localhost.localdomain.',
      '[::1]',
      '[0:0:0:0:0:0:0:1]',
      '[::ffff:127.0.0.1]',
      '[::ffff:0:7f00:1]',
      '[::127.0.0.2]',
      '[64:ff9b::7f00:1]',
      '[64:ff9b:1::7f00:1]',
      '[2002:7f00:1::]',
    ]) {
      const created = await s.admin.post('/api/v1/integrations/', {
        name: unique('loopback '),
        service_type: 'other',
        auth_type: 'none',
        base_url: `http://${host}:22/`,
      });
      expect(created.json(), host).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
      const updated = await s.admin.patch(`/api/v1/integrations/${id}`, { base_url: `http://${host}:22/` });
      expect(updated.json(), host).toMatchObject({ status: 400, errors: [{ field: 'base_url' }] });
    }
    const token = await s.admin.post('/api/v1/integrations/', {
      name: unique('loopback '),
      service_type: 'other',
      auth_type: 'oauth2',
      base_url: 'https://crm.example.com',
      oauth2: { token_url: 'http://127.0.0.1:8080/token', client_id: 'gatehouse' },
      credentials: {},
    });
    expect(token.json()).toMatchObject({ status: 400, errors: [{ field: 'oauth2.token_url' }] });
  });

  it('refuses the call of an integration stored with a loopback address, at connect', async () => {
    const created = await s.admin.post('/api/v1/integrations/', {
      name: unique('stored '),
      service_type: 'other',
      auth_type: 'none',
      base_url: 'http://10.0.0.1/',
    });
    const id = created.json().id as string;
    // As stored while loopback was allowed.
    await s.t.database.db.execute(sql`update integrations set base_url = ${s.baseUrl} where id = ${id}`);
    const seen = s.service.seen.length;
    const res = await s.admin.post(`/api/v1/integrations/${id}/health-check/`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().check).toMatchObject({ status: 'failure', http_status: null });
    expect(res.json().check.error_message).toContain('127.0.0.1');
    expect(s.service.seen.length).toBe(seen);
  });
});

describe('integrations with INTEGRATIONS_ALLOW_LOOPBACK=on (the default)', () => {
  const s = withLoopback('on');

  it('registers and calls a service on loopback', async () => {
    const created = await s.admin.post('/api/v1/integrations/', {
      name: unique('local '),
      service_type: 'other',
      auth_type: 'none',
      base_url: s.baseUrl,
      health_check_path: '/health',
    });
    expect(created.statusCode, created.body).toBe(201);
    for (const host of ['[::1]', 'localhost', '[::ffff:127.0.0.1]']) {
      const other = await s.admin.post('/api/v1/integrations/', {
        name: unique('local '),
        service_type: 'other',
        auth_type: 'none',
        base_url: `http://${host}:8080/`,
      });
      expect(other.statusCode, host).toBe(201);
    }
    const res = await s.admin.post(`/api/v1/integrations/${created.json().id}/health-check/`);
    expect(res.json().check).toMatchObject({ status: 'success', http_status: 200 });
  });
});
