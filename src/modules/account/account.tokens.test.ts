import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastMailTo } from '../../../test/mail.js';
import { scimClient } from '../../../test/scim-client.js';
import { type Client, seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { queryRows } from '../../platform/db/client.js';
import { runPendingJobs } from '../../platform/jobs/worker.js';
import { mailOutbox } from '../../platform/mail/outbox.table.js';
import type { User } from '../users/users.table.js';

const PLATFORM_KEY = 'platform-provisioning-key-tokens-0123456789';
const NEW_PASSWORD = 'violet kettle maps 42';

let t: TestApp;
let admin: Client;
beforeAll(async () => {
  t = await startTestApp({ PROVISIONING_API_KEY: PLATFORM_KEY });
  admin = await superuserClient(t);
});
afterAll(() => t.close());

const post = (url: string, payload: object) => t.request({ method: 'POST', url, payload });
const provisioning = (method: 'POST' | 'PUT', url: string, payload?: object) =>
  t.request({
    method,
    url: `/api/provisioning${url}`,
    headers: { authorization: `Bearer ${PLATFORM_KEY}` },
    ...(payload ? { payload } : {}),
  });

/** The token of the newest mail to an address (queued work run first, as the worker would). */
async function lastTokenTo(address: string): Promise<string> {
  const { token } = await lastMailTo(t, address);
  if (!token) throw new Error(`no token mailed to ${address}`);
  return token;
}

async function resetToken(user: User): Promise<string> {
  expect((await post('/api/v1/users/password-reset/', { email: user.email })).statusCode).toBe(202);
  return lastTokenTo(user.email);
}

async function inviteToken(user: User): Promise<string> {
  expect((await admin.post(`/api/v1/users/${user.id}/invite/`)).statusCode).toBe(202);
  return lastTokenTo(user.email);
}

const confirm = (token: string) => post('/api/v1/users/password-reset/confirm/', { token, new_password: NEW_PASSWORD });
const verify = (token: string) => post('/api/v1/users/verify-email/', { token });

function expectInvalidToken(res: Awaited<ReturnType<typeof confirm>>) {
  expect(res.statusCode, res.body).toBe(400);
  expect(res.json()).toMatchObject({ code: 'invalid_token', errors: [{ field: 'token' }] });
}

describe('a password set by an administrator ends the reset links mailed before', () => {
  it('so that an older link cannot undo it; the email verification link still works', async () => {
    const org = await seedOrganization(t);
    const email = `${unique('pw')}@example.com`;
    const registered = await post('/api/v1/users/register/', { email, password: NEW_PASSWORD, organization: org.code });
    expect(registered.statusCode).toBe(201);
    const user = registered.json() as User;
    const verification = await lastTokenTo(email);
    const reset = await resetToken({ ...user, email });
    const patched = await admin.patch(`/api/v1/users/${user.id}/`, { password: 'amber ladder tunes 77' });
    expect(patched.statusCode, patched.body).toBe(200);
    expectInvalidToken(await confirm(reset));
    expect((await verify(verification)).statusCode).toBe(200);
  });
});

describe('a change of email ends the tokens mailed to the old address', () => {
  it('through the admin API: reset and verification links stop working', async () => {
    const org = await seedOrganization(t);
    const email = `${unique('old')}@example.com`;
    const registered = await post('/api/v1/users/register/', { email, password: NEW_PASSWORD, organization: org.code });
    expect(registered.statusCode).toBe(201);
    const user = registered.json() as User;
    const verification = await lastTokenTo(email);
    const reset = await resetToken({ ...user, email });

    const patched = await admin.patch(`/api/v1/users/${user.id}/`, { email: `${unique('new')}@example.com` });
    expect(patched.statusCode, patched.body).toBe(200);

    expectInvalidToken(await confirm(reset));
    expectInvalidToken(await verify(verification));
  });

  it('through the admin API: an invitation stops working', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id, { passwordHash: null });
    const invitation = await inviteToken(user);
    await admin.patch(`/api/v1/users/${user.id}/`, { email: `${unique('new')}@example.com` });
    expectInvalidToken(await confirm(invitation));
  });

  it('through the seed-000 provisioning API (the core SCIM and the import share)', async () => {
    const org = await seedOrganization(t);
    const keycloakId = unique('kc-');
    const body = { keycloak_id: keycloakId, email: `${keycloakId}@example.com`, engagemx_client_id: org.code };
    expect((await provisioning('POST', '/users', body)).statusCode).toBe(201);
    const user = (await provisioning('POST', '/users', body)).json() as { id: string };
    const invitation = await inviteToken({ id: user.id, email: body.email } as User);

    const moved = await provisioning('POST', '/users', { ...body, email: `${unique('new')}@example.com` });
    expect(moved.statusCode, moved.body).toBe(200);
    expectInvalidToken(await confirm(invitation));
  });

  it('through SCIM', async () => {
    const { scim } = await scimClient(t);
    const name = `${unique('scim')}@example.com`;
    const created = await scim('POST', '/Users', {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName: name,
      emails: [{ value: name, primary: true }],
      active: true,
    });
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json().id as string;
    const invitation = await inviteToken({ id, email: name } as User);
    const patched = await scim('PATCH', `/Users/${id}`, {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
      Operations: [{ op: 'replace', path: 'emails[primary eq true].value', value: `${unique('new')}@example.com` }],
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expectInvalidToken(await confirm(invitation));
  });

  it('keeps them when only the letter case changes (the same mailbox), or when other fields change', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const reset = await resetToken(user);
    await admin.patch(`/api/v1/users/${user.id}/`, { email: user.email.toUpperCase(), first_name: 'Ada' });
    expect((await confirm(reset)).statusCode).toBe(200);
  });

  it('and the new address is unverified until its owner verifies it (a change of letter case keeps it verified)', async () => {
    const org = await seedOrganization(t);
    const verified = async (id: string) => (await admin.get(`/api/v1/users/${id}/`)).json().email_verified;
    // The admin API.
    const user = await seedUser(t, org.id, { emailVerified: true });
    await admin.patch(`/api/v1/users/${user.id}/`, { email: user.email.toUpperCase() });
    expect(await verified(user.id)).toBe(true);
    await admin.patch(`/api/v1/users/${user.id}/`, { first_name: 'Ada' });
    expect(await verified(user.id)).toBe(true);
    await admin.patch(`/api/v1/users/${user.id}/`, { email: `${unique('new')}@example.com` });
    expect(await verified(user.id)).toBe(false);
    // The seed-000 upsert (its retried insert that meets the user goes the same way).
    const keycloakId = unique('kc-');
    const provisioned = await seedUser(t, org.id, { emailVerified: true, externalId: keycloakId });
    const body = { keycloak_id: keycloakId, email: `${unique('moved')}@example.com`, engagemx_client_id: org.code };
    expect((await provisioning('POST', '/users', body)).statusCode).toBe(200);
    expect(await verified(provisioned.id)).toBe(false);
    // A link mailed to the new address and used proves it again.
    expect((await confirm(await resetToken({ ...provisioned, email: body.email }))).statusCode).toBe(200);
    expect(await verified(provisioned.id)).toBe(true);
  });
});

