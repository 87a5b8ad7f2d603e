import { sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/platform/db/client.js';
import { type Client, seedOrganization, seedUser, superuserClient } from '../seed.js';
import { startTestApp, type TestApp, unique } from '../test-app.js';

/**
 * A change asked for several times records one event, whether the requests come one after the other
 * or at once: the one that lost the race sees the change already made. The requests overlap only on
 * PostgreSQL (TEST_DATABASE_URL); PGlite runs them one after the other.
 */
describe('the same change asked for more than once', () => {
  let t: TestApp;
  let admin: Client;
  beforeAll(async () => {
    t = await startTestApp();
    admin = await superuserClient(t);
  });
  afterAll(() => t.close());

  const AT_ONCE = 12;
  const ONE_AFTER_ANOTHER = 4;

  /** Events of a type in an organization (of one object when named: the superuser's organization is shared). */
  async function events(organizationId: string, type: string, objectId?: string): Promise<number> {
    const [row] = await queryRows<{ n: number }>(
      t.database.db,
      sql`select count(*)::int as n from activities
          where kind = 'audit' and organization_id = ${organizationId} and activity_type = ${type}
            and (${objectId ?? null}::text is null or object_id = ${objectId ?? null})`,
    );
    return row?.n ?? 0;
  }

  /** The same request `times` times, all at once or one after the other. */
  async function repeat(
    times: number,
    together: boolean,
    send: () => Promise<LightMyRequestResponse>,
  ): Promise<number[]> {
    if (together) return (await Promise.all(Array.from({ length: times }, send))).map((r) => r.statusCode);
    const codes: number[] = [];
    for (let i = 0; i < times; i++) codes.push((await send()).statusCode);
    return codes;
  }

  const modes = [
    { name: 'one after another', times: ONE_AFTER_ANOTHER, together: false },
    { name: 'at once', times: AT_ONCE, together: true },
  ];

  for (const { name, times, together } of modes) {
    describe(name, () => {
      it('deletes a user once: one 204 and user.deleted, the others 404 user_not_found', async () => {
        const org = await seedOrganization(t);
        const user = await seedUser(t, org.id);
        const codes = await repeat(times, together, () => admin.delete(`/api/v1/users/${user.id}/`));
        expect(codes.sort()).toEqual([204, ...Array(times - 1).fill(404)]);
        expect(await events(org.id, 'user.deleted')).toBe(1);
      });

      it('deactivates a user once, answering every repeat 200 without another event', async () => {
        const org = await seedOrganization(t);
        const user = await seedUser(t, org.id);
        const codes = await repeat(times, together, () => admin.post(`/api/v1/users/${user.id}/deactivate/`));
        expect(codes).toEqual(Array(times).fill(200));
        expect(await events(org.id, 'user.deactivated')).toBe(1);
        expect(await events(org.id, 'user.updated')).toBe(0);
      });

      it('records a user PATCH that sets a value once, when it changes it', async () => {
        const org = await seedOrganization(t);
        const user = await seedUser(t, org.id, { firstName: 'Before' });
        const codes = await repeat(times, together, () =>
          admin.patch(`/api/v1/users/${user.id}/`, { first_name: 'Same' }),
        );
        expect(codes).toEqual(Array(times).fill(200));
        expect(await events(org.id, 'user.updated')).toBe(1);
        expect((await admin.get(`/api/v1/users/${user.id}/`)).json()).toMatchObject({ first_name: 'Same' });
      });

      it('deactivates an organization once', async () => {
        const org = await seedOrganization(t);
        const codes = await repeat(times, together, () => admin.post(`/api/v1/organizations/${org.code}/deactivate/`));
        expect(codes).toEqual(Array(times).fill(200));
        expect(await events(org.id, 'organization.deactivated')).toBe(1);
        expect(await events(org.id, 'organization.updated')).toBe(0);
      });

      it('revokes an API key once', async () => {
        const org = await seedOrganization(t);
        const created = await admin.post('/api/v1/api-keys/', { name: 'k', organization: org.code, scopes: ['scim'] });
        expect(created.statusCode, created.body).toBe(201);
        const id = created.json().id as string;
        const codes = await repeat(times, together, () => admin.delete(`/api/v1/api-keys/${id}/`));
        expect(codes).toEqual(Array(times).fill(204));
        expect(await events(org.id, 'api_key.revoked')).toBe(1);
      });

      it('records role.grants_changed only when the grants change', async () => {
        const org = await seedOrganization(t);
        const created = await admin.post('/api/v1/roles/', {
          code: unique('r_').replace(/-/g, '_'),
          name: 'Reader',
          level: 10,
          organization: org.code,
          permissions: ['users.view'],
        });
        expect(created.statusCode, created.body).toBe(201);
        const id = created.json().id as string;
        const codes = await repeat(times, together, () =>
          admin.patch(`/api/v1/roles/${id}/`, { permissions: ['roles.view'] }),
        );
        expect(codes).toEqual(Array(times).fill(200));
        expect(await events(org.id, 'role.grants_changed')).toBe(1);
        expect((await admin.get(`/api/v1/roles/${id}/`)).json()).toMatchObject({ permissions: ['roles.view'] });
      });

      it('deletes a role once: one 204 and role.deleted, the others 404', async () => {
        const org = await seedOrganization(t);
        const created = await admin.post('/api/v1/roles/', {
          code: unique('r_').replace(/-/g, '_'),
          name: 'Doomed',
          level: 10,
          organization: org.code,
          permissions: [],
        });
        expect(created.statusCode, created.body).toBe(201);
        const id = created.json().id as string;
        const codes = await repeat(times, together, () => admin.delete(`/api/v1/roles/${id}/`));
        expect(codes.sort()).toEqual([204, ...Array(times - 1).fill(404)]);
        expect(await events(org.id, 'role.deleted')).toBe(1);
      });

      it('deletes an integration once: one 204 and integration.deleted, the others 404', async () => {
        const created = await admin.post('/api/v1/integrations/', {
          name: unique('Payments '),
          service_type: 'payment_gateway',
          provider_name: 'Stripe',
          auth_type: 'api_key',
          base_url: 'https://api.stripe.example/v1',
        });
        expect(created.statusCode, created.body).toBe(201);
        const { id, organization_id: organizationId } = created.json() as { id: string; organization_id: string };
        const codes = await repeat(times, together, () => admin.delete(`/api/v1/integrations/${id}/`));
        expect(codes.sort()).toEqual([204, ...Array(times - 1).fill(404)]);
        expect(await events(organizationId, 'integration.deleted', id)).toBe(1);
      });

      it('records a user type change once', async () => {
        const org = await seedOrganization(t);
        const code = unique('kind').replace(/-/g, '');
        const created = await admin.post('/api/v1/user-types/', {
          code,
          plural: `${code}s`,
          label: 'Before',
          organization: org.code,
          schema: { type: 'object' },
        });
        expect(created.statusCode, created.body).toBe(201);
        const id = created.json().id as string;
        const codes = await repeat(times, together, () => admin.patch(`/api/v1/user-types/${id}/`, { label: 'After' }));
        expect(codes).toEqual(Array(times).fill(200));
        expect(await events(org.id, 'user_type.updated')).toBe(1);
      });
    });
  }
});
