import { pbkdf2Sync, randomBytes } from 'node:crypto';
import bcrypt from 'bcryptjs';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { users } from '../../src/modules/users/users.table.js';
import { needsRehash, verifyPassword } from '../../src/platform/crypto/passwords.js';
import { seedOrganization, seedUser } from '../seed.js';
import { startTestApp, type TestApp, unique } from '../test-app.js';

describe('login with a password hash imported from another system', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  async function storedHash(userId: string): Promise<string> {
    const [row] = await t.database.db.select({ h: users.passwordHash }).from(users).where(eq(users.id, userId));
    return row?.h as string;
  }

  it('logs in with a Django pbkdf2_sha256 hash and upgrades it to argon2id', async () => {
    const org = await seedOrganization(t);
    const salt = randomBytes(9).toString('base64url');
    const digest = pbkdf2Sync('django password 1', salt, 1000, 32, 'sha256').toString('base64');
    const email = `${unique('dj')}@example.com`;
    const user = await seedUser(t, org.id, { email, passwordHash: `pbkdf2_sha256$1000$${salt}$${digest}` });

    const res = await t.request({
      method: 'POST',
      url: '/api/v1/users/login/',
      payload: { email, password: 'django password 1' },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ token_type: 'Bearer', user: { id: user.id } });

    const upgraded = await storedHash(user.id);
    expect(upgraded.startsWith('$argon2id$')).toBe(true);
    expect(needsRehash(upgraded)).toBe(false);
    expect(await verifyPassword(upgraded, 'django password 1')).toBe(true);
    const again = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email, password: 'django password 1' },
    });
    expect(again.statusCode).toBe(200);
  });

  it('logs in with a bcrypt hash and upgrades it; a wrong password leaves it as it was', async () => {
    const org = await seedOrganization(t);
    const email = `${unique('bc')}@example.com`;
    const legacy = bcrypt.hashSync('bcrypt password 1', 4);
    const user = await seedUser(t, org.id, { email, passwordHash: legacy });

    const wrong = await t.request({ method: 'POST', url: '/api/token/', payload: { email, password: 'nope nope' } });
    expect(wrong.statusCode).toBe(401);
    expect(await storedHash(user.id)).toBe(legacy);

    const res = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email, password: 'bcrypt password 1' },
    });
    expect(res.statusCode).toBe(200);
    expect((await storedHash(user.id)).startsWith('$argon2id$v=19$m=19456,t=2,p=1$')).toBe(true);
  });
});