describe('leaving the active state ends the tokens, as it ends sessions', () => {
  it.each([
    ['POST /deactivate', (id: string) => admin.post(`/api/v1/users/${id}/deactivate/`)],
    ['PATCH is_active false', (id: string) => admin.patch(`/api/v1/users/${id}/`, { is_active: false })],
    ['PATCH status suspended', (id: string) => admin.patch(`/api/v1/users/${id}/`, { status: 'suspended' })],
  ])('through the admin API (%s): the reset link answers 400 invalid_token, also once reactivated', async (_, act) => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const reset = await resetToken(user);
    expect((await act(user.id)).statusCode).toBe(200);
    expectInvalidToken(await confirm(reset));
    await admin.patch(`/api/v1/users/${user.id}/`, { status: 'active' });
    expectInvalidToken(await confirm(reset));
  });

  it('through the provisioning deactivate call', async () => {
    const org = await seedOrganization(t);
    const keycloakId = unique('kc-');
    const body = { keycloak_id: keycloakId, email: `${keycloakId}@example.com`, engagemx_client_id: org.code };
    const user = (await provisioning('POST', '/users', body)).json() as { id: string };
    const invitation = await inviteToken({ id: user.id, email: body.email } as User);
    expect((await provisioning('PUT', `/users/${keycloakId}/deactivate`)).statusCode).toBe(200);
    expectInvalidToken(await confirm(invitation));
  });

  it("when the user's organization is deactivated", async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const reset = await resetToken(user);
    expect((await admin.patch(`/api/v1/organizations/${org.id}/`, { is_active: false })).statusCode).toBe(200);
    expectInvalidToken(await confirm(reset));
    await admin.patch(`/api/v1/organizations/${org.id}/`, { is_active: true });
    expectInvalidToken(await confirm(reset));
  });
});

describe('deleting a user takes the mail to them out of the outbox', () => {
  it('delivered and still queued, by the admin API and SCIM; mail to others stays', async () => {
    const { org, scim } = await scimClient(t);
    const ann = await seedUser(t, org.id);
    const cid = await seedUser(t, org.id, { passwordHash: null });
    const bea = await seedUser(t, org.id);
    await resetToken(ann);
    await resetToken(bea);
    // Queued, its delivery not yet run.
    expect((await admin.post(`/api/v1/users/${cid.id}/invite/`)).statusCode).toBe(202);

    expect((await admin.delete(`/api/v1/users/${ann.id}/`)).statusCode).toBe(204);
    expect((await scim('DELETE', `/Users/${cid.id}`)).statusCode).toBe(204);

    for (const gone of [ann, cid]) {
      const left = await queryRows(
        t.database.db,
        sql`select id from ${mailOutbox} where lower(to_address) = lower(${gone.email}) or text_body ilike ${`%${gone.email}%`}`,
      );
      expect(left).toEqual([]);
    }
    // The invitation's delivery finds nothing to send, and fails nothing.
    await runPendingJobs(t.database, { config: t.config, log: t.app.log });
    const failed = await queryRows(t.database.db, sql`select id from ${mailOutbox} where status = 'failed'`);
    expect(failed).toEqual([]);
    const { mail } = await lastMailTo(t, bea.email);
    expect(mail?.subject).toBe('Reset your password');
  });
});
