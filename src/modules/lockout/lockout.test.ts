import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastMailTo } from '../../../test/mail.js';
import { loginAs, seedOrganization, seedUser, superuserClient, TEST_PASSWORD } from '../../../test/seed.js';
import { startTestApp, type TestApp, testConfig } from '../../../test/test-app.js';
import { ConfigError } from '../../config.js';
import { activities } from '../activity/activity.table.js';
import { organizations } from '../organizations/organizations.table.js';
import { users } from '../users/users.table.js';
import { accountLockouts } from './lockout.table.js';

describe('account lockout', () => {
  let t: TestApp;
  // RATE_LIMITS stays off (test default): lockout must work without it.
  beforeAll(async () => {
    t = await startTestApp({ LOCKOUT_THRESHOLD: '3', LOCKOUT_WINDOW: '600', LOCKOUT_DURATION: '600' });
  });
  afterAll(() => t.close());

  const login = (email: string, password: string) =>
    t.request({ method: 'POST', url: '/api/token/', payload: { email, password } });
  const failTimes = async (email: string, n: number) => {
    for (let i = 0; i < n; i++) expect((await login(email, 'wrong password!')).statusCode).toBe(401);
  };

  async function freshUser(overrides: Parameters<typeof seedUser>[2] = {}) {
    const org = await seedOrganization(t);
    return seedUser(t, org.id, overrides);
  }

  it('locks after the threshold of failed logins even with RATE_LIMITS=off, answering the same 401 for the right password', async () => {
    const user = await freshUser();
    const earlier = await loginAs(t, user);
    await failTimes(user.email, 3);

    const right = await login(user.email, TEST_PASSWORD);
    const wrong = await login(user.email, 'wrong password!');
    const unknown = await login('nobody-here@example.com', TEST_PASSWORD);
    expect(right.statusCode).toBe(401);
    expect(right.json()).toEqual(wrong.json());
    expect(right.json()).toEqual(unknown.json());
    expect(right.json()).toMatchObject({ code: 'invalid_credentials' });
    // Locking ends the sessions the account already had.
    expect((await earlier.get('/api/v1/users/validate-token/')).statusCode).toBe(401);
  });

  const auditOf = (userId: string) =>
    t.database.db
      .select({
        type: activities.activityType,
        description: activities.description,
        organizationId: activities.organizationId,
        actorType: activities.actorType,
        actorId: activities.actorId,
        details: activities.details,
      })
      .from(activities)
      .where(eq(activities.userId, userId))
      .orderBy(activities.timestamp, activities.id);

  it('checks at most the threshold of concurrent guesses, and logs in with none once locked', async () => {
    const user = await freshUser();
    // The right password hides among 40 guesses sent at once (as #20), on every login route.
    const routes = ['/api/v1/users/login/', '/api/token/', '/api/login/'];
    const answers = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        t.request({
          method: 'POST',
          url: routes[i % routes.length] as string,
          payload: { email: user.email, password: i === 19 ? TEST_PASSWORD : `wrong guess ${i}` },
        }),
      ),
    );
    const events = await auditOf(user.id);
    const checked = events.filter((e) => e.description === 'Failed login: wrong password');
    const logins = events.filter((e) => e.type === 'auth.login');
    // Three guesses at most were checked: the lock stopped the others before their password was.
    expect(checked.length + logins.length).toBeLessThanOrEqual(3);
    const lockedAt = events.findIndex((e) => e.type === 'auth.lockout');
    // No login after the lock, and none of the refused answers tells a locked account apart.
    if (lockedAt >= 0) expect(events.slice(lockedAt).some((e) => e.type === 'auth.login')).toBe(false);
    const refused = answers.filter((a) => a.statusCode !== 200);
    expect(refused.length).toBeGreaterThanOrEqual(39);
    for (const a of refused) {
      // On two busy cores some of 40 password checks may wait past the hash queue's deadline.
      if (a.statusCode === 503) expect(a.json()).toMatchObject({ code: 'server_busy' });
      else expect(a.json()).toMatchObject({ status: 401, code: 'invalid_credentials' });
    }
    // #20 came long after the first three guesses: it was refused, and the account stays locked.
    expect(answers[19]?.statusCode).not.toBe(200);
    expect((await login(user.email, TEST_PASSWORD)).statusCode).toBe(401);
  });

  it('logs in every one of more correct logins sent at once than the threshold, with no lock on record', async () => {
    const user = await freshUser();
    const answers = await Promise.all(Array.from({ length: 8 }, () => login(user.email, TEST_PASSWORD)));
    expect(answers.map((a) => a.statusCode)).toEqual(Array(8).fill(200));
    const events = await auditOf(user.id);
    expect(events.filter((e) => e.type === 'auth.login')).toHaveLength(8);
    expect(events.some((e) => e.type === 'auth.login_failed' || e.type === 'auth.lockout')).toBe(false);
  });

  it('records a refused login on a locked account against the account, saying it is locked', async () => {
    const user = await freshUser();
    await failTimes(user.email, 3);
    const before = (await auditOf(user.id)).length;
    expect((await login(user.email, TEST_PASSWORD)).json()).toMatchObject({ status: 401, code: 'invalid_credentials' });
    const events = (await auditOf(user.id)).slice(before);
    expect(events).toEqual([
      {
        type: 'auth.login_failed',
        description: 'Failed login: account locked',
        organizationId: user.organizationId,
        actorType: 'user',
        actorId: user.id,
        details: { step: 'password', reason: 'account_locked' },
      },
    ]);
  });

  it('makes the user the actor of their own logins and failed logins', async () => {
    const admin = await superuserClient(t);
    const user = await freshUser();
    await failTimes(user.email, 1);
    expect((await login(user.email, TEST_PASSWORD)).statusCode).toBe(200);
    const events = await auditOf(user.id);
    expect(events.map((e) => [e.type, e.actorType, e.actorId])).toEqual([
      ['auth.login_failed', 'user', user.id],
      ['auth.login', 'user', user.id],
    ]);
    const listed = await admin.get(`/api/v1/activities/?actor=${user.id}&category=authentication`);
    expect(listed.statusCode).toBe(200);
    const types = (listed.json() as { results: { activity_type: string }[] }).results.map((r) => r.activity_type);
    expect(types).toEqual(expect.arrayContaining(['auth.login', 'auth.login_failed']));
  });

  it('does not extend a lock with failures made while locked', async () => {
    const user = await freshUser();
    await failTimes(user.email, 3);
    const [first] = await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id));
    await failTimes(user.email, 5);
    const [after] = await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id));
    expect(after?.lockedUntil?.getTime()).toBe(first?.lockedUntil?.getTime());
  });

  it('lifts the lock by itself once its time has passed', async () => {
    const user = await freshUser();
    await failTimes(user.email, 3);
    expect((await login(user.email, TEST_PASSWORD)).statusCode).toBe(401);
    // The clock moves on: the lock ended a second ago.
    await t.database.db
      .update(accountLockouts)
      .set({ lockedUntil: sql`now() - interval '1 second'` })
      .where(eq(accountLockouts.userId, user.id));
    expect((await login(user.email, TEST_PASSWORD)).statusCode).toBe(200);
    expect(await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id))).toEqual([]);
  });

  it('forgets failed logins on a successful one, and counts again from one after the window', async () => {
    const user = await freshUser();
    await failTimes(user.email, 2);
    expect((await login(user.email, TEST_PASSWORD)).statusCode).toBe(200);
    await failTimes(user.email, 2);
    expect((await login(user.email, TEST_PASSWORD)).statusCode).toBe(200);

    await failTimes(user.email, 2);
    await t.database.db
      .update(accountLockouts)
      .set({ windowStartedAt: sql`now() - interval '601 seconds'` })
      .where(eq(accountLockouts.userId, user.id));
    await failTimes(user.email, 2);
    expect((await login(user.email, TEST_PASSWORD)).statusCode).toBe(200);
  });

  it('counts a failed login against every account the identifier names, and only those', async () => {
    const email = `shared-${Date.now()}@example.com`;
    const a = await freshUser({ email });
    const b = await freshUser({ email, password: 'another good password' });
    const other = await freshUser();
    await failTimes(email, 3);
    expect((await login(email, 'another good password')).statusCode).toBe(401);
    const locked = await t.database.db
      .select({ userId: accountLockouts.userId })
      .from(accountLockouts)
      .where(
        sql`${accountLockouts.lockedUntil} > now() and ${accountLockouts.userId} in (${a.id}, ${b.id}, ${other.id})`,
      );
    expect(locked.map((r) => r.userId).sort()).toEqual([a.id, b.id].sort());
    expect((await login(other.email, TEST_PASSWORD)).statusCode).toBe(200);
  });

  it('counts a wrong current password on change-password: the threshold locks the account and ends the session', async () => {
    const user = await freshUser();
    const as = await loginAs(t, user);
    const change = (old_password: string) =>
      as.post('/api/v1/users/change-password/', { old_password, new_password: 'violet kettle maps 42' });
    for (let i = 0; i < 2; i++) expect((await change('not the password')).json().code).toBe('wrong_password');
    const [counted] = await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id));
    expect(counted?.failedCount).toBe(2);
    expect((await change('not the password')).statusCode).toBe(400);

    // Locked: the session that guessed has ended, and login refuses the right password.
    expect((await change(TEST_PASSWORD)).statusCode).toBe(401);
    expect((await login(user.email, TEST_PASSWORD)).statusCode).toBe(401);
    const events = await t.database.db
      .select({ type: activities.activityType })
      .from(activities)
      .where(eq(activities.userId, user.id));
    expect(events.map((e) => e.type)).toEqual(expect.arrayContaining(['auth.credential_check_failed', 'auth.lockout']));
  });

  it('refuses a password change while the account is locked, whatever the current password', async () => {
    const user = await freshUser();
    const as = await loginAs(t, user);
    // A lock in force with the session still open (as when it was opened on another node just before).
    await t.database.db.insert(accountLockouts).values({
      organizationId: user.organizationId,
      userId: user.id,
      lockedUntil: sql`now() + interval '10 minutes'`,
    });
    const res = await as.post('/api/v1/users/change-password/', {
      old_password: TEST_PASSWORD,
      new_password: 'violet kettle maps 42',
    });
    expect(res.json()).toMatchObject({ status: 400, code: 'wrong_password' });
    const [row] = await t.database.db.select().from(users).where(eq(users.id, user.id));
    expect(row?.passwordHash).toBe(user.passwordHash);
  });

  it('lifts a lock and forgets the failures once the password is reset with the mailed token', async () => {
    const user = await freshUser();
    await failTimes(user.email, 3);
    expect((await login(user.email, TEST_PASSWORD)).statusCode).toBe(401);
    const request = await t.request({
      method: 'POST',
      url: '/api/v1/users/password-reset/',
      payload: { email: user.email },
    });
    expect(request.statusCode).toBe(202);
    const { token } = await lastMailTo(t, user.email);
    const confirm = await t.request({
      method: 'POST',
      url: '/api/v1/users/password-reset/confirm/',
      payload: { token, new_password: 'violet kettle maps 42' },
    });
    expect(confirm.statusCode).toBe(200);
    expect(await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id))).toEqual([]);
    expect((await login(user.email, 'violet kettle maps 42')).statusCode).toBe(200);
  });

  describe('POST /api/v1/users/{id}/unlock/', () => {
    it('lets a superuser lift a lock at once', async () => {
      const admin = await superuserClient(t);
      const user = await freshUser();
      await failTimes(user.email, 3);
      const before = await admin.get(`/api/v1/users/${user.id}/lockout/`);
      expect(before.json()).toMatchObject({ id: user.id, locked: true, failed_attempts: 0 });
      expect(Date.parse((before.json() as { locked_until: string }).locked_until)).toBeGreaterThan(Date.now());
      const res = await admin.post(`/api/v1/users/${user.id}/unlock/`);
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual({ id: user.id, locked: false, status: 'active' });
      expect((await login(user.email, TEST_PASSWORD)).statusCode).toBe(200);
      expect((await admin.get(`/api/v1/users/${user.id}/lockout/`)).json()).toEqual({
        id: user.id,
        locked: false,
        locked_until: null,
        failed_attempts: 0,
      });
    });

    it('shows the failed logins counted so far', async () => {
      const admin = await superuserClient(t);
      const user = await freshUser();
      await failTimes(user.email, 2);
      expect((await admin.get(`/api/v1/users/${user.id}/lockout/`)).json()).toMatchObject({
        locked: false,
        failed_attempts: 2,
      });
    });

    it('turns an administrator-set locked status back into active', async () => {
      const admin = await superuserClient(t);
      const user = await freshUser({ status: 'locked' });
      const res = await admin.post(`/api/v1/users/${user.id}/unlock`);
      expect(res.json()).toMatchObject({ status: 'active' });
      const [row] = await t.database.db.select().from(users).where(eq(users.id, user.id));
      expect(row?.status).toBe('active');
    });

    it('answers 409 organization_inactive for a user of a deactivated organization, leaving them locked', async () => {
      const admin = await superuserClient(t);
      const org = await seedOrganization(t);
      const user = await seedUser(t, org.id, { status: 'locked' });
      await failTimes(user.email, 3);
      await t.database.db.update(organizations).set({ isActive: false }).where(eq(organizations.id, org.id));
      const res = await admin.post(`/api/v1/users/${user.id}/unlock/`);
      expect(res.json()).toMatchObject({ status: 409, code: 'organization_inactive' });
      const [row] = await t.database.db.select().from(users).where(eq(users.id, user.id));
      expect(row?.status).toBe('locked');
      const [lock] = await t.database.db.select().from(accountLockouts).where(eq(accountLockouts.userId, user.id));
      expect(lock?.lockedUntil?.getTime()).toBeGreaterThan(Date.now());
    });

    it('answers 404 for an unknown user and 403 without users.update', async () => {
      const admin = await superuserClient(t);
      expect((await admin.post('/api/v1/users/0190a000-0000-7000-8000-000000000000/unlock/')).statusCode).toBe(404);
      const plain = await loginAs(t, await freshUser());
      const target = await freshUser();
      expect((await plain.post(`/api/v1/users/${target.id}/unlock/`)).statusCode).toBe(403);
    });
  });

  it('refuses bad lockout settings naming the variable', () => {
    for (const variable of ['LOCKOUT_THRESHOLD', 'LOCKOUT_WINDOW', 'LOCKOUT_DURATION']) {
      for (const value of ['abc', '0', '-5']) {
        let caught: unknown;
        try {
          testConfig({ [variable]: value });
        } catch (err) {
          caught = err;
        }
        expect(caught).toBeInstanceOf(ConfigError);
        expect((caught as ConfigError).variable).toBe(variable);
      }
    }
    expect(testConfig({}).lockoutThreshold).toBe(5);
    expect(testConfig({}).lockoutWindowSeconds).toBe(900);
    expect(testConfig({}).lockoutDurationSeconds).toBe(900);
  });
});
