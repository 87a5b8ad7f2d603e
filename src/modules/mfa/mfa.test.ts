import { and, eq, sql } from 'drizzle-orm';
import * as OTPAuth from 'otpauth';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type Client,
  loginAs,
  seedOrganization,
  seedUser,
  superuserClient,
  TEST_PASSWORD,
} from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { buildApp } from '../../app.js';
import { sha256Hex } from '../../platform/crypto/tokens.js';
import { activities } from '../activity/activity.table.js';
import { accountLockouts } from '../lockout/lockout.table.js';
import { organizations } from '../organizations/organizations.table.js';
import { type User, users } from '../users/users.table.js';
import { mfaChallenges, mfaRecoveryCodes, mfaTotp } from './mfa.table.js';

function totpOf(secret: string) {
  return new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), digits: 6, period: 30, algorithm: 'SHA1' });
}

describe('TOTP two-factor authentication', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  async function enrolled(): Promise<{ user: User; client: Client; secret: string; recovery: string[] }> {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const client = await loginAs(t, user);
    const enrol = await client.post('/api/v1/users/mfa/totp/', { password: TEST_PASSWORD });
    expect(enrol.statusCode, enrol.body).toBe(200);
    const { secret, otpauth_uri } = enrol.json() as { secret: string; otpauth_uri: string };
    expect(otpauth_uri).toMatch(/^otpauth:\/\/totp\/Gatehouse:/);
    const [row] = await t.database.db.select().from(mfaTotp).where(eq(mfaTotp.userId, user.id));
    expect(row?.secretSealed).not.toContain(secret);
    expect(row?.confirmedAt).toBeNull();

    const wrong = await client.post('/api/v1/users/mfa/totp/confirm/', { code: '000000' });
    expect(wrong.statusCode).toBe(401);
    const confirm = await client.post('/api/v1/users/mfa/totp/confirm/', { code: totpOf(secret).generate() });
    expect(confirm.statusCode).toBe(200);
    const recovery = confirm.json().recovery_codes as string[];
    expect(recovery).toHaveLength(10);
    expect(new Set(recovery).size).toBe(10);
    return { user, client, secret, recovery };
  }

  function passwordLogin(user: User) {
    return t.request({
      method: 'POST',
      url: '/api/v1/users/login/',
      payload: { email: user.email, password: TEST_PASSWORD },
    });
  }

  function mfaLogin(mfa_token: string, code: string) {
    return t.request({ method: 'POST', url: '/api/v1/users/login/mfa/', payload: { mfa_token, code } });
  }

  it('answers mfa_required instead of tokens, then tokens for the token and a current code, once', async () => {
    const { user, secret } = await enrolled();
    const first = await passwordLogin(user);
    expect(first.statusCode).toBe(200);
    const body = first.json();
    expect(body).toEqual({ mfa_required: true, mfa_token: expect.any(String), methods: ['totp'], expires_in: 300 });
    expect(body.access).toBeUndefined();
    const [challenge] = await t.database.db.select().from(mfaChallenges).where(eq(mfaChallenges.userId, user.id));
    expect(challenge?.tokenHash).not.toBe(body.mfa_token);

    const bad = await mfaLogin(body.mfa_token, '123456');
    expect(bad.statusCode).toBe(401);
    expect(bad.json()).toMatchObject({ code: 'invalid_mfa_code', errors: [{ field: 'code' }] });

    // The code of the next step: within the allowed drift, and not yet used by the confirmation.
    const code = totpOf(secret).generate({ timestamp: Date.now() + 30_000 });
    const ok = await mfaLogin(body.mfa_token, code);
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toMatchObject({ token_type: 'Bearer', user: { id: user.id } });
    const validate = await t.request({
      method: 'GET',
      url: '/api/v1/users/validate-token/',
      headers: { authorization: `Bearer ${ok.json().access}` },
    });
    expect(validate.statusCode).toBe(200);

    expect((await mfaLogin(body.mfa_token, code)).json().code).toBe('invalid_mfa_token');
    // A code is good once: a new challenge with the same code is refused.
    const again = (await passwordLogin(user)).json();
    expect((await mfaLogin(again.mfa_token, code)).statusCode).toBe(401);
  });

  it('accepts TOTP codes typed with spaces, as authenticator apps show them, at confirm, login and disable', async () => {
    const spaced = (code: string) => `${code.slice(0, 3)} ${code.slice(3)}`;
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const client = await loginAs(t, user);
    const { secret } = (await client.post('/api/v1/users/mfa/totp/', { password: TEST_PASSWORD })).json();
    // Three successive steps, each used once: the previous, the current and the next.
    const confirm = await client.post('/api/v1/users/mfa/totp/confirm/', {
      code: spaced(totpOf(secret).generate({ timestamp: Date.now() - 30_000 })),
    });
    expect(confirm.statusCode, confirm.body).toBe(200);

    const token = (await passwordLogin(user)).json().mfa_token;
    const ok = await mfaLogin(token, ` ${spaced(totpOf(secret).generate())}\t`);
    expect(ok.statusCode, ok.body).toBe(200);
    const [counted] = await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id));
    expect(counted?.failedCount ?? 0).toBe(0);

    const off = await t.request({
      method: 'DELETE',
      url: '/api/v1/users/mfa/totp/',
      headers: { authorization: `Bearer ${client.token}` },
      payload: { code: spaced(totpOf(secret).generate({ timestamp: Date.now() + 30_000 })) },
    });
    expect(off.statusCode, off.body).toBe(204);
  });

  it('accepts a first code typed with spaces when a login enrols the required authenticator', async () => {
    const org = await seedOrganization(t);
    await t.database.db
      .update(organizations)
      .set({ settings: { require_mfa: true } })
      .where(eq(organizations.id, org.id));
    const user = await seedUser(t, org.id);
    const token = (await passwordLogin(user)).json().mfa_token as string;
    const started = await t.request({
      method: 'POST',
      url: '/api/v1/users/login/mfa/enrol/',
      payload: { mfa_token: token },
    });
    const code = totpOf(started.json().secret).generate();
    const done = await mfaLogin(token, `${code.slice(0, 3)} ${code.slice(3)}`);
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json().recovery_codes).toHaveLength(10);
  });

  it('shows whether two-factor authentication is on in the profile and the admin user views', async () => {
    const { user, client, secret } = await enrolled();
    const pending = await seedUser(t, user.organizationId);
    const pendingClient = await loginAs(t, pending);
    // Enrolment started but not confirmed: not on yet.
    expect((await pendingClient.post('/api/v1/users/mfa/totp/', { password: TEST_PASSWORD })).statusCode).toBe(200);

    expect((await client.get('/api/v1/users/profile/')).json()).toMatchObject({ id: user.id, mfa_enabled: true });
    expect((await pendingClient.get('/api/v1/users/profile/')).json()).toMatchObject({ mfa_enabled: false });
    const admin = await superuserClient(t);
    expect((await admin.get(`/api/v1/users/${user.id}/`)).json()).toMatchObject({ mfa_enabled: true });
    expect((await admin.get(`/api/v1/users/${pending.id}/`)).json()).toMatchObject({ mfa_enabled: false });
    const [org] = await t.database.db.select().from(organizations).where(eq(organizations.id, user.organizationId));
    const list = await admin.get(`/api/v1/users/?organization=${org?.code}&sort=email`);
    expect(list.statusCode, list.body).toBe(200);
    const flags = Object.fromEntries(
      (list.json().results as { id: string; mfa_enabled: boolean }[]).map((u) => [u.id, u.mfa_enabled]),
    );
    expect(flags).toEqual({ [user.id]: true, [pending.id]: false });
    // Read-only: a write that would change it is refused naming it; the flag follows the authenticator.
    const write = await admin.patch(`/api/v1/users/${user.id}/`, { mfa_enabled: false });
    expect(write.json()).toMatchObject({ status: 400, errors: [{ field: 'mfa_enabled' }] });
    const own = await client.patch('/api/v1/users/profile/', { mfa_enabled: false });
    expect(own.json()).toMatchObject({ status: 400, errors: [{ field: 'mfa_enabled' }] });
    const off = await t.request({
      method: 'DELETE',
      url: '/api/v1/users/mfa/totp/',
      headers: { authorization: `Bearer ${client.token}` },
      payload: { code: totpOf(secret).generate({ timestamp: Date.now() + 30_000 }) },
    });
    expect(off.statusCode).toBe(204);
    expect((await admin.get(`/api/v1/users/${user.id}/`)).json()).toMatchObject({ mfa_enabled: false });
  });

  it('accepts each recovery code once', async () => {
    const { user, recovery } = await enrolled();
    const token1 = (await passwordLogin(user)).json().mfa_token;
    expect((await mfaLogin(token1, (recovery[0] as string).toUpperCase())).statusCode).toBe(200);
    const token2 = (await passwordLogin(user)).json().mfa_token;
    expect((await mfaLogin(token2, recovery[0] as string)).statusCode).toBe(401);
    expect((await mfaLogin(token2, recovery[1] as string)).statusCode).toBe(200);
  });

  it('stores recovery codes keyed under the master key, not as their bare SHA-256', async () => {
    const { user, recovery } = await enrolled();
    const stored = await t.database.db
      .select({ codeHash: mfaRecoveryCodes.codeHash })
      .from(mfaRecoveryCodes)
      .where(eq(mfaRecoveryCodes.userId, user.id));
    expect(stored).toHaveLength(10);
    const bare = new Set(recovery.map((code) => sha256Hex(code.replace('-', ''))));
    for (const { codeHash } of stored) {
      expect(codeHash).toMatch(/^v2\.[0-9a-f]{12}\.[0-9a-f]{64}$/);
      expect(bare.has(codeHash)).toBe(false);
      expect(bare.has(codeHash.split('.')[2] as string)).toBe(false);
    }
  });

  it('converts a recovery code stored unkeyed at start-up, and it then signs in once', async () => {
    const { user } = await enrolled();
    const code = 'abcde-23456';
    // As stored before keyed hashes: the SHA-256 hex of the code without its dash.
    const [legacy] = await t.database.db
      .insert(mfaRecoveryCodes)
      .values({ organizationId: user.organizationId, userId: user.id, codeHash: sha256Hex('abcde23456') })
      .returning();
    const restarted = await buildApp({ config: t.config, database: t.database, logger: false });
    await restarted.close();
    const [row] = await t.database.db
      .select()
      .from(mfaRecoveryCodes)
      .where(eq(mfaRecoveryCodes.id, legacy?.id as string));
    expect(row?.codeHash).toMatch(/^v2\./);
    expect(row?.codeHash).not.toContain(sha256Hex('abcde23456'));
    const unkeyed = await t.database.db
      .select()
      .from(mfaRecoveryCodes)
      .where(sql`${mfaRecoveryCodes.codeHash} not like 'v2.%'`);
    expect(unkeyed).toEqual([]);

    const first = (await passwordLogin(user)).json().mfa_token;
    expect((await mfaLogin(first, code.toUpperCase())).statusCode).toBe(200);
    const again = (await passwordLogin(user)).json().mfa_token;
    expect((await mfaLogin(again, code)).statusCode).toBe(401);
  });

  it('uses the mfa_token up after five wrong codes', async () => {
    const { user, secret } = await enrolled();
    const token = (await passwordLogin(user)).json().mfa_token;
    for (let i = 0; i < 5; i++) expect((await mfaLogin(token, '000001')).json().code).toBe('invalid_mfa_code');
    const late = await mfaLogin(token, totpOf(secret).generate({ timestamp: Date.now() + 30_000 }));
    expect(late.json().code).toBe('invalid_mfa_token');
    // Wrong codes count as failed logins of the account: five (the default threshold) lock it.
    const [lockout] = await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id));
    expect(lockout?.lockedUntil?.getTime()).toBeGreaterThan(Date.now());
    expect((await passwordLogin(user)).statusCode).toBe(401);
  });

  it('ends every pending mfa_token of an account when it locks, so none works after an unlock', async () => {
    const { user, recovery } = await enrolled();
    const mt = (await passwordLogin(user)).json().mfa_token as string;
    const mt2 = (await passwordLogin(user)).json().mfa_token as string;
    for (let i = 0; i < 5; i++) expect((await mfaLogin(mt, '000001')).json().code).toBe('invalid_mfa_code');
    const admin = await superuserClient(t);
    expect((await admin.post(`/api/v1/users/${user.id}/unlock/`)).statusCode).toBe(200);

    const late = await mfaLogin(mt2, recovery[0] as string);
    expect(late.json()).toMatchObject({ status: 401, code: 'invalid_mfa_token' });
    // Logging in again after the unlock gets a new token that works, with the recovery code still unused.
    const fresh = (await passwordLogin(user)).json().mfa_token as string;
    expect((await mfaLogin(fresh, recovery[0] as string)).statusCode).toBe(200);
  });

  it('checks no code while the account is locked: the right one answers as a wrong one and stays unused', async () => {
    const { user, secret } = await enrolled();
    const token = (await passwordLogin(user)).json().mfa_token;
    // Locked after the password step (guesses made elsewhere).
    await t.database.db
      .insert(accountLockouts)
      .values({ organizationId: user.organizationId, userId: user.id, lockedUntil: sql`now() + interval '10 minutes'` })
      .onConflictDoUpdate({
        target: [accountLockouts.organizationId, accountLockouts.userId],
        set: { lockedUntil: sql`now() + interval '10 minutes'` },
      });
    const code = totpOf(secret).generate({ timestamp: Date.now() + 30_000 });
    const locked = await mfaLogin(token, code);
    expect(locked.json()).toMatchObject({ status: 401, code: 'invalid_mfa_code' });
    const [event] = await t.database.db
      .select({ description: activities.description, details: activities.details, actorId: activities.actorId })
      .from(activities)
      .where(and(eq(activities.userId, user.id), eq(activities.activityType, 'auth.login_failed')));
    expect(event).toEqual({
      description: 'Failed login: account locked',
      details: { step: 'mfa', reason: 'account_locked' },
      actorId: user.id,
    });
    // Unlocked, the same challenge and code still work: neither was checked while locked.
    await t.database.db.delete(accountLockouts).where(eq(accountLockouts.userId, user.id));
    expect((await mfaLogin(token, code)).statusCode).toBe(200);
  });

  it('checks at most five of many codes sent at once for one mfa_token', async () => {
    const { user } = await enrolled();
    const token = (await passwordLogin(user)).json().mfa_token;
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => mfaLogin(token, String(100000 + i))));
    const codes = answers.map((a) => a.json().code);
    expect(codes.filter((c) => c === 'invalid_mfa_code').length).toBeLessThanOrEqual(5);
    const checked = await t.database.db
      .select({ id: activities.id })
      .from(activities)
      .where(and(eq(activities.userId, user.id), eq(activities.description, 'Failed login: wrong second-factor code')));
    expect(checked.length).toBeLessThanOrEqual(5);
  });

  it('refuses an unknown or expired mfa_token with 401', async () => {
    const { user, secret } = await enrolled();
    expect((await mfaLogin('nope', '123456')).statusCode).toBe(401);
    const token = (await passwordLogin(user)).json().mfa_token;
    await t.database.db
      .update(mfaChallenges)
      .set({ expiresAt: new Date(Date.now() - 1000) })
      .where(eq(mfaChallenges.userId, user.id));
    const res = await mfaLogin(token, totpOf(secret).generate({ timestamp: Date.now() + 30_000 }));
    expect(res.json()).toMatchObject({ status: 401, code: 'invalid_mfa_token' });
  });

  it('disables TOTP only with a current code; an administrator can reset it', async () => {
    const { user, client, secret } = await enrolled();
    const refused = await t.request({
      method: 'DELETE',
      url: '/api/v1/users/mfa/totp/',
      headers: { authorization: `Bearer ${client.token}` },
      payload: { code: '000000' },
    });
    expect(refused.statusCode).toBe(401);
    const off = await t.request({
      method: 'DELETE',
      url: '/api/v1/users/mfa/totp/',
      headers: { authorization: `Bearer ${client.token}` },
      payload: { code: totpOf(secret).generate({ timestamp: Date.now() + 30_000 }) },
    });
    expect(off.statusCode).toBe(204);
    expect((await passwordLogin(user)).json().access).toEqual(expect.any(String));

    const second = await enrolled();
    expect((await passwordLogin(second.user)).json().mfa_required).toBe(true);
    expect((await second.client.post(`/api/v1/users/${second.user.id}/mfa/reset/`)).statusCode).toBe(403);
    const admin = await superuserClient(t);
    expect((await admin.post(`/api/v1/users/${second.user.id}/mfa/reset/`)).statusCode).toBe(204);
    expect((await passwordLogin(second.user)).json().access).toEqual(expect.any(String));
  });

  it('refuses to turn off the authenticator when the organization requires two-factor authentication', async () => {
    const { user, client, secret } = await enrolled();
    await t.database.db
      .update(organizations)
      .set({ settings: { require_mfa: true } })
      .where(eq(organizations.id, user.organizationId));
    const res = await t.request({
      method: 'DELETE',
      url: '/api/v1/users/mfa/totp/',
      headers: { authorization: `Bearer ${client.token}` },
      payload: { code: totpOf(secret).generate({ timestamp: Date.now() + 30_000 }) },
    });
    expect(res.json()).toMatchObject({ status: 403, code: 'mfa_required_by_organization' });
    expect(res.json().detail).toContain('require_mfa');
    const [totp] = await t.database.db.select().from(mfaTotp).where(eq(mfaTotp.userId, user.id));
    expect(totp?.confirmedAt).not.toBeNull();
    // No code was checked: the refusal costs no turn of the lockout count.
    const [counted] = await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id));
    expect(counted?.failedCount ?? 0).toBe(0);
    // An administrator's reset stays possible (the next login then enrols a new authenticator).
    const admin = await superuserClient(t);
    expect((await admin.post(`/api/v1/users/${user.id}/mfa/reset/`)).statusCode).toBe(204);
    expect((await passwordLogin(user)).json()).toMatchObject({ status: 403, code: 'mfa_enrollment_required' });
  });

  it('counts wrong codes to turn TOTP off as failed logins: five lock the account and end its sessions', async () => {
    const { user, client, secret } = await enrolled();
    const disable = (code: string) =>
      t.request({
        method: 'DELETE',
        url: '/api/v1/users/mfa/totp/',
        headers: { authorization: `Bearer ${client.token}` },
        payload: { code },
      });
    for (let i = 0; i < 4; i++) expect((await disable('000001')).json().code).toBe('invalid_mfa_code');
    const [counted] = await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id));
    expect(counted?.failedCount).toBe(4);
    expect((await disable('000002')).statusCode).toBe(401);
    const [locked] = await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id));
    expect(locked?.lockedUntil?.getTime()).toBeGreaterThan(Date.now());

    // The lock ended the session that guessed: a right code no longer gets through, and TOTP stays on.
    const late = await disable(totpOf(secret).generate({ timestamp: Date.now() + 30_000 }));
    expect(late.statusCode).toBe(401);
    const [totp] = await t.database.db.select().from(mfaTotp).where(eq(mfaTotp.userId, user.id));
    expect(totp?.confirmedAt).not.toBeNull();
    expect((await passwordLogin(user)).json()).toMatchObject({ status: 401, code: 'invalid_credentials' });
  });

  it('refuses a login without an authenticator when the organization requires MFA, with a token to enrol one', async () => {
    const org = await seedOrganization(t);
    await t.database.db
      .update(organizations)
      .set({ settings: { require_mfa: true } })
      .where(eq(organizations.id, org.id));
    const user = await seedUser(t, org.id);
    const res = await passwordLogin(user);
    expect(res.statusCode).toBe(403);
    const refused = res.json();
    expect(refused).toMatchObject({ status: 403, code: 'mfa_enrollment_required', methods: ['totp'], expires_in: 300 });
    expect(refused).not.toHaveProperty('access');
    const token = refused.mfa_token as string;
    expect(token).toEqual(expect.any(String));

    // A wrong password gets no token; the token is no login by itself.
    const wrong = await t.request({
      method: 'POST',
      url: '/api/v1/users/login/',
      payload: { email: user.email, password: 'not-the-password-1' },
    });
    expect(wrong.json()).not.toHaveProperty('mfa_token');
    expect((await mfaLogin(token, '000000')).json()).toMatchObject({ status: 409, code: 'mfa_not_enrolled' });

    const enrol = (body: Record<string, string>) =>
      t.request({ method: 'POST', url: '/api/v1/users/login/mfa/enrol/', payload: body });
    expect((await enrol({ mfa_token: 'made-up' })).json()).toMatchObject({ status: 401, code: 'invalid_mfa_token' });
    expect((await enrol({})).json()).toMatchObject({ status: 400, errors: [{ field: 'mfa_token' }] });
    const started = await enrol({ mfa_token: token });
    expect(started.statusCode, started.body).toBe(200);
    const { secret } = started.json() as { secret: string };
    expect((await mfaLogin(token, '000000')).json()).toMatchObject({ status: 401, code: 'invalid_mfa_code' });

    const done = await mfaLogin(token, totpOf(secret).generate());
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json()).toMatchObject({ access: expect.any(String), token_type: 'Bearer' });
    expect(done.json().recovery_codes).toHaveLength(10);
    // Used up; from now on the organization's rule is met with an ordinary second step.
    expect((await enrol({ mfa_token: token })).json()).toMatchObject({ code: 'invalid_mfa_token' });
    expect((await passwordLogin(user)).json()).toMatchObject({ mfa_required: true });
  });

  it("ends a login's pending enrolment when the user changes their password: the old password enrols nothing", async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    // Signed in before the organization required a second factor.
    const owner = await loginAs(t, user);
    await t.database.db
      .update(organizations)
      .set({ settings: { require_mfa: true } })
      .where(eq(organizations.id, org.id));
    const token = (await passwordLogin(user)).json().mfa_token as string;
    const changed = await owner.post('/api/v1/users/change-password/', {
      old_password: TEST_PASSWORD,
      new_password: 'violet kettle maps 42',
    });
    expect(changed.statusCode, changed.body).toBe(200);

    const enrol = await t.request({
      method: 'POST',
      url: '/api/v1/users/login/mfa/enrol/',
      payload: { mfa_token: token },
    });
    expect(enrol.json()).toMatchObject({ status: 401, code: 'invalid_mfa_token' });
    const [none] = await t.database.db.select().from(mfaTotp).where(eq(mfaTotp.userId, user.id));
    expect(none).toBeUndefined();
  });

  it("ends a login's pending second step when the user changes their password: a valid code opens nothing", async () => {
    const { user, client, secret } = await enrolled();
    const token = (await passwordLogin(user)).json().mfa_token as string;
    const changed = await client.post('/api/v1/users/change-password/', {
      old_password: TEST_PASSWORD,
      new_password: 'violet kettle maps 42',
    });
    expect(changed.statusCode, changed.body).toBe(200);

    const late = await mfaLogin(token, totpOf(secret).generate({ timestamp: Date.now() + 30_000 }));
    expect(late.json()).toMatchObject({ status: 401, code: 'invalid_mfa_token' });
  });

  it('refuses an mfa_token issued for a password the account no longer has, whatever changed it', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    await t.database.db
      .update(organizations)
      .set({ settings: { require_mfa: true } })
      .where(eq(organizations.id, org.id));
    const token = (await passwordLogin(user)).json().mfa_token as string;
    const started = await t.request({
      method: 'POST',
      url: '/api/v1/users/login/mfa/enrol/',
      payload: { mfa_token: token },
    });
    expect(started.statusCode, started.body).toBe(200);
    // A new password written by a path that leaves the account's pending challenges in place.
    const [other] = await t.database.db
      .select({ passwordHash: users.passwordHash })
      .from(users)
      .where(eq(users.id, (await seedUser(t, org.id, { password: 'violet kettle maps 42' })).id));
    await t.database.db.update(users).set({ passwordHash: other?.passwordHash }).where(eq(users.id, user.id));

    const done = await mfaLogin(token, totpOf(started.json().secret).generate());
    expect(done.json()).toMatchObject({ status: 401, code: 'invalid_mfa_token' });
    // The authenticator the old password's login set up was not turned on.
    const [factor] = await t.database.db.select().from(mfaTotp).where(eq(mfaTotp.userId, user.id));
    expect(factor?.confirmedAt ?? null).toBeNull();
  });

  it('refuses the second step of a login made with a password the account no longer has', async () => {
    const { user, secret } = await enrolled();
    const token = (await passwordLogin(user)).json().mfa_token as string;
    const [other] = await t.database.db
      .select({ passwordHash: users.passwordHash })
      .from(users)
      .where(eq(users.id, (await seedUser(t, user.organizationId, { password: 'violet kettle maps 42' })).id));
    await t.database.db.update(users).set({ passwordHash: other?.passwordHash }).where(eq(users.id, user.id));

    const late = await mfaLogin(token, totpOf(secret).generate({ timestamp: Date.now() + 30_000 }));
    expect(late.json()).toMatchObject({ status: 401, code: 'invalid_mfa_token' });
  });

  it('does not let a login challenge of an account with a factor enrol a new one', async () => {
    const { user } = await enrolled();
    const token = (await passwordLogin(user)).json().mfa_token as string;
    const res = await t.request({
      method: 'POST',
      url: '/api/v1/users/login/mfa/enrol/',
      payload: { mfa_token: token },
    });
    expect(res.json()).toMatchObject({ status: 401, code: 'invalid_mfa_token' });
  });

  it('needs a signed-in user and their current password to enrol', async () => {
    expect(
      (await t.request({ method: 'POST', url: '/api/v1/users/mfa/totp/', payload: { password: 'x' } })).statusCode,
    ).toBe(401);
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const client = await loginAs(t, user);
    expect((await client.post('/api/v1/users/mfa/totp/', {})).json()).toMatchObject({
      status: 400,
      errors: [{ field: 'password' }],
    });
    const wrong = await client.post('/api/v1/users/mfa/totp/', { password: 'not-the-password-1' });
    expect(wrong.json()).toMatchObject({ status: 400, code: 'wrong_password', errors: [{ field: 'password' }] });
    const [counted] = await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id));
    expect(counted?.failedCount).toBe(1);
    const [none] = await t.database.db.select().from(mfaTotp).where(eq(mfaTotp.userId, user.id));
    expect(none).toBeUndefined();
  });
});
