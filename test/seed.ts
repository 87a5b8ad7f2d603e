import { and, eq, isNull, or, sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { organizations } from '../src/modules/organizations/organizations.table.js';
import { userRolesChanged } from '../src/modules/rbac/effective-access.js';
import { roles, userRoles } from '../src/modules/rbac/rbac.table.js';
import { type User, users } from '../src/modules/users/users.table.js';
import { hashPassword } from '../src/platform/crypto/passwords.js';
import { type TestApp, unique } from './test-app.js';

export const TEST_PASSWORD = 'correct horse battery staple';

/** Test data written straight to the database, so a test can stand on parts other than the one it checks. */
export async function seedOrganization(t: TestApp, overrides: { code?: string; isActive?: boolean } = {}) {
  const code = overrides.code ?? unique('org-');
  const [org] = await t.database.db
    .insert(organizations)
    .values({ code, name: `Organization ${code}`, isActive: overrides.isActive ?? true })
    .returning();
  if (!org) throw new Error('organization not created');
  return org;
}

let cachedHash: string | undefined;

export async function seedUser(
  t: TestApp,
  organizationId: string,
  overrides: Partial<typeof users.$inferInsert> & { password?: string } = {},
): Promise<User> {
  const { password, ...rest } = overrides;
  // One argon2 hash per test process keeps seeding fast; a custom password is hashed on its own.
  if (!password && cachedHash === undefined) cachedHash = await hashPassword(TEST_PASSWORD);
  const passwordHash = password ? await hashPassword(password) : cachedHash;
  const [user] = await t.database.db
    .insert(users)
    .values({ organizationId, email: `${unique('u')}@example.com`, passwordHash, ...rest })
    .returning();
  if (!user) throw new Error('user not created');
  return user;
}

export interface Client {
  user: User;
  token: string;
  get(url: string): Promise<LightMyRequestResponse>;
  delete(url: string): Promise<LightMyRequestResponse>;
  post(url: string, body?: unknown): Promise<LightMyRequestResponse>;
  patch(url: string, body?: unknown): Promise<LightMyRequestResponse>;
}

/** Logs `user` in through the real token endpoint and returns a client that sends its bearer token. */
export async function loginAs(t: TestApp, user: User, password = TEST_PASSWORD): Promise<Client> {
  const [org] = await t.database.db.select().from(organizations).where(eq(organizations.id, user.organizationId));
  const res = await t.request({
    method: 'POST',
    url: '/api/token/',
    payload: { email: user.email, password, organization: org?.code },
  });
  if (res.statusCode !== 200) throw new Error(`login failed: ${res.statusCode} ${res.body}`);
  const token = (res.json() as { access: string }).access;
  const headers = { authorization: `Bearer ${token}` };
  return {
    user,
    token,
    get: (url) => t.request({ method: 'GET', url, headers }),
    delete: (url) => t.request({ method: 'DELETE', url, headers }),
    post: (url, body) =>
      t.request({ method: 'POST', url, headers, ...(body === undefined ? {} : { payload: body as object }) }),
    patch: (url, body) => t.request({ method: 'PATCH', url, headers, payload: body as object }),
  };
}

/** A fresh organization with a superuser signed in. */
export async function superuserClient(t: TestApp): Promise<Client> {
  const org = await seedOrganization(t);
  const user = await seedUser(t, org.id, { isSuperuser: true, isStaff: true });
  return loginAs(t, user);
}

/**
 * Creates, through the API as `creator` (a superuser), a role of `organization` opening Gatehouse's
 * module with these permissions; answers its code (`prefix` made unique).
 */
export async function createOrganizationRole(
  creator: Client,
  organization: string,
  prefix: string,
  level: number,
  permissions: string[],
): Promise<string> {
  const res = await creator.post('/api/v1/roles/', {
    code: unique(prefix).replace(/-/g, '_'),
    name: prefix,
    level,
    organization,
    permissions,
    modules: ['GATEHOUSE'],
  });
  if (res.statusCode !== 201) throw new Error(`role not created: ${res.statusCode} ${res.body}`);
  return res.json().code as string;
}

/** Gives a user a role by code, straight in the database: the organization's own role first, then the global one. */
export async function grantRole(t: TestApp, user: User, roleCode: string, isPrimary = false): Promise<void> {
  const [role] = await t.database.db
    .select({ id: roles.id })
    .from(roles)
    .where(
      and(eq(roles.code, roleCode), or(eq(roles.organizationId, user.organizationId), isNull(roles.organizationId))),
    )
    .orderBy(sql`${roles.organizationId} is null`)
    .limit(1);
  if (!role) throw new Error(`no role ${roleCode}`);
  await t.database.db.insert(userRoles).values({ userId: user.id, roleId: role.id, isPrimary });
  await userRolesChanged(t.database.db, user.id);
}

/** A fresh user of the organization holding one role (by code), signed in. */
export async function clientWithRole(t: TestApp, organizationId: string, roleCode: string): Promise<Client> {
  const user = await seedUser(t, organizationId);
  await grantRole(t, user, roleCode);
  return loginAs(t, user);
}
