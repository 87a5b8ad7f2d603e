import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';

const BULK = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
const USER = 'urn:ietf:params:scim:schemas:core:2.0:User';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';
const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';

const user = (name = unique('u')) => ({ schemas: [USER], userName: `${name}@example.com` });

describe('SCIM Bulk', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('fails an operation holding a __proto__ key alone; the others are written', async () => {
    const { scim } = await scimClient(t);
    const [ok, bad] = [unique('p1'), unique('pb')];
    const op = (bulkId: string, data: string) =>
      `{"method":"POST","path":"/Users","bulkId":"${bulkId}","data":${data}}`;
    const res = await scim(
      'POST',
      '/Bulk',
      `{"schemas":["${BULK}"],"Operations":[${[
        op('a', JSON.stringify(user(ok))),
        op('b', `${JSON.stringify(user(bad)).slice(0, -1)},"name":{"__proto__":{"givenName":"X"}}}`),
      ].join(',')}]}`,
    );
    expect(res.statusCode, res.body).toBe(200);
    const results = res.json().Operations as { status: string; response?: Record<string, unknown> }[];
    expect(results.map((r) => r.status)).toEqual(['201', '400']);
    expect(results[1]?.response).toMatchObject({
      scimType: 'invalidValue',
      detail: expect.stringContaining('Operations[1].data.name.__proto__'),
    });
    const found = await scim('GET', `/Users?filter=${encodeURIComponent(`userName eq "${bad}@example.com"`)}`);
    expect(found.json()).toMatchObject({ totalResults: 0 });

    // Outside the operations, the request is refused as a whole, as before.
    const whole = await scim('POST', '/Bulk', `{"schemas":["${BULK}"],"__proto__":{},"Operations":[]}`);
    expect(whole.statusCode).toBe(400);
  });

  it('fails an operation holding a NUL character alone; the others are written', async () => {
    const { scim } = await scimClient(t);
    const [ok1, bad, ok2] = [unique('n1'), unique('nb'), unique('n2')];
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        { method: 'POST', path: '/Users', bulkId: 'a', data: user(ok1) },
        { method: 'POST', path: '/Users', bulkId: 'b', data: { ...user(bad), name: { givenName: 'A\u0000B' } } },
        { method: 'POST', path: '/Users', bulkId: 'c', data: user(ok2) },
        { method: 'DELETE', path: '/Groups/x\u0000y' },
      ],
    });
    expect(res.statusCode).toBe(200);
    const results = res.json().Operations as { status: string; response?: Record<string, unknown> }[];
    expect(results.map((r) => r.status)).toEqual(['201', '400', '201', '400']);
    expect(results[1]?.response).toMatchObject({
      schemas: [ERROR],
      scimType: 'invalidValue',
      detail: expect.stringContaining('Operations[1].data.name.givenName'),
    });
    expect(results[3]?.response).toMatchObject({ detail: expect.stringContaining('Operations[3].path') });
    for (const [name, total] of [
      [ok1, 1],
      [bad, 0],
      [ok2, 1],
    ] as const) {
      const found = await scim('GET', `/Users?filter=${encodeURIComponent(`userName eq "${name}@example.com"`)}`);
      expect(found.json().totalResults).toBe(total);
    }
  });

  it('runs users and groups in order, resolving bulkId references', async () => {
    const { scim } = await scimClient(t);
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        { method: 'POST', path: '/Users', bulkId: 'a', data: user() },
        { method: 'POST', path: '/Users', bulkId: 'b', data: user() },
        {
          method: 'POST',
          path: '/Groups',
          bulkId: 'g',
          data: { schemas: [GROUP], displayName: 'Bulk', members: [{ value: 'bulkId:a' }, { value: 'bulkId:b' }] },
        },
        {
          method: 'PATCH',
          path: '/Users/bulkId:b',
          data: { schemas: [PATCH], Operations: [{ op: 'replace', path: 'active', value: false }] },
        },
        { method: 'DELETE', path: '/Users/bulkId:a' },
      ],
    });
    expect(res.statusCode).toBe(200);
    const ops = res.json().Operations;
    expect(ops.map((o: { status: string }) => o.status)).toEqual(['201', '201', '201', '200', '204']);
    // Every result names its resource (RFC 7644 §3.7.3), a DELETE's included.
    expect(ops[4].location).toBe(ops[0].location);
    const group = (await scim('GET', ops[2].location.replace('http://gatehouse.test/scim/v2', ''))).json();
    // a was deleted afterwards, so only b remains a member.
    expect(group.members.map((m: { value: string }) => m.value)).toEqual([ops[1].location.split('/').pop()]);
    const b = (await scim('GET', ops[1].location.replace('http://gatehouse.test/scim/v2', ''))).json();
    expect(b.active).toBe(false);
  });

  it('resolves a bulkId in a PATCH value filter (RFC 7644 §3.7.2), and fails the operation on an unknown one', async () => {
    const { scim } = await scimClient(t);
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        {
          method: 'PATCH',
          path: '/Groups/bulkId:g1',
          // Operations under the lower-case key, the other spelling present but null: read as one list.
          data: {
            schemas: [PATCH],
            Operations: null,
            operations: [{ op: 'remove', path: 'members[value eq "bulkId:u2"]' }],
          },
        },
        {
          method: 'PATCH',
          path: '/Groups/bulkId:g1',
          data: { schemas: [PATCH], Operations: [{ op: 'remove', path: 'members[value eq "bulkId:nobody"]' }] },
        },
        {
          method: 'POST',
          path: '/Groups',
          bulkId: 'g1',
          data: {
            schemas: [GROUP],
            displayName: unique('g'),
            members: [{ value: 'bulkId:u1' }, { value: 'bulkId:u2' }],
          },
        },
        { method: 'POST', path: '/Users', bulkId: 'u1', data: user() },
        { method: 'POST', path: '/Users', bulkId: 'u2', data: user() },
      ],
    });
    expect(res.statusCode).toBe(200);
    const ops = res.json().Operations;
    expect(ops.map((o: { status: string }) => o.status)).toEqual(['200', '400', '201', '201', '201']);
    expect(ops[1].response).toMatchObject({
      scimType: 'invalidValue',
      detail: expect.stringContaining('bulkId:nobody'),
    });
    const group = (await scim('GET', ops[2].location.replace('http://gatehouse.test/scim/v2', ''))).json();
    expect(group.members.map((m: { value: string }) => m.value)).toEqual([ops[3].location.split('/').pop()]);
  });

  it('resolves bulkId references to operations later in the request, answering in request order', async () => {
    const { scim } = await scimClient(t);
    const [a, b] = [unique('fa'), unique('fb')];
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        {
          method: 'POST',
          path: '/Groups',
          bulkId: 'g',
          data: {
            schemas: [GROUP],
            displayName: unique('Later'),
            members: [{ value: 'bulkId:a' }, { value: 'bulkId:b' }],
          },
        },
        {
          method: 'PATCH',
          path: '/Users/bulkId:b',
          data: { schemas: [PATCH], Operations: [{ op: 'replace', path: 'title', value: 'Manager of a' }] },
        },
        {
          method: 'POST',
          path: '/Users',
          bulkId: 'a',
          data: { ...user(a), [ENTERPRISE]: { manager: { value: 'bulkId:b' } } },
        },
        { method: 'POST', path: '/Users', bulkId: 'b', data: user(b) },
      ],
    });
    expect(res.statusCode).toBe(200);
    const ops = res.json().Operations;
    expect(ops.map((o: { method: string; status: string }) => `${o.method} ${o.status}`)).toEqual([
      'POST 201',
      'PATCH 200',
      'POST 201',
      'POST 201',
    ]);
    expect(ops.map((o: { bulkId?: string }) => o.bulkId)).toEqual(['g', undefined, 'a', 'b']);
    const idOf = (location: string) => location.split('/').pop() as string;
    const [aId, bId] = [idOf(ops[2].location), idOf(ops[3].location)];
    const group = (await scim('GET', `/Groups/${idOf(ops[0].location)}`)).json();
    expect(group.members.map((m: { value: string }) => m.value).sort()).toEqual([aId, bId].sort());
    expect(ops[1].location).toBe(ops[3].location);
    expect((await scim('GET', `/Users/${bId}`)).json().title).toBe('Manager of a');
    expect((await scim('GET', `/Users/${aId}`)).json()[ENTERPRISE]).toEqual({
      manager: { value: bId, displayName: expect.any(String) },
    });
  });

  it('resolves a manager given by the bulkId of a user created earlier in the same request', async () => {
    const { scim } = await scimClient(t);
    const [boss, report] = [unique('boss'), unique('report')];
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        { method: 'POST', path: '/Users', bulkId: 'boss', data: user(boss) },
        {
          method: 'POST',
          path: '/Users',
          bulkId: 'report',
          data: { ...user(report), [ENTERPRISE]: { manager: { value: 'bulkId:boss' } } },
        },
      ],
    });
    expect(res.statusCode, res.body).toBe(200);
    const ops = res.json().Operations;
    expect(
      ops.map((o: { status: string }) => o.status),
      res.body,
    ).toEqual(['201', '201']);
    const idOf = (location: string) => location.split('/').pop() as string;
    expect((await scim('GET', `/Users/${idOf(ops[1].location)}`)).json()[ENTERPRISE].manager.value).toBe(
      idOf(ops[0].location),
    );
  });

  it('answers 409 for operations whose bulkId references form a cycle, writing none of them', async () => {
    const { scim } = await scimClient(t);
    const [a, b, c, d] = [unique('ca'), unique('cb'), unique('cc'), unique('cd')];
    const manager = (bulkId: string) => ({ [ENTERPRISE]: { manager: { value: `bulkId:${bulkId}` } } });
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        { method: 'POST', path: '/Users', bulkId: 'a', data: { ...user(a), ...manager('b') } },
        { method: 'POST', path: '/Users', bulkId: 'b', data: { ...user(b), ...manager('a') } },
        { method: 'POST', path: '/Users', bulkId: 'c', data: user(c) },
        { method: 'POST', path: '/Users', bulkId: 'd', data: { ...user(d), ...manager('a') } },
        { method: 'POST', path: '/Users', bulkId: 'self', data: { ...user(), ...manager('self') } },
      ],
    });
    expect(res.statusCode).toBe(200);
    const ops = res.json().Operations;
    expect(ops.map((o: { status: string }) => o.status)).toEqual(['409', '409', '201', '400', '409']);
    expect(ops[0].response).toMatchObject({ schemas: [ERROR], status: '409', detail: expect.stringMatching(/cycle/) });
    expect(ops[0].response.detail).toContain('a → b → a');
    expect(ops[4].response.detail).toContain('self → self');
    expect(ops[3].response).toMatchObject({ status: '400', scimType: 'invalidValue' });
    for (const [name, total] of [
      [a, 0],
      [b, 0],
      [c, 1],
      [d, 0],
    ] as const) {
      const found = await scim('GET', `/Users?filter=${encodeURIComponent(`userName eq "${name}@example.com"`)}`);
      expect(found.json().totalResults, name).toBe(total);
    }
  });

  it('counts failOnErrors in the order operations run, so nothing depending on a failure is written', async () => {
    const { scim } = await scimClient(t);
    const displayName = unique('never');
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      failOnErrors: 1,
      Operations: [
        {
          method: 'POST',
          path: '/Groups',
          bulkId: 'g',
          data: { schemas: [GROUP], displayName, members: [{ value: 'bulkId:u' }] },
        },
        { method: 'POST', path: '/Users', bulkId: 'u', data: { schemas: [USER], userName: 'no-email' } },
        { method: 'POST', path: '/Users', bulkId: 'v', data: user() },
      ],
    });
    expect(res.statusCode).toBe(200);
    const ops = res.json().Operations;
    expect(ops.map((o: { bulkId: string; status: string }) => `${o.bulkId} ${o.status}`)).toEqual(['u 400']);
    const groups = await scim('GET', `/Groups?filter=${encodeURIComponent(`displayName eq "${displayName}"`)}`);
    expect(groups.json().totalResults).toBe(0);
  });

  it('reports each failed operation with its SCIM error and goes on without failOnErrors', async () => {
    const { scim } = await scimClient(t);
    const dup = user();
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        { method: 'POST', path: '/Users', bulkId: '1', data: dup },
        { method: 'POST', path: '/Users', bulkId: '2', data: { schemas: [USER] } },
        { method: 'POST', path: '/Users', bulkId: '3', data: dup },
        { method: 'POST', path: '/Users', bulkId: '4', data: user() },
        { method: 'PUT', path: '/Users/00000000-0000-7000-8000-000000000000', data: user() },
        {
          method: 'POST',
          path: '/Groups',
          bulkId: '5',
          data: { schemas: [GROUP], members: [{ value: 'bulkId:nope' }] },
        },
      ],
    });
    const ops = res.json().Operations;
    expect(ops.map((o: { status: string }) => o.status)).toEqual(['201', '400', '409', '201', '404', '400']);
    expect(ops[1].response).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidValue' });
    expect(ops[2].response).toMatchObject({ scimType: 'uniqueness' });
    // A failed PUT names the resource it addressed; a failed POST has none to name.
    expect(ops[4].location).toBe('http://gatehouse.test/scim/v2/Users/00000000-0000-7000-8000-000000000000');
    expect(ops[1].location).toBeUndefined();
  });

  it('fails a POST or PUT whose data has no "schemas" with 400 invalidSyntax (RFC 7643 §3), alone', async () => {
    const { scim } = await scimClient(t);
    const existing = (await scim('POST', '/Users', user())).json();
    const group = (await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g') })).json();
    const { schemas: _schemas, ...bare } = user();
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        { method: 'POST', path: '/Users', bulkId: '1', data: bare },
        { method: 'PUT', path: `/Users/${existing.id}`, data: { userName: existing.userName, title: 'Replaced' } },
        { method: 'POST', path: '/Groups', bulkId: '2', data: { displayName: unique('g') } },
        { method: 'PUT', path: `/Groups/${group.id}`, data: { displayName: unique('renamed') } },
        { method: 'POST', path: '/Users', bulkId: '3', data: user() },
      ],
    });
    const ops = res.json().Operations;
    expect(ops.map((o: { status: string }) => o.status)).toEqual(['400', '400', '400', '400', '201']);
    for (const op of ops.slice(0, 4)) {
      expect(op.response).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidSyntax' });
    }
    const found = await scim('GET', `/Users?filter=${encodeURIComponent(`userName eq "${bare.userName}"`)}`);
    expect(found.json().totalResults).toBe(0);
    expect((await scim('GET', `/Users/${existing.id}`)).json().title).toBeUndefined();
    expect((await scim('GET', `/Groups/${group.id}`)).json().displayName).toBe(group.displayName);
  });

  it('stops after failOnErrors errors and writes nothing after them', async () => {
    const { scim } = await scimClient(t);
    const later = user();
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      failOnErrors: 1,
      Operations: [
        { method: 'POST', path: '/Users', bulkId: '1', data: user() },
        { method: 'POST', path: '/Users', bulkId: '2', data: { schemas: [USER], userName: 'no-email' } },
        { method: 'POST', path: '/Users', bulkId: '3', data: later },
      ],
    });
    expect(res.json().Operations.map((o: { status: string }) => o.status)).toEqual(['201', '400']);
    const found = (await scim('GET', `/Users?filter=${encodeURIComponent(`userName eq "${later.userName}"`)}`)).json();
    expect(found.totalResults).toBe(0);
  });

  it("writes PATCHes and PUTs of users by id as one batch, each within the caller's organization", async () => {
    const { scim } = await scimClient(t);
    const other = await scimClient(t);
    const idOf = async (client: typeof scim) =>
      (await client('POST', '/Users', { ...user(), name: { givenName: 'Ada', familyName: 'Before' } })).json()
        .id as string;
    const [patched, replaced, foreign] = [await idOf(scim), await idOf(scim), await idOf(other.scim)];
    const rename = (familyName: string) => ({
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'name.familyName', value: familyName }],
    });
    const replacement = { ...user(), name: { givenName: 'Grace', familyName: 'Replaced' } };
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        { method: 'PATCH', path: `/Users/${patched}`, data: rename('Patched') },
        { method: 'PUT', path: `/Users/${replaced}`, data: replacement },
        { method: 'PATCH', path: `/Users/${foreign}`, data: rename('Taken over') },
      ],
    });
    const ops = res.json().Operations;
    expect(ops.map((o: { status: string }) => o.status)).toEqual(['200', '200', '404']);
    expect((await scim('GET', `/Users/${patched}`)).json().name).toMatchObject({
      givenName: 'Ada',
      familyName: 'Patched',
    });
    expect((await scim('GET', `/Users/${replaced}`)).json()).toMatchObject({
      userName: replacement.userName,
      name: { givenName: 'Grace', familyName: 'Replaced' },
    });
    // The other organization's user is not there for this client, and is left as it was.
    expect((await other.scim('GET', `/Users/${foreign}`)).json().name.familyName).toBe('Before');
  });

  it('answers 404 to a PATCH or PUT of an id that is no uuid, alone, in a batch with other users', async () => {
    const { scim } = await scimClient(t);
    const id = (await scim('POST', '/Users', { ...user(), name: { givenName: 'Ada', familyName: 'Before' } })).json()
      .id as string;
    const rename = { schemas: [PATCH], Operations: [{ op: 'replace', path: 'name.familyName', value: 'After' }] };
    const res = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: [
        // 36 characters of a uuid's alphabet, but no uuid.
        { method: 'PATCH', path: `/Users/${'-'.repeat(36)}`, data: rename },
        { method: 'PUT', path: `/Users/${'a'.repeat(36)}`, data: user() },
        { method: 'PATCH', path: `/Users/${id}`, data: rename },
      ],
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().Operations.map((o: { status: string }) => o.status)).toEqual(['404', '404', '200']);
    expect((await scim('GET', `/Users/${id}`)).json().name.familyName).toBe('After');
  });

  it('refuses a malformed bulk request as a whole', async () => {
    const { scim } = await scimClient(t);
    for (const body of [
      { Operations: [] },
      { schemas: [BULK], Operations: [] },
      { schemas: [BULK], Operations: [{ method: 'GET', path: '/Users' }] },
      { schemas: [BULK], Operations: [{ method: 'POST', path: '/Users', data: user() }] },
      { schemas: [BULK], failOnErrors: 0, Operations: [{ method: 'DELETE', path: '/Users/x' }] },
    ]) {
      const res = await scim('POST', '/Bulk', body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json()).toMatchObject({ schemas: [ERROR], status: '400' });
    }
    const tooMany = await scim('POST', '/Bulk', {
      schemas: [BULK],
      Operations: Array.from({ length: 1001 }, (_, i) => ({ method: 'DELETE', path: `/Users/${i}` })),
    });
    expect(tooMany.statusCode).toBe(413);
    expect(tooMany.json()).toMatchObject({ schemas: [ERROR], status: '413' });
  });
});
