import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Scim, scimClient } from '../../../test/scim-client.js';
import { type Client, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';

// /Bulk writes of users racing other writes of the same users: each operation is planned from the
// row as the last committed writer left it, and its version compared with that row. Only PostgreSQL
// runs transactions side by side (PGlite runs one at a time and cannot show a lost update), so these
// run with TEST_DATABASE_URL.
describe.runIf(process.env.TEST_DATABASE_URL)('concurrent /Bulk writes', () => {
  const BULK = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
  const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
  const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
  const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
  const ROUNDS = 20;
  let t: TestApp;
  let admin: Client;
  let scim: Scim;
  let organizationId: string;
  beforeAll(async () => {
    t = await startTestApp();
    admin = await superuserClient(t);
    const client = await scimClient(t);
    scim = client.scim;
    organizationId = client.org.id;
  });
  afterAll(() => t.close());

  type Operation = { method: 'PATCH' | 'PUT'; path: string; data: unknown; version?: string };
  const bulk = (operations: Operation[]) => scim('POST', '/Bulk', { schemas: [BULK], Operations: operations });
  const replace = (path: string, value: unknown) => ({
    schemas: [PATCH],
    Operations: [{ op: 'replace', path, value }],
  });

  /** The statuses of a bulk response's operations (every bulk request itself answers 200). */
  function statusesOf(res: LightMyRequestResponse): string[] {
    expect(res.statusCode, res.body).toBe(200);
    return (res.json().Operations as { status: string }[]).map((o) => o.status);
  }

  async function createUser() {
    const name = unique('u');
    const res = await scim('POST', '/Users', {
      schemas: [USER],
      userName: name,
      name: { givenName: 'First', familyName: 'Last' },
      emails: [{ value: `${name}@example.com`, primary: true }],
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json() as { id: string; meta: { version: string } };
  }

  it('keeps a title set by a single PATCH while a /Bulk PATCH sets the given name', async () => {
    const user = await createUser();
    for (let round = 0; round < ROUNDS; round++) {
      const [viaBulk, single] = await Promise.all([
        bulk([{ method: 'PATCH', path: `/Users/${user.id}`, data: replace('name.givenName', `G${round}`) }]),
        scim('PATCH', `/Users/${user.id}`, replace('title', `T${round}`)),
      ]);
      expect(statusesOf(viaBulk)).toEqual(['200']);
      expect(single.statusCode, single.body).toBe(200);
      const stored = (await scim('GET', `/Users/${user.id}`)).json();
      expect(stored, `round ${round}`).toMatchObject({ title: `T${round}`, name: { givenName: `G${round}` } });
    }
  });

  it('keeps an administrator’s suspension and attributes set while /Bulk replaces the user, and the replacement', async () => {
    const [user, other] = [await createUser(), await createUser()];
    const current = (await scim('GET', `/Users/${user.id}`)).json();
    const otherCurrent = (await scim('GET', `/Users/${other.id}`)).json();
    for (let round = 0; round < ROUNDS; round++) {
      // Two users: the set-based path, which writes whole rows planned from what it read.
      const [viaBulk, patched] = await Promise.all([
        bulk([
          { method: 'PUT', path: `/Users/${user.id}`, data: { ...current, title: `T${round}` } },
          { method: 'PUT', path: `/Users/${other.id}`, data: { ...otherCurrent, title: `T${round}` } },
        ]),
        // A replacement sending active: true leaves a suspended user suspended, and keeps attributes
        // other than SCIM's: both as an administrator set them just before, not as /Bulk first read them.
        admin.patch(`/api/v1/users/${user.id}/`, {
          status: round % 2 === 0 ? 'suspended' : 'active',
          attributes: { department: `D${round}` },
        }),
      ]);
      expect(statusesOf(viaBulk)).toEqual(['200', '200']);
      expect(patched.statusCode, patched.body).toBe(200);
      expect((await scim('GET', `/Users/${user.id}`)).json()).toMatchObject({ title: `T${round}` });
      expect((await admin.get(`/api/v1/users/${user.id}/`)).json(), `round ${round}`).toMatchObject({
        status: round % 2 === 0 ? 'suspended' : 'active',
        attributes: { department: `D${round}` },
      });
    }
  });

  it('keeps every field of concurrent /Bulk requests patching the same users in either order', async () => {
    const users = await Promise.all(Array.from({ length: 10 }, () => createUser()));
    for (let round = 0; round < 3; round++) {
      // Half set the given names only, half the family names only, some in the reverse order: rows
      // are locked in one order whatever the request's, so none of these deadlocks.
      const answers = await Promise.all(
        Array.from({ length: 10 }, (_, i) => {
          const ordered = i % 4 < 2 ? users : [...users].reverse();
          const data = i % 2 === 0 ? replace('name.givenName', `G${round}`) : replace('name.familyName', `L${round}`);
          return bulk(ordered.map((u) => ({ method: 'PATCH', path: `/Users/${u.id}`, data })));
        }),
      );
      for (const res of answers) expect(statusesOf(res)).toEqual(users.map(() => '200'));
      for (const u of users) {
        expect((await scim('GET', `/Users/${u.id}`)).json().name).toMatchObject({
          givenName: `G${round}`,
          familyName: `L${round}`,
        });
      }
    }
  });

  it('lets one of concurrent writes sent with the same version through, /Bulk or not, and answers 412 to the others', async () => {
    for (let round = 0; round < ROUNDS / 4; round++) {
      const user = await createUser();
      const version = user.meta.version;
      const answers = await Promise.all(
        Array.from({ length: 8 }, (_, i) =>
          i % 2 === 0
            ? bulk([{ method: 'PATCH', path: `/Users/${user.id}`, data: replace('title', `T${i}`), version }])
            : scim('PATCH', `/Users/${user.id}`, replace('title', `T${i}`), { 'if-match': version }),
        ),
      );
      const statuses = answers.map((res, i) => (i % 2 === 0 ? (statusesOf(res)[0] as string) : String(res.statusCode)));
      expect(
        statuses.filter((s) => s === '200'),
        statuses.join(),
      ).toHaveLength(1);
      expect(
        statuses.filter((s) => s === '412'),
        statuses.join(),
      ).toHaveLength(answers.length - 1);
    }
  });

  it('answers 412 to a /Bulk PATCH whose version was read before another write, which it leaves as written', async () => {
    for (let round = 0; round < ROUNDS; round++) {
      const user = await createUser();
      // Both read the same version; the title's PATCH is started first, and whichever commits first wins.
      const [single, viaBulk] = await Promise.all([
        scim('PATCH', `/Users/${user.id}`, replace('title', 'Engineer'), { 'if-match': user.meta.version }),
        bulk([
          {
            method: 'PATCH',
            path: `/Users/${user.id}`,
            data: replace('name.givenName', 'Grace'),
            version: user.meta.version,
          },
        ]),
      ]);
      const [bulkStatus] = statusesOf(viaBulk);
      expect([single.statusCode, Number(bulkStatus)].sort(), `round ${round}`).toEqual([200, 412]);
      const stored = (await scim('GET', `/Users/${user.id}`)).json();
      if (single.statusCode === 200) expect(stored).toMatchObject({ title: 'Engineer', name: { givenName: 'First' } });
      else expect(stored).toMatchObject({ name: { givenName: 'Grace' } });
    }
  });

  it('keeps every member of concurrent /Bulk PATCHes adding to one group', async () => {
    const members = await Promise.all(Array.from({ length: ROUNDS }, () => seedUser(t, organizationId)));
    const group = await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('Team ') });
    expect(group.statusCode, group.body).toBe(201);
    const id = group.json().id as string;
    const answers = await Promise.all(
      members.map((m) =>
        scim('POST', '/Bulk', {
          schemas: [BULK],
          Operations: [
            {
              method: 'PATCH',
              path: `/Groups/${id}`,
              data: { schemas: [PATCH], Operations: [{ op: 'add', path: 'members', value: [{ value: m.id }] }] },
            },
          ],
        }),
      ),
    );
    for (const res of answers) expect(statusesOf(res)).toEqual(['200']);
    const stored = (await scim('GET', `/Groups/${id}`)).json().members as { value: string }[];
    expect(stored.map((m) => m.value).sort()).toEqual(members.map((m) => m.id).sort());
  });
});
