import { randomBytes } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COMMAND_LINE } from '../../src/cli/context.js';
import { sealAuditEvents, verifyAuditChain } from '../../src/modules/activity/audit-seal.js';
import { recordReseal, resealSecrets } from '../../src/modules/master-key/master-key.service.js';
import { rotateSigningKey } from '../../src/modules/signing-keys/signing-keys.service.js';
import { users } from '../../src/modules/users/users.table.js';
import { createEnvelope, masterKeyId } from '../../src/platform/crypto/envelope.js';
import { type DbOrTx, queryRows } from '../../src/platform/db/client.js';
import { lastMailTo } from '../mail.js';
import {
  type Client,
  clientWithRole,
  loginAs,
  seedOrganization,
  seedUser,
  superuserClient,
  TEST_PASSWORD,
} from '../seed.js';
import { startTestApp, type TestApp, unique } from '../test-app.js';

/**
 * Every security-relevant change in the product leaves an audit event written in the transaction of
 * the change. Each case below makes one change through the API and names the event it must leave;
 * then, for each event type, the audit insert is made to fail (a CHECK constraint on `activities`)
 * and the change must not have happened either: the change and its record commit together or not at all.
 */
interface Event {
  activity_type: string;
  user_id: string | null;
  organization_id: string | null;
  actor_type: string;
  actor_id: string | null;
  object_id: string | null;
  success: boolean;
  details: Record<string, unknown>;
}

