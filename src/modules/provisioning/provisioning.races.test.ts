import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scim, scimClient } from '../../../test/scim-client.js';
import { type Client, loginAs, seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { BATCH_SIZE } from './provisioning.service.js';

// Concurrent writes of one user, each changing something the others leave alone: every change must
// survive (no write may be planned from the row as it stood before another one committed). Only
// PostgreSQL runs transactions side by side (PGlite runs one at a time and cannot show a lost
// update), so these run with TEST_DATABASE_URL.
describe.runIf(process.env.TEST_DATABASE_URL)('concurrent writes of one user', () => {
  const PLATFORM_KEY = 'platform-provisioning-key-races-0123456789';
  const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
  const GROUP_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Group';
  const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
  const WRITES = 20;
  let t: TestApp;
  let admin: Client;
  beforeAll(async () => {
    t = await startTestApp({ PROVISIONING_API_KEY: PLATFORM_KEY });
    admin = await superuserClient(t);
  });
  afterAll(() => t.close());

  /** One seed-000 bulk call writing these keycloak ids, in this order, with these fields. */
  function bulkWrite(organization: string, keycloakIds: string[], fields: Record<string, unknown>) {
    return t.request({
      method: 'POST',
      url: '/api/provisioning/users/bulk',
      headers: { authorization: `Bearer ${PLATFORM_KEY}` },
      payload: keycloakIds.map((id) => ({
        keycloak_id: id,
        email: `${id}@example.com`,
        engagemx_client_id: organization,
        ...fields,
      })),
    });
  }

  function expectAll(answers: LightMyRequestResponse[], status: number) {
    for (const res of answers) expect(res.statusCode, res.body).toBe(status);
  }

  it('keeps every field of concurrent seed-000 upserts of one keycloak_id', async () => {
    const org = await seedOrganization(t);
    const keycloakId = unique('kc-');
    const upsert = (fields: Record<string, unknown>) =>
      t.request({
        method: 'POST',
        url: '/api/provisioning/users',
        headers: { authorization: `Bearer ${PLATFORM_KEY}` },
        payload: {
          keycloak_id: keycloakId,
          email: `${keycloakId}@example.com`,
          engagemx_client_id: org.code,
          ...fields,
        },
      });
    for (let round = 0; round < 3; round++) {
      const seeded = await upsert({ first_name: 'First', last_name: 'Last' });
      expect(seeded.statusCode, seeded.body).toBeLessThan(300);
      // A name left out keeps the stored one: half change the first name only, half the last name only.
      const answers = await Promise.all(
        Array.from({ length: WRITES }, (_, i) =>
          upsert(i % 2 === 0 ? { first_name: `F${round}` } : { last_name: `L${round}` }),
        ),
      );
      expectAll(answers, 200);
      const stored = (await admin.get(`/api/v1/users/${seeded.json().id}/`)).json();
      expect(stored).toMatchObject({ first_name: `F${round}`, last_name: `L${round}` });
    }
  });

  it('keeps every field of concurrent seed-000 bulk calls writing the same users', async () => {
    const org = await seedOrganization(t);
    const ids = Array.from({ length: 50 }, () => unique('kc-'));
    const bulk = (fields: Record<string, unknown>, order: string[] = ids) => bulkWrite(org.code, order, fields);
    for (let round = 0; round < 3; round++) {
      expect((await bulk({ first_name: 'First', last_name: 'Last' })).statusCode).toBe(200);
      // Half change the first names only, half the last names only, some in the reverse order.
      const answers = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          bulk(
            i % 2 === 0 ? { first_name: `F${round}` } : { last_name: `L${round}` },
            i % 4 < 2 ? ids : [...ids].reverse(),
          ),
        ),
      );
      expectAll(answers, 200);
      const listed = await t.request({
        method: 'GET',
        url: `/api/provisioning/users?client_id=${org.code}`,
        headers: { authorization: `Bearer ${PLATFORM_KEY}` },
      });
      const names = (listed.json().users as { first_name: string; last_name: string }[]).map(
        (u) => `${u.first_name} ${u.last_name}`,
      );
      expect(names).toEqual(ids.map(() => `F${round} L${round}`));
    }
  });

  it('completes overlapping bulk calls larger than one batch, whatever order they name the users in', async () => {
    const org = await seedOrganization(t);
    // Two batches a call: the second call takes the first call's second batch first.
    const ids = Array.from({ length: 2 * BATCH_SIZE }, () => unique('kc-'));
    const bulk = (fields: Record<string, unknown>, order: string[]) => bulkWrite(org.code, order, fields);
    expectAll([await bulk({ first_name: 'First', last_name: 'Last' }, ids)], 200);
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all([
        bulk({ first_name: `F${round}` }, ids),
        bulk({ last_name: `L${round}` }, [...ids].reverse()),
      ]);
      expectAll(answers, 200);
      for (const res of answers) expect(res.json()).toMatchObject({ success_count: ids.length, error_count: 0 });
    }
  });

  it('keeps every field of concurrent admin PATCHes of one user', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const suffix = unique('');
    const fields = [
      { first_name: 'Ada' },
      { last_name: 'Lovelace' },
      { username: `ada${suffix}` },
      { email: `ada${suffix}@example.com` },
      { external_id: `kc-ada${suffix}` },
    ];
    const answers = await Promise.all(
      Array.from({ length: WRITES }, (_, i) => admin.patch(`/api/v1/users/${user.id}/`, fields[i % fields.length])),
    );
    expectAll(answers, 200);
    expect((await admin.get(`/api/v1/users/${user.id}/`)).json()).toMatchObject(Object.assign({}, ...fields));
  });

  it('keeps every profile key of concurrent typed-user PATCHes', async () => {
    const code = unique('member').replace(/-/g, '');
    const plural = `${code}s`;
    const type = await admin.post('/api/v1/user-types/', {
      code,
      plural,
      label: 'Member',
      schema: { type: 'object', additionalProperties: { type: 'integer' } },
    });
    expect(type.statusCode, type.body).toBe(201);
    const created = await admin.post(`/api/v1/users/${plural}/`, { email: `${unique()}@x.io`, profile: {} });
    expect(created.statusCode, created.body).toBe(201);
    const id = created.json().id as string;
    const answers = await Promise.all(
      Array.from({ length: WRITES }, (_, i) =>
        admin.patch(`/api/v1/users/${plural}/${id}/`, { profile: { [`k${i}`]: i } }),
      ),
    );
    expectAll(answers, 200);
    const profile = (await admin.get(`/api/v1/users/${plural}/${id}/`)).json().profile;
    expect(profile).toEqual(Object.fromEntries(Array.from({ length: WRITES }, (_, i) => [`k${i}`, i])));
  });

  it('keeps every field of concurrent changes of one’s own profile', async () => {
    const org = await seedOrganization(t);
    const me = await loginAs(t, await seedUser(t, org.id));
    const suffix = unique('');
    const fields = [{ first_name: 'Grace' }, { last_name: 'Hopper' }, { username: `grace${suffix}` }];
    const answers = await Promise.all(
      Array.from({ length: WRITES }, (_, i) => me.patch('/api/v1/users/profile/', fields[i % fields.length])),
    );
    expectAll(answers, 200);
    expect((await me.get('/api/v1/users/profile/')).json()).toMatchObject(Object.assign({}, ...fields));
  });

  describe('through SCIM', () => {
    let scim: Scim;
    let organizationId: string;
    beforeAll(async () => {
      const client = await scimClient(t);
      scim = client.scim;
      organizationId = client.org.id;
    });

    async function createUser() {
      const name = unique('u');
      const res = await scim('POST', '/Users', {
        schemas: [USER_SCHEMA],
        userName: name,
        emails: [{ value: `${name}@example.com`, primary: true }],
      });
      expect(res.statusCode, res.body).toBe(201);
      return res.json() as { id: string; meta: { version: string } };
    }

    it('keeps every value of concurrent PATCHes adding to one user', async () => {
      const user = await createUser();
      const answers = await Promise.all(
        Array.from({ length: WRITES }, (_, i) =>
          scim('PATCH', `/Users/${user.id}`, {
            schemas: [PATCH],
            Operations: [{ op: 'add', path: 'phoneNumbers', value: [{ value: `+1 555 01${i}`, type: 'work' }] }],
          }),
        ),
      );
      expectAll(answers, 200);
      const phones = (await scim('GET', `/Users/${user.id}`)).json().phoneNumbers as { value: string }[];
      expect(phones.map((p) => p.value).sort()).toEqual(
        Array.from({ length: WRITES }, (_, i) => `+1 555 01${i}`).sort(),
      );
    });

    it("keeps a user's own attributes change made while SCIM writes their attributes.scim, and the SCIM write", async () => {
      const seeded = await seedUser(t, organizationId);
      const me = await loginAs(t, seeded);
      const titled = await scim('PATCH', `/Users/${seeded.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'title', value: 'Title' }],
      });
      expect(titled.statusCode, titled.body).toBe(200);
      const answers = await Promise.all(
        Array.from({ length: WRITES }, (_, i) =>
          i % 2 === 0
            ? scim('PATCH', `/Users/${seeded.id}`, {
                schemas: [PATCH],
                Operations: [{ op: 'replace', path: 'title', value: `Title ${i}` }],
              })
            : me.patch('/api/v1/users/profile/', { attributes: { theme: 'dark' } }),
        ),
      );
      expectAll(answers, 200);
      expect((await scim('GET', `/Users/${seeded.id}`)).json().title).toMatch(/^Title \d+$/);
      expect((await me.get('/api/v1/users/profile/')).json().attributes).toMatchObject({ theme: 'dark' });
    });

    it('keeps an admin change made while SCIM replaces the user, and the replacement', async () => {
      const user = await createUser();
      const current = (await scim('GET', `/Users/${user.id}`)).json();
      const answers = await Promise.all(
        Array.from({ length: WRITES }, (_, i) =>
          i % 2 === 0
            ? scim('PUT', `/Users/${user.id}`, { ...current, title: 'Engineer' })
            : admin.patch(`/api/v1/users/${user.id}/`, { is_staff: true }),
        ),
      );
      expectAll(answers, 200);
      expect((await scim('GET', `/Users/${user.id}`)).json()).toMatchObject({ title: 'Engineer' });
      expect((await admin.get(`/api/v1/users/${user.id}/`)).json()).toMatchObject({ is_staff: true });
    });

    it('lets one of concurrent PATCHes sent with the same If-Match through and answers 412 to the others', async () => {
      const user = await createUser();
      const answers = await Promise.all(
        Array.from({ length: WRITES }, (_, i) =>
          scim(
            'PATCH',
            `/Users/${user.id}`,
            { schemas: [PATCH], Operations: [{ op: 'replace', path: 'title', value: `T${i}` }] },
            { 'if-match': user.meta.version },
          ),
        ),
      );
      const statuses = answers.map((a) => a.statusCode);
      expect(statuses.filter((s) => s === 200)).toHaveLength(1);
      expect(statuses.filter((s) => s === 412)).toHaveLength(WRITES - 1);
      const winner = answers.find((a) => a.statusCode === 200)?.json();
      expect((await scim('GET', `/Users/${user.id}`)).json()).toMatchObject({ title: winner.title });
    });

    it('keeps every member of concurrent PATCHes adding to one group', async () => {
      const members = await Promise.all(Array.from({ length: WRITES }, () => seedUser(t, organizationId)));
      const group = await scim('POST', '/Groups', { schemas: [GROUP_SCHEMA], displayName: unique('Team ') });
      expect(group.statusCode, group.body).toBe(201);
      const id = group.json().id as string;
      const answers = await Promise.all(
        members.map((m) =>
          scim('PATCH', `/Groups/${id}`, {
            schemas: [PATCH],
            Operations: [{ op: 'add', path: 'members', value: [{ value: m.id }] }],
          }),
        ),
      );
      expectAll(answers, 200);
      const stored = (await scim('GET', `/Groups/${id}`)).json().members as { value: string }[];
      expect(stored.map((m) => m.value).sort()).toEqual(members.map((m) => m.id).sort());
    });
  });
});
