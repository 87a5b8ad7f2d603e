// Seed 000's Django client against a running Gatehouse, over real HTTP: first the service class
// itself (Python, verbatim from the seed, when python3 with `requests` is present), then the same
// calls replayed byte for byte as the class builds them (URLs, headers, bodies), from Node.
import { execFileSync, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedOrganization } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { createApiKey, OPERATOR } from '../api-keys/api-keys.service.js';

const PLATFORM_KEY = 'seed-000-platform-key-0123456789';
const CLIENT = join(dirname(fileURLToPath(import.meta.url)), 'fixtures/seed-000-client.py');

function hasPythonRequests(): boolean {
  try {
    execFileSync('python3', ['-c', 'import requests'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

type Call = { method: string; args: unknown[] };
type Result = { ok: true; value: unknown } | { ok: false; error: string };

function runDjangoService(baseUrl: string, key: string, calls: Call[]): Promise<Result[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('python3', [CLIENT], {
      env: { ...process.env, DEBT_COLLECTION_API_BASE_URL: baseUrl, DEBT_COLLECTION_API_KEY: key },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`python exited ${code}: ${err}`));
      else resolve(JSON.parse(out) as Result[]);
    });
    child.stdin.end(JSON.stringify(calls));
  });
}

describe('seed 000 Django client against Gatehouse over HTTP', () => {
  let t: TestApp;
  let baseUrl: string;

  beforeAll(async () => {
    t = await startTestApp({ PROVISIONING_API_KEY: PLATFORM_KEY });
    const address = await t.app.listen({ host: '127.0.0.1', port: 0 });
    baseUrl = `${address}/api/provisioning`;
  });
  afterAll(() => t.close());

  /** A Django user as the seed's model and admin actions turn it into `user_data`. */
  function djangoUser(clientId: string, overrides: Record<string, unknown> = {}) {
    const keycloakId = unique('kc-');
    return {
      keycloak_id: keycloakId,
      email: `${keycloakId}@medical.example`,
      first_name: 'John',
      last_name: 'Doe',
      engagemx_client_id: clientId,
      is_active: true,
      ...overrides,
    };
  }

  it.skipIf(!hasPythonRequests())('runs the seed service class unchanged (python3 + requests)', async () => {
    const clientId = unique('client_medical_group_');
    const one = djangoUser(clientId);
    const two = djangoUser(clientId);
    const three = djangoUser(clientId);
    const results = await runDjangoService(baseUrl, PLATFORM_KEY, [
      { method: 'provision_user', args: [one] },
      { method: 'provision_user', args: [{ ...one, last_name: 'Smith' }] },
      // sync_users_to_debt_collection: a user without a keycloak_id is sent as None.
      { method: 'bulk_provision_users', args: [[two, three, { ...djangoUser(clientId), keycloak_id: null }]] },
      { method: 'get_user', args: [one.keycloak_id] },
      { method: 'get_user', args: ['no-such-user'] },
      { method: 'deactivate_user', args: [one.keycloak_id] },
      { method: 'deactivate_user', args: [one.keycloak_id] },
      { method: 'list_users_by_client', args: [clientId] },
      { method: 'list_users_by_client', args: ['no-such-client'] },
    ]);
    const values = results.map((r) => {
      expect(r.ok, JSON.stringify(r)).toBe(true);
      return (r as { value: Record<string, unknown> }).value;
    });
    const [created, updated, bulk, fetched, missing, deactivated, again, listed, empty] = values;
    expect(created).toMatchObject({
      keycloak_id: one.keycloak_id,
      email: one.email,
      engagemx_client_id: clientId,
      is_active: true,
      action: 'created',
      message: 'User successfully created',
    });
    expect(updated).toMatchObject({ id: created?.id, action: 'updated', last_name: 'Smith' });
    // What the admin action and the management command read.
    expect(bulk).toMatchObject({ success_count: 2, error_count: 1 });
    expect((bulk as { errors: unknown[] }).errors).toEqual([
      expect.objectContaining({ index: 2, keycloak_id: null, code: 'validation_failed' }),
    ]);
    expect(fetched).toMatchObject({ id: created?.id, email: one.email, engagemx_client_id: clientId, is_active: true });
    expect(missing).toBeNull();
    expect(deactivated).toMatchObject({ action: 'deactivated', user: { id: created?.id, is_active: false } });
    expect(again).toMatchObject({ action: 'deactivated' });
    expect(listed).toHaveLength(3);
    expect(empty).toEqual([]);
  });

  it('answers the calls as the service class builds them', async () => {
    const org = await seedOrganization(t);
    const { key } = await createApiKey(t.database.db, OPERATOR, {
      name: 'django',
      organization: org.code,
      scopes: ['provisioning'],
    });
    // DebtCollectionService.__init__: these headers on every call.
    const headers = { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };
    const user = djangoUser(org.code);

    // provision_user: requests.post(f"{base_url}/users", json=user_data, headers=headers)
    let res = await fetch(`${baseUrl}/users`, { method: 'POST', headers, body: JSON.stringify(user) });
    expect(res.status).toBe(201);
    const created = (await res.json()) as Record<string, unknown>;
    expect(created).toMatchObject({ action: 'created', keycloak_id: user.keycloak_id });

    // bulk_provision_users: json=users_data (a list)
    res = await fetch(`${baseUrl}/users/bulk`, {
      method: 'POST',
      headers,
      body: JSON.stringify([user, djangoUser(org.code)]),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ success_count: 2, error_count: 0, errors: [] });

    // get_user: 404 → None, else .json()
    res = await fetch(`${baseUrl}/users/${user.keycloak_id}`, { headers });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ id: created.id, created_at: expect.any(String) });
    expect((await fetch(`${baseUrl}/users/absent-${unique()}`, { headers })).status).toBe(404);

    // deactivate_user: requests.put with the JSON content type and no body
    res = await fetch(`${baseUrl}/users/${user.keycloak_id}/deactivate`, { method: 'PUT', headers });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ action: 'deactivated', user: { is_active: false } });

    // list_users_by_client: params={'client_id': client_id}; reads .get('users', [])
    res = await fetch(`${baseUrl}/users?client_id=${encodeURIComponent(org.code)}`, { headers });
    expect(res.status).toBe(200);
    const list = (await res.json()) as { users: unknown[]; count: number; client_id: string };
    expect(list).toMatchObject({ client_id: org.code, count: 2 });
    expect(list.users).toHaveLength(2);

    // raise_for_status() on refusals: problem+json with a 4xx.
    res = await fetch(`${baseUrl}/users`, { method: 'POST', headers, body: JSON.stringify({ ...user, email: 'x' }) });
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
  });
});
