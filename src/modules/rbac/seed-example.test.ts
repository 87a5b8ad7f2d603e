import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Client, loginAs, seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { COMMAND_LINE } from '../../cli/context.js';
import { findOrganizationByCode } from '../organizations/organizations.queries.js';
import { applySetupFile } from './setup-file.apply.js';
import { parseSetupFile } from './setup-file.parse.js';

/** The seed-002 example, loaded from the shipped file, working through the API. */

const EXAMPLE = join(dirname(fileURLToPath(import.meta.url)), '../../../examples/rbac.yaml');

let t: TestApp;
let root: Client;
let defaultOrgId: string;

beforeAll(async () => {
  t = await startTestApp();
  root = await superuserClient(t);
  await applySetupFile(t.database.db, parseSetupFile(readFileSync(EXAMPLE, 'utf8'), 'rbac.yaml'), COMMAND_LINE);
  const org = await findOrganizationByCode(t.database.db, 'DEFAULT');
  if (!org) throw new Error('the example creates DEFAULT');
  defaultOrgId = org.id;
});
afterAll(() => t.close());

async function memberWith(role: string): Promise<{ id: string; client: Client }> {
  const user = await seedUser(t, defaultOrgId);
  const res = await root.post(`/api/v1/users/${user.id}/roles/`, { role });
  expect(res.statusCode).toBe(201);
  return { id: user.id, client: await loginAs(t, user) };
}

const authorize = async (userId: string, need: { permission?: string; module?: string }) =>
  (await root.post('/api/v1/authorize/', { user_id: userId, ...need })).json();

it('gives an engineer the PID and PFD rights the example grants, and nothing else', async () => {
  const engineer = await memberWith('engineer');
  expect(await authorize(engineer.id, { permission: 'pid.create' })).toEqual({
    allowed: true,
    reason: 'Role "engineer" grants permission "pid.create".',
  });
  expect((await authorize(engineer.id, { module: 'PID' })).allowed).toBe(true);
  expect(await authorize(engineer.id, { permission: 'qhse.view' })).toEqual({
    allowed: false,
    reason: 'No role of the user grants permission "qhse.view".',
  });
  expect((await authorize(engineer.id, { module: 'QHSE' })).allowed).toBe(false);
  expect((await engineer.client.get('/api/v1/users/profile/permissions/')).json()).toMatchObject({
    permissions: ['pfd.view', 'pid.create', 'pid.view'],
    modules: ['PFD', 'PID'],
    level: 4,
    roles: [{ code: 'engineer', is_primary: true }],
  });
  // Application permissions open no Gatehouse administration.
  expect((await engineer.client.get('/api/v1/users/')).statusCode).toBe(403);
});

it('resolves super_admin to DEFAULT’s own role, which runs DEFAULT and nothing else', async () => {
  const admin = await memberWith('super_admin');
  const held = (await root.get(`/api/v1/users/${admin.id}/roles/`)).json().results;
  expect(held).toMatchObject([{ role: 'super_admin', organization: 'DEFAULT', level: 0 }]);
  expect((await authorize(admin.id, { permission: 'qhse.delete' })).allowed).toBe(true);
  expect((await authorize(admin.id, { module: 'GATEHOUSE' })).allowed).toBe(true);

  const colleague = await seedUser(t, defaultOrgId);
  const other = await seedOrganization(t);
  const stranger = await seedUser(t, other.id);
  expect((await admin.client.get(`/api/v1/users/${colleague.id}/`)).statusCode).toBe(200);
  expect((await admin.client.get(`/api/v1/users/${stranger.id}/`)).statusCode).toBe(404);
  expect((await admin.client.post(`/api/v1/users/${colleague.id}/roles/`, { role: 'auditor' })).statusCode).toBe(201);
  expect((await authorize(colleague.id, { permission: 'pfd.view' })).allowed).toBe(true);
});
