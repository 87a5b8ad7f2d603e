import { and, eq, isNull, sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, seedOrganization, seedUser, superuserClient, TEST_PASSWORD } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import type { User } from '../users/users.table.js';
import { sessions } from './auth.table.js';

// Logins racing the writes that end a user's sessions. Only PostgreSQL runs transactions side by
// side (PGlite runs one at a time and cannot show these), so these run with TEST_DATABASE_URL.
describe.runIf(process.env.TEST_DATABASE_URL)('logins racing the end of their account', () => {
  let t: TestApp;
  let admin: Client;
  beforeAll(async () => {
    t = await startTestApp();
    admin = await superuserClient(t);
  });
  afterAll(() => t.close());

  const LOGINS = 8;
  // The write lands at a different point of the logins' password checks each round.
  const WRITE_DELAYS_MS = [40, 55, 70, 85, 100];
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  /** Logins with the old password ~15 ms apart, and `write` after `delayMs`; answers both. */
  async function race(user: User, delayMs: number, write: () => Promise<LightMyRequestResponse>) {
    const logins = Array.from({ length: LOGINS }, async (_, i) => {
      await sleep(i * 15);
      return t.request({ method: 'POST', url: '/api/token/', payload: { email: user.email, password: TEST_PASSWORD } });
    });
    const written = (async () => {
      await sleep(delayMs);
      return write();
    })();
    const [answers, writeAnswer] = await Promise.all([Promise.all(logins), written]);
    return { answers, writeAnswer };
  }

  async function openSessionsOf(userId: string): Promise<number> {
    const rows = await t.database.db
      .select({ n: sql<number>`count(*)::int` })
      .from(sessions)
      .where(and(eq(sessions.userId, userId), isNull(sessions.revokedAt)));
    return rows[0]?.n ?? 0;
  }

  /** Every token pair a login answered no longer works: its access token nor its refresh token. */
  async function expectDeadTokens(answers: LightMyRequestResponse[]): Promise<void> {
    for (const res of answers.filter((a) => a.statusCode === 200)) {
      const { access, refresh } = res.json() as { access: string; refresh: string };
      const profile = await t.request({
        method: 'GET',
        url: '/api/v1/users/profile/',
        headers: { authorization: `Bearer ${access}` },
      });
      expect(profile.statusCode).toBe(401);
      const refreshed = await t.request({ method: 'POST', url: '/api/token/refresh/', payload: { refresh } });
      expect(refreshed.statusCode).toBe(401);
    }
  }

  function expectNoServerError(answers: LightMyRequestResponse[]): void {
    for (const res of answers) expect([200, 401], res.body).toContain(res.statusCode);
  }

  it('leaves no session of a login with the old password once an administrator changed it', async () => {
    for (const delay of WRITE_DELAYS_MS) {
      const org = await seedOrganization(t);
      const user = await seedUser(t, org.id);
      const { answers, writeAnswer } = await race(user, delay, () =>
        admin.patch(`/api/v1/users/${user.id}/`, { password: 'New-Walrus-7781' }),
      );
      expect(writeAnswer.statusCode, writeAnswer.body).toBe(200);
      expectNoServerError(answers);
      expect(await openSessionsOf(user.id)).toBe(0);
      await expectDeadTokens(answers);
    }
  });

  it('ends for good the sessions of logins racing a deactivation of the user', async () => {
    for (const delay of WRITE_DELAYS_MS) {
      const org = await seedOrganization(t);
      const user = await seedUser(t, org.id);
      const { answers, writeAnswer } = await race(user, delay, () =>
        admin.post(`/api/v1/users/${user.id}/deactivate/`),
      );
      expect(writeAnswer.statusCode, writeAnswer.body).toBe(200);
      expectNoServerError(answers);
      expect(await openSessionsOf(user.id)).toBe(0);
      const reactivated = await admin.patch(`/api/v1/users/${user.id}/`, { is_active: true });
      expect(reactivated.statusCode, reactivated.body).toBe(200);
      await expectDeadTokens(answers);
    }
  });

  it('ends for good the sessions of logins racing a deactivation of the organization', async () => {
    for (const delay of WRITE_DELAYS_MS) {
      const org = await seedOrganization(t);
      const user = await seedUser(t, org.id);
      const { answers, writeAnswer } = await race(user, delay, () =>
        admin.post(`/api/v1/organizations/${org.code}/deactivate/`),
      );
      expect(writeAnswer.statusCode, writeAnswer.body).toBe(200);
      expectNoServerError(answers);
      expect(await openSessionsOf(user.id)).toBe(0);
      const reactivated = await admin.patch(`/api/v1/organizations/${org.code}/`, { is_active: true });
      expect(reactivated.statusCode, reactivated.body).toBe(200);
      await expectDeadTokens(answers);
    }
  });

  it('answers 401 to logins racing the deletion of the user, and 204 to the deletion', async () => {
    for (const delay of WRITE_DELAYS_MS) {
      const org = await seedOrganization(t);
      const user = await seedUser(t, org.id);
      const { answers, writeAnswer } = await race(user, delay, () => admin.delete(`/api/v1/users/${user.id}/`));
      expect(writeAnswer.statusCode, writeAnswer.body).toBe(204);
      expectNoServerError(answers);
      expect(await openSessionsOf(user.id)).toBe(0);
      await expectDeadTokens(answers);
    }
  });
});