describe('audit coverage', () => {
  let t: TestApp;
  let superuser: Client;
  let org: Awaited<ReturnType<typeof seedOrganization>>;
  let admin: Client;

  beforeAll(async () => {
    t = await startTestApp({ LOCKOUT_THRESHOLD: '3' });
    superuser = await superuserClient(t);
    org = await seedOrganization(t);
    admin = await clientWithRole(t, org.id, 'org_admin');
  });
  afterAll(() => t.close());

  const eventsSince = async (since: string, type: string) =>
    queryRows<Event>(
      t.database.db,
      sql`select activity_type, user_id, organization_id, actor_type, actor_id, object_id, success, details
        from activities where kind = 'audit' and activity_type = ${type} and timestamp >= ${since}::timestamptz
        order by timestamp, id`,
    );
  const marker = async () =>
    (await queryRows<{ at: string }>(t.database.db, sql`select clock_timestamp()::text as at`))[0]?.at as string;

  /** Runs `change`, then expects exactly the named events since it began. */
  async function expectAudited(types: string[], change: () => Promise<unknown>): Promise<Event[]> {
    const before = await marker();
    await change();
    const found: Event[] = [];
    for (const type of types) {
      const events = await eventsSince(before, type);
      expect(events.length, `${type} recorded`).toBeGreaterThan(0);
      found.push(...events);
    }
    return found;
  }

  const adminHeaders = (userAgent: string) => ({ authorization: `Bearer ${admin.token}`, 'user-agent': userAgent });

  const lastToken = async (address: string) => (await lastMailTo(t, address)).token as string;

  it('authentication: login, failed login, lockout, unlock, password change, reset and invitation, second-factor reset, session revocation', async () => {
    const user = await seedUser(t, org.id);
    const [login] = await expectAudited(['auth.login'], () => loginAs(t, user));
    expect(login).toMatchObject({ user_id: user.id, organization_id: org.id, success: true });

    const wrong = () =>
      t.request({
        method: 'POST',
        url: '/api/token/',
        payload: { email: user.email, password: 'wrong password here', organization: org.code },
      });
    const [failed] = await expectAudited(['auth.login_failed'], wrong);
    expect(failed).toMatchObject({ user_id: user.id, success: false });
    await expectAudited(['auth.login_failed'], () =>
      t.request({
        method: 'POST',
        url: '/api/token/',
        payload: { email: 'nobody@example.com', password: 'x-wrong-password' },
      }),
    );
    await wrong();
    await expectAudited(['auth.lockout'], wrong);
    await expectAudited(['auth.unlocked'], async () =>
      expect((await admin.post(`/api/v1/users/${user.id}/unlock`)).statusCode).toBe(200),
    );

    const self = await loginAs(t, user);
    const [changed] = await expectAudited(['auth.password_changed'], async () =>
      expect(
        (
          await self.post('/api/v1/users/change-password', {
            old_password: TEST_PASSWORD,
            new_password: 'a brand new passphrase 7',
          })
        ).statusCode,
      ).toBe(200),
    );
    expect(changed).toMatchObject({ actor_type: 'user', actor_id: user.id });
    expect(JSON.stringify(changed)).not.toContain('brand new');

    await t.request({ method: 'POST', url: '/api/v1/users/password-reset', payload: { email: user.email } });
    const resetToken = await lastToken(user.email);
    await expectAudited(['auth.password_reset'], async () =>
      expect(
        (
          await t.request({
            method: 'POST',
            url: '/api/v1/users/password-reset/confirm',
            payload: { token: resetToken, new_password: 'another fine passphrase 8' },
          })
        ).statusCode,
      ).toBe(200),
    );

    const invited = await seedUser(t, org.id, { passwordHash: null });
    await expectAudited(['user.invited'], async () =>
      expect((await admin.post(`/api/v1/users/${invited.id}/invite`)).statusCode).toBeLessThan(300),
    );
    const inviteToken = await lastToken(invited.email);
    await expectAudited(['auth.invitation_accepted'], () =>
      t.request({
        method: 'POST',
        url: '/api/v1/users/password-reset/confirm',
        payload: { token: inviteToken, new_password: 'invited user passphrase 9' },
      }),
    );

    const unverified = await seedUser(t, org.id);
    await t.request({
      method: 'POST',
      url: '/api/v1/users/verify-email/resend',
      payload: { email: unverified.email, organization: org.code },
    });
    const verifyToken = await lastToken(unverified.email);
    const [verified] = await expectAudited(['user.email_verified'], async () =>
      expect(
        (await t.request({ method: 'POST', url: '/api/v1/users/verify-email/', payload: { token: verifyToken } }))
          .statusCode,
      ).toBe(200),
    );
    expect(verified).toMatchObject({ user_id: unverified.id, organization_id: org.id, object_id: unverified.id });

    await expectAudited(['mfa.reset'], async () =>
      expect((await admin.post(`/api/v1/users/${user.id}/mfa/reset`)).statusCode).toBeLessThan(300),
    );

    const victim = await seedUser(t, org.id);
    await loginAs(t, victim);
    const [session] = await queryRows<{ id: string }>(
      t.database.db,
      sql`select id from sessions where user_id = ${victim.id}`,
    );
    await expectAudited(['session.revoked'], async () =>
      expect((await admin.delete(`/api/v1/user-sessions/${session?.id}`)).statusCode).toBe(204),
    );
  });

  it("session endings: logout by refresh token, by Bearer, by cookie, ending one's own session, refresh-token replay", async () => {
    const user = await seedUser(t, org.id);
    const tokenLogin = async () => {
      const res = await t.request({
        method: 'POST',
        url: '/api/token/',
        payload: { email: user.email, password: TEST_PASSWORD, organization: org.code },
      });
      expect(res.statusCode).toBe(200);
      const { access, refresh } = res.json() as { access: string; refresh: string };
      return { access, refresh, sessionId: sessionOf(access) };
    };
    const sessionOf = (access: string) =>
      (JSON.parse(Buffer.from(access.split('.')[1] as string, 'base64url').toString()) as { sid: string }).sid;
    const ended = { user_id: user.id, organization_id: org.id, success: true };

    const byRefresh = await tokenLogin();
    const [loggedOut] = await expectAudited(['auth.logout'], async () =>
      expect(
        (await t.request({ method: 'POST', url: '/api/v1/users/logout/', payload: { refresh: byRefresh.refresh } }))
          .statusCode,
      ).toBe(204),
    );
    expect(loggedOut).toMatchObject({ ...ended, object_id: byRefresh.sessionId, details: { method: 'refresh' } });
    expect(JSON.stringify(loggedOut)).not.toContain(byRefresh.refresh);

    const byBearer = await tokenLogin();
    const [bearerOut] = await expectAudited(['auth.logout'], () =>
      t.request({
        method: 'POST',
        url: '/api/v1/users/logout/',
        headers: { authorization: `Bearer ${byBearer.access}` },
      }),
    );
    expect(bearerOut).toMatchObject({ ...ended, actor_id: user.id, object_id: byBearer.sessionId });

    const browser = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { email: user.email, password: TEST_PASSWORD, organization: org.code },
    });
    const cookie = browser.cookies.find((c) => c.name === 'gatehouse_session')?.value as string;
    const { csrf_token: csrf } = browser.json() as { csrf_token: string };
    const [cookieOut] = await expectAudited(['auth.logout'], async () =>
      expect(
        (
          await t.request({
            method: 'POST',
            url: '/api/logout/',
            cookies: { gatehouse_session: cookie },
            headers: { 'x-csrf-token': csrf },
          })
        ).statusCode,
      ).toBe(204),
    );
    expect(cookieOut).toMatchObject({ ...ended, details: { method: 'cookie' } });
    expect(JSON.stringify(cookieOut)).not.toContain(cookie);

    // A login in a browser that still holds a session cookie ends that session.
    const first = await t.request({
      method: 'POST',
      url: '/api/login/',
      payload: { email: user.email, password: TEST_PASSWORD, organization: org.code },
    });
    const firstCookie = first.cookies.find((c) => c.name === 'gatehouse_session')?.value as string;
    const [replaced] = await expectAudited(['session.revoked'], async () =>
      expect(
        (
          await t.request({
            method: 'POST',
            url: '/api/login/',
            cookies: { gatehouse_session: firstCookie },
            payload: { email: user.email, password: TEST_PASSWORD, organization: org.code },
          })
        ).statusCode,
      ).toBe(200),
    );
    expect(replaced).toMatchObject({ ...ended, details: { reason: 'replaced_by_login' } });

    const lost = await tokenLogin();
    const self = await loginAs(t, user);
    const [revoked] = await expectAudited(['session.revoked'], async () =>
      expect((await self.delete(`/api/v1/users/sessions/${lost.sessionId}/`)).statusCode).toBe(204),
    );
    expect(revoked).toMatchObject({ ...ended, actor_id: user.id, object_id: lost.sessionId });

    const stolen = await tokenLogin();
    const refresh = () =>
      t.request({ method: 'POST', url: '/api/token/refresh/', payload: { refresh: stolen.refresh } });
    expect((await refresh()).statusCode).toBe(200);
    const [reuse] = await expectAudited(['auth.refresh_reuse'], async () =>
      expect((await refresh()).statusCode).toBe(401),
    );
    expect(reuse).toMatchObject({
      ...ended,
      success: false,
      actor_type: 'system',
      object_id: stolen.sessionId,
      details: { session_revoked: true },
    });
    expect(JSON.stringify(reuse)).not.toContain(stolen.refresh);
    const [severity] = await queryRows<{ severity: string }>(
      t.database.db,
      sql`select severity from activities where activity_type = 'auth.refresh_reuse' and object_id = ${stolen.sessionId}`,
    );
    expect(severity?.severity).toBe('warning');
  });

  it('users: registration, creation, update, deactivation and deletion (which keeps a pseudonymous record)', async () => {
    const email = `${unique('reg')}@example.com`;
    await expectAudited(['user.registered'], () =>
      t.request({
        method: 'POST',
        url: '/api/v1/users/register',
        payload: { email, password: 'registration passphrase 1', organization: org.code },
      }),
    );
    let id = '';
    const [created] = await expectAudited(['user.created'], async () => {
      const res = await admin.post('/api/v1/users', {
        email: `${unique('c')}@example.com`,
        password: 'created passphrase 22',
      });
      expect(res.statusCode).toBe(201);
      id = (res.json() as { id: string }).id;
    });
    expect(created).toMatchObject({ user_id: id, actor_id: admin.user.id, organization_id: org.id });
    expect(JSON.stringify(created)).not.toContain('created passphrase');
    await expectAudited(['user.updated'], () => admin.patch(`/api/v1/users/${id}`, { first_name: 'Ada' }));
    await expectAudited(['user.deactivated'], () => admin.post(`/api/v1/users/${id}/deactivate`));
    // Sealed before the deletion: erasing the user's events must leave the chain verifying.
    await sealAuditEvents(t.database.db);
    const [deleted] = await expectAudited(['user.deleted'], async () =>
      expect(
        (await t.request({ method: 'DELETE', url: `/api/v1/users/${id}`, headers: adminHeaders('deleting-agent/1') }))
          .statusCode,
      ).toBe(204),
    );
    // The user is erased as the object too: every event about them names them by pseudonym only.
    expect(deleted).toMatchObject({ user_id: null, object_id: null, actor_id: admin.user.id });
    const objects = await queryRows<{ object_id: string | null; object_ref: string | null }>(
      t.database.db,
      sql`select object_id, object_ref from activities where activity_type in ('user.updated', 'user.deactivated',
        'user.deleted') and object_ref = encode(sha256(convert_to('gatehouse-audit-subject:' || ${id}, 'UTF8')), 'hex')`,
    );
    expect(objects.length).toBeGreaterThanOrEqual(3);
    expect(objects.every((o) => o.object_id === null)).toBe(true);
    expect(JSON.stringify(await queryRows(t.database.db, sql`select * from activities where object_id = ${id}`))).toBe(
      '[]',
    );
    // The deletion is the admin's act: it keeps where it came from and its description.
    const [deletion] = await queryRows<{ description: string; ip_address: string | null; user_agent: string | null }>(
      t.database.db,
      sql`select description, ip_address, user_agent from activities
        where activity_type = 'user.deleted' and object_ref is not null and user_agent = 'deleting-agent/1'`,
    );
    expect(deletion).toMatchObject({ description: 'User deleted', user_agent: 'deleting-agent/1' });
    expect(deletion?.ip_address).toBeTruthy();
    await sealAuditEvents(t.database.db);
    expect(await verifyAuditChain(t.database.db)).toMatchObject({ ok: true, problem: null });
    const left = await queryRows<{ n: number }>(
      t.database.db,
      sql`select count(*)::int as n from activities where user_id = ${id}`,
    );
    expect(left[0]?.n).toBe(0);
  });

  it('organizations, roles, grants, assignments, the permission catalog, user types and API keys', async () => {
    const code = unique('o-');
    await expectAudited(['organization.created'], () =>
      superuser.post('/api/v1/organizations', { code, name: 'Audited' }),
    );
    await expectAudited(['organization.updated'], () =>
      superuser.patch(`/api/v1/organizations/${code}`, { name: 'Renamed' }),
    );
    const [settings] = await expectAudited(['organization.settings_changed'], () =>
      superuser.patch(`/api/v1/organizations/${code}`, { settings: { require_mfa: true, smtp_password: 'hunter2' } }),
    );
    expect(JSON.stringify(settings?.details)).not.toContain('hunter2');
    await expectAudited(['organization.deactivated'], () => superuser.post(`/api/v1/organizations/${code}/deactivate`));
    const [activated] = await expectAudited(['organization.activated'], () =>
      superuser.patch(`/api/v1/organizations/${code}`, { name: 'Back again', is_active: true }),
    );
    expect(activated?.details).toMatchObject({
      name: { from: 'Renamed', to: 'Back again' },
      is_active: { from: false, to: true },
    });
    const [deactivated] = await expectAudited(['organization.deactivated'], () =>
      superuser.patch(`/api/v1/organizations/${code}`, { name: 'Beta Two', is_active: false }),
    );
    expect(deactivated?.details).toMatchObject({
      fields: ['name', 'is_active'],
      name: { from: 'Back again', to: 'Beta Two' },
      is_active: { from: true, to: false },
    });
    await expectAudited(['organization.deleted'], () => superuser.delete(`/api/v1/organizations/${code}`));

    const moduleCode = unique('M')
      .toUpperCase()
      .replace(/[^A-Z0-9_]/g, '_');
    await expectAudited(['module.created'], () =>
      superuser.post('/api/v1/modules', { code: moduleCode, name: 'Audited module' }),
    );
    await expectAudited(['permission.created'], () =>
      superuser.post('/api/v1/permissions', {
        code: `${moduleCode.toLowerCase()}.view`,
        module: moduleCode,
        action: 'view',
        name: 'View',
      }),
    );

    const typeCode = unique('kind').replace(/-/g, '');
    let typeId = '';
    const [typeCreated] = await expectAudited(['user_type.created'], async () => {
      const res = await superuser.post('/api/v1/user-types', {
        code: typeCode,
        plural: `${typeCode}s`,
        label: 'Audited type',
        organization: org.code,
      });
      expect(res.statusCode).toBe(201);
      typeId = (res.json() as { id: string }).id;
    });
    expect(typeCreated).toMatchObject({
      organization_id: org.id,
      actor_id: superuser.user.id,
      object_id: typeId,
      details: { code: typeCode, plural: `${typeCode}s` },
    });
    const [typeUpdated] = await expectAudited(['user_type.updated'], async () =>
      expect((await superuser.patch(`/api/v1/user-types/${typeId}`, { plural: `${typeCode}z` })).statusCode).toBe(200),
    );
    expect(typeUpdated).toMatchObject({
      object_id: typeId,
      details: { fields: ['plural'], plural: { from: `${typeCode}s`, to: `${typeCode}z` } },
    });
    await expectAudited(['user_type.deleted'], async () =>
      expect((await superuser.delete(`/api/v1/user-types/${typeId}`)).statusCode).toBe(204),
    );

    let roleId = '';
    await expectAudited(['role.created'], async () => {
      const res = await admin.post('/api/v1/roles', {
        code: unique('r-'),
        name: 'Audited role',
        level: 50,
        permissions: ['users.view'],
      });
      expect(res.statusCode).toBe(201);
      roleId = (res.json() as { id: string }).id;
    });
    await expectAudited(['role.grants_changed'], () => admin.patch(`/api/v1/roles/${roleId}`, { permissions: [] }));
    const member = await seedUser(t, org.id);
    const [assigned] = await expectAudited(['role.assigned'], async () =>
      expect((await admin.post(`/api/v1/users/${member.id}/roles`, { role: roleId })).statusCode).toBe(201),
    );
    expect(assigned).toMatchObject({ user_id: member.id, object_id: roleId });
    await expectAudited(['role.unassigned'], () => admin.delete(`/api/v1/users/${member.id}/roles/${roleId}`));
    await expectAudited(['role.deleted'], () => admin.delete(`/api/v1/roles/${roleId}`));

    let keyId = '';
    await expectAudited(['api_key.created'], async () => {
      const res = await admin.post('/api/v1/api-keys', { name: 'feed', scopes: ['read:users'] });
      expect(res.statusCode).toBe(201);
      keyId = (res.json() as { id: string }).id;
    });
    let rotatedId = '';
    await expectAudited(['api_key.rotated'], async () => {
      const res = await admin.post(`/api/v1/api-keys/${keyId}/rotate`);
      expect(res.statusCode).toBeLessThan(300);
      rotatedId = (res.json() as { id: string }).id;
    });
    await expectAudited(['api_key.revoked'], () => admin.delete(`/api/v1/api-keys/${rotatedId}`));
    const keys = await queryRows<{ details: string }>(
      t.database.db,
      sql`select details::text from activities where category = 'api_keys'`,
    );
    expect(keys.every((k) => !/gh_[A-Za-z0-9_-]{20,}/.test(k.details))).toBe(true);

    let integrationId = '';
    const secret = `sk_${unique('audit')}_0123456789`;
    await expectAudited(['integration.created'], async () => {
      const res = await admin.post('/api/v1/integrations', {
        name: unique('gateway '),
        service_type: 'payment_gateway',
        auth_type: 'api_key',
        base_url: 'https://payments.example',
        credentials: { api_key: secret },
      });
      expect(res.statusCode).toBe(201);
      integrationId = (res.json() as { id: string }).id;
    });
    await expectAudited(['integration.updated'], () =>
      admin.patch(`/api/v1/integrations/${integrationId}`, { description: 'Cards' }),
    );
    await expectAudited(['integration.credentials_changed'], () =>
      admin.patch(`/api/v1/integrations/${integrationId}`, { credentials: { api_key: `${secret}-2` } }),
    );
    await expectAudited(['integration.deactivated'], () =>
      admin.post(`/api/v1/integrations/${integrationId}/deactivate`),
    );
    await expectAudited(['integration.activated'], () => admin.post(`/api/v1/integrations/${integrationId}/activate`));
    await expectAudited(['integration.deleted'], () => admin.delete(`/api/v1/integrations/${integrationId}`));
    const integrationEvents = await queryRows<{ details: string }>(
      t.database.db,
      sql`select details::text from activities where category = 'integrations'`,
    );
    expect(integrationEvents.length).toBeGreaterThanOrEqual(6);
    expect(integrationEvents.every((e) => !e.details.includes(secret))).toBe(true);
  });

  it('operator commands: signing-key rotation and re-sealing under a new master key', async () => {
    const [rotated] = await expectAudited(['signing_key.rotated'], () =>
      rotateSigningKey(t.database.db, t.config, COMMAND_LINE),
    );
    expect(rotated).toMatchObject({ organization_id: null, actor_type: 'api_key', success: true });
    expect(rotated?.details).toMatchObject({ via: 'cli:gatehouse', kid: rotated?.object_id });

    const newKey = randomBytes(32);
    const [resealed] = await expectAudited(['master_key.resealed'], async () => {
      const envelope = createEnvelope(newKey, [t.config.masterKey]);
      await recordReseal(t.database.db, envelope, await resealSecrets(t.database.db, envelope), COMMAND_LINE);
    });
    expect(resealed).toMatchObject({ organization_id: null, actor_type: 'api_key' });
    expect(resealed?.details).toMatchObject({ via: 'cli:gatehouse', key_id: masterKeyId(newKey) });
    expect(resealed?.details.resealed).toBeGreaterThan(0);
    const secrets = [newKey, t.config.masterKey].map((key) => key.toString('base64'));
    expect(secrets.some((secret) => JSON.stringify(resealed?.details).includes(secret))).toBe(false);
    // Back under the app's own key, which the cases after this one sign with.
    await resealSecrets(t.database.db, createEnvelope(t.config.masterKey, [newKey]));
  });

  it('a change whose audit event cannot be written does not happen', async () => {
    const db = t.database.db;
    // A failing audit insert, as a full disk or a lost connection would make it.
    await db.execute(sql`create or replace function audit_refuse() returns trigger language plpgsql as $$
      begin
        if new.activity_type = tg_argv[0] then raise exception 'audit insert refused'; end if;
        return new;
      end $$`);
    const refuse = (type: string) =>
      db.execute(
        sql.raw(
          `create trigger audit_refused before insert on activities for each row execute function audit_refuse('${type}')`,
        ),
      );
    const allow = () => db.execute(sql`drop trigger audit_refused on activities`);
    const count = async (q: ReturnType<typeof sql>, on: DbOrTx = db) => (await queryRows<{ n: number }>(on, q))[0]?.n;

    const email = `${unique('atomic')}@example.com`;
    await refuse('user.created');
    try {
      const res = await admin.post('/api/v1/users', { email, password: 'atomic passphrase 33' });
      expect(res.statusCode).toBe(500);
    } finally {
      await allow();
    }
    expect(await count(sql`select count(*)::int as n from users where email = ${email}`)).toBe(0);

    const user = await seedUser(t, org.id);
    await refuse('role.assigned');
    try {
      expect((await admin.post(`/api/v1/users/${user.id}/roles`, { role: 'viewer' })).statusCode).toBe(500);
    } finally {
      await allow();
    }
    expect(await count(sql`select count(*)::int as n from user_roles where user_id = ${user.id}`)).toBe(0);

    await refuse('auth.login');
    try {
      await expect(loginAs(t, user)).rejects.toThrow();
    } finally {
      await allow();
    }
    expect(await count(sql`select count(*)::int as n from sessions where user_id = ${user.id}`)).toBe(0);

    const signedIn = await loginAs(t, user);
    await refuse('auth.logout');
    try {
      expect((await signedIn.post('/api/v1/users/logout/')).statusCode).toBe(500);
    } finally {
      await allow();
    }
    expect((await signedIn.get('/api/v1/users/sessions/')).statusCode).toBe(200);

    await refuse('user.deleted');
    try {
      expect((await admin.delete(`/api/v1/users/${user.id}`)).statusCode).toBe(500);
    } finally {
      await allow();
    }
    expect((await db.select().from(users).where(eq(users.id, user.id))).length).toBe(1);

    await t.request({
      method: 'POST',
      url: '/api/v1/users/verify-email/resend',
      payload: { email: user.email, organization: org.code },
    });
    const verifyToken = await lastToken(user.email);
    const verify = () => t.request({ method: 'GET', url: `/api/v1/users/verify-email/?token=${verifyToken}` });
    await refuse('user.email_verified');
    try {
      expect((await verify()).statusCode).toBe(500);
    } finally {
      await allow();
    }
    const [unverified] = await db.select().from(users).where(eq(users.id, user.id));
    expect(unverified?.emailVerified).toBe(false);
    // The link was not used up: it still verifies.
    expect((await verify()).statusCode).toBe(200);

    const integration = await admin.post('/api/v1/integrations', {
      name: unique('atomic '),
      service_type: 'other',
      auth_type: 'bearer',
      base_url: 'https://service.example',
      credentials: { token: 'first-token' },
    });
    const integrationId = (integration.json() as { id: string }).id;
    const sealedNow = async () =>
      (
        await queryRows<{ sealed: string }>(
          db,
          sql`select credentials_sealed as sealed from integrations where id = ${integrationId}::uuid`,
        )
      )[0]?.sealed;
    const sealedBefore = await sealedNow();
    await refuse('integration.credentials_changed');
    try {
      const res = await admin.patch(`/api/v1/integrations/${integrationId}`, { credentials: { token: 'second' } });
      expect(res.statusCode).toBe(500);
    } finally {
      await allow();
    }
    expect(await sealedNow()).toBe(sealedBefore);

    const activeKid = async () =>
      (await queryRows<{ kid: string }>(db, sql`select kid from signing_keys where retired_at is null`))[0]?.kid;
    const kidBefore = await activeKid();
    await refuse('signing_key.rotated');
    try {
      await expect(rotateSigningKey(db, t.config, COMMAND_LINE)).rejects.toThrow();
    } finally {
      await allow();
    }
    expect(await activeKid()).toBe(kidBefore);
  });
});
