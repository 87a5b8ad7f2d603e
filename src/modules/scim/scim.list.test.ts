import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { seedUser } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { users } from '../users/users.table.js';

const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';
const ENTERPRISE = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const LIST = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';

describe('SCIM list, filter, paging and sorting', () => {
  let t: TestApp;
  let scim: Awaited<ReturnType<typeof scimClient>>['scim'];
  let ids: Record<string, string>;

  beforeAll(async () => {
    t = await startTestApp();
    const client = await scimClient(t);
    scim = client.scim;
    const people = [
      {
        username: 'ada',
        email: 'ada@example.com',
        firstName: 'Ada',
        lastName: 'Lovelace',
        scimExternalId: 'E1',
        attributes: { scim: { title: 'Countess', enterprise: { department: 'Math' } } },
      },
      {
        username: 'grace',
        email: 'grace@navy.mil',
        firstName: 'Grace',
        lastName: 'Hopper',
        scimExternalId: 'E2',
        attributes: { scim: { title: 'Admiral', enterprise: { department: 'Navy' } } },
      },
      {
        username: 'alan',
        email: 'alan@example.org',
        firstName: 'Alan',
        lastName: 'Turing',
        scimExternalId: 'e3',
        status: 'deactivated' as const,
      },
      {
        username: 'edsger',
        email: 'edsger@example.nl',
        firstName: 'Edsger',
        lastName: 'Dijkstra',
        scimExternalId: null,
      },
      {
        username: `o'hara"; drop table users; --`,
        email: 'quote@example.com',
        firstName: 'Scarlett',
        lastName: `O'Hara`,
      },
    ];
    ids = {};
    for (const p of people) {
      const u = await seedUser(t, client.org.id, p);
      ids[p.firstName] = u.id;
    }
    // Another organization's look-alike never shows up.
    const other = await scimClient(t);
    await seedUser(t, other.org.id, { username: 'ada', email: 'ada@example.com', firstName: 'Ada' });
  });
  afterAll(() => t.close());

  async function names(filter: string, extra = ''): Promise<string[]> {
    const res = await scim('GET', `/Users?filter=${encodeURIComponent(filter)}${extra}`);
    expect(res.statusCode, `${filter}: ${res.body}`).toBe(200);
    const body = res.json();
    expect(body.schemas).toEqual([LIST]);
    return (body.Resources as { name: { givenName: string } }[]).map((r) => r.name.givenName).sort();
  }

  it('finds a user without a username by the email it shows as userName, and only such a user', async () => {
    const own = await scimClient(t);
    const nameless = await seedUser(t, own.org.id, { username: null, email: 'Nameless@Example.com' });
    const named = await seedUser(t, own.org.id, { username: 'named', email: 'named@example.com' });
    const found = async (filter: string) => {
      const res = await own.scim('GET', `/Users?filter=${encodeURIComponent(filter)}`);
      expect(res.statusCode, res.body).toBe(200);
      return (res.json().Resources as { id: string; userName: string }[]).map((r) => [r.id, r.userName]);
    };
    // The prepared look-up, then the general filter path.
    expect(await found('userName eq "nameless@example.com"')).toEqual([[nameless.id, 'Nameless@Example.com']]);
    expect(await found('userName eq "NAMELESS@example.com" and active eq true')).toEqual([
      [nameless.id, 'Nameless@Example.com'],
    ]);
    expect(await found('userName sw "nameless@"')).toEqual([[nameless.id, 'Nameless@Example.com']]);
    expect((await found('userName pr')).map(([id]) => id).sort()).toEqual([nameless.id, named.id].sort());
    expect(await found('not (userName eq "nameless@example.com")')).toEqual([[named.id, 'named']]);
    expect(await found('userName eq "named"')).toEqual([[named.id, 'named']]);
    // A user with a username is not found by its email.
    expect(await found('userName eq "named@example.com"')).toEqual([]);
  });

  it('finds a username stored composed by a value sent decomposed, as login does', async () => {
    const own = await scimClient(t);
    const jose = await seedUser(t, own.org.id, { username: 'jos\u00e9', email: 'jose@example.com' });
    const decomposed = 'jose\u0301';
    const found = async (filter: string) => {
      const res = await own.scim('GET', `/Users?filter=${encodeURIComponent(filter)}`);
      expect(res.statusCode, res.body).toBe(200);
      return (res.json().Resources as { id: string }[]).map((r) => r.id);
    };
    // The prepared look-up, then the general filter path.
    expect(await found(`userName eq "${decomposed}"`)).toEqual([jose.id]);
    expect(await found(`userName eq "${decomposed}" and active eq true`)).toEqual([jose.id]);
    expect(await found(`userName sw "${decomposed}"`)).toEqual([jose.id]);
  });

  it('filters with every comparison operator, case-insensitively where the schema says so', async () => {
    expect(await names('userName eq "ADA"')).toEqual(['Ada']);
    expect(await names('userName ne "ada"')).toEqual(['Alan', 'Edsger', 'Grace', 'Scarlett']);
    expect(await names('emails.value co "example"')).toEqual(['Ada', 'Alan', 'Edsger', 'Scarlett']);
    expect(await names('name.familyName sw "h"')).toEqual(['Grace']);
    expect(await names('emails ew ".org"')).toEqual(['Alan']);
    expect(await names('userName gt "edsger"')).toEqual(['Grace', 'Scarlett']);
    expect(await names('userName ge "edsger"')).toEqual(['Edsger', 'Grace', 'Scarlett']);
    expect(await names('userName lt "alan"')).toEqual(['Ada']);
    expect(await names('userName le "alan"')).toEqual(['Ada', 'Alan']);
    expect(await names('externalId pr')).toEqual(['Ada', 'Alan', 'Grace']);
    // externalId is caseExact.
    expect(await names('externalId eq "e1"')).toEqual([]);
    expect(await names('externalId eq "E1"')).toEqual(['Ada']);
    expect(await names('active eq false')).toEqual(['Alan']);
    expect(await names('title eq "admiral"')).toEqual(['Grace']);
    expect(await names('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Math"')).toEqual([
      'Ada',
    ]);
    expect(await names('urn:ietf:params:scim:schemas:core:2.0:User:userName eq "grace"')).toEqual(['Grace']);
    expect(await names('meta.created gt "2000-01-01T00:00:00Z"')).toHaveLength(5);
    expect(await names('meta.lastModified lt "2000-01-01T00:00:00Z"')).toEqual([]);
    // The whole range PostgreSQL and JavaScript share, an offset, a value without one (UTC), a date alone.
    expect(await names('meta.lastModified gt "0001-01-01T00:00:00Z"')).toHaveLength(5);
    expect(await names('meta.created lt "9999-12-31T23:59:59.999Z"')).toHaveLength(5);
    expect(await names('meta.created gt "2000-01-01T01:00:00+01"')).toHaveLength(5);
    expect(await names('meta.created gt "2000-01-01T00:00:00"')).toHaveLength(5);
    expect(await names('meta.created ge "2000-01-01"')).toHaveLength(5);
    expect(await names(`id eq "${ids.Edsger}"`)).toEqual(['Edsger']);
    expect(await names('id eq "not-a-uuid"')).toEqual([]);
  });

  it('combines with and, or, not, grouping and value paths', async () => {
    expect(await names('userName sw "a" and active eq true')).toEqual(['Ada']);
    expect(await names('userName eq "ada" or userName eq "grace"')).toEqual(['Ada', 'Grace']);
    expect(await names('not (userName sw "a")')).toEqual(['Edsger', 'Grace', 'Scarlett']);
    expect(await names('(userName sw "a" or userName sw "g") and not (active eq false)')).toEqual(['Ada', 'Grace']);
    expect(await names('emails[type eq "work" and value co "navy"]')).toEqual(['Grace']);
    expect(await names('emails[type eq "home"]')).toEqual([]);
  });

  it('counts a comparison on an absent attribute as false, so "not" of it matches (RFC 7644 §3.4.2.2)', async () => {
    expect(await names('not (externalId eq "E1")')).toEqual(['Alan', 'Edsger', 'Grace', 'Scarlett']);
    expect(await names('not (title eq "Admiral")')).toEqual(['Ada', 'Alan', 'Edsger', 'Scarlett']);
    expect(await names('not (urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department sw "M")')).toEqual([
      'Alan',
      'Edsger',
      'Grace',
      'Scarlett',
    ]);
    expect(await names('not (title eq "Admiral" or externalId eq "e3")')).toEqual(['Ada', 'Edsger', 'Scarlett']);
    expect(await names('not (not (title eq "Countess"))')).toEqual(['Ada']);
    expect(await names('userName sw "e" and not (title pr)')).toEqual(['Edsger']);
  });

  it('passes every value as a bound parameter: quotes and SQL-looking text are just text', async () => {
    expect(await names(`userName eq "o'hara\\"; drop table users; --"`)).toEqual(['Scarlett']);
    expect(await names(`name.familyName eq "O'Hara"`)).toEqual(['Scarlett']);
    expect(await names(`userName co "'; delete from users; --"`)).toEqual([]);
    expect(await names('userName co "%"')).toEqual([]);
    expect(await names('userName co "_"')).toEqual([]);
    expect((await t.database.db.select().from(users)).length).toBeGreaterThanOrEqual(6);
  });

  it('refuses bad filters with 400 invalidFilter', async () => {
    for (const filter of [
      'userName eq',
      'userName zz "x"',
      'password eq "x"',
      'userName eq "unterminated',
      'active gt true',
      'active eq "yes"',
      'meta.created gt "yesterday"',
      'userName eq 3',
      '((userName eq "a")',
      'emails[type eq "work"',
      'not userName eq "ada"',
      'NOT active eq false',
      'userName sw "a" and not title pr',
      'emails[not type eq "work"]',
    ]) {
      const res = await scim('GET', `/Users?filter=${encodeURIComponent(filter)}`);
      expect(res.statusCode, filter).toBe(400);
      expect(res.json(), filter).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidFilter' });
    }
  });

  it('refuses a dateTime outside the years 0001 to 9999 with 400 invalidFilter naming the attribute', async () => {
    for (const filter of [
      'meta.lastModified gt "0000-01-01T00:00:00Z"',
      'meta.created eq "0000-12-31T23:59:59Z"',
      'meta.created lt "0001-01-01T00:00:00+01:00"',
      'meta.lastModified le "9999-12-31T23:59:59-01:00"',
      'meta.created ne "+010000-01-01T00:00:00Z"',
      'meta.created gt "0000-01-01"',
      'meta.created gt "2016-12-31T12:59:60Z"',
    ]) {
      const res = await scim('GET', `/Users?filter=${encodeURIComponent(filter)}`);
      expect(res.statusCode, filter).toBe(400);
      expect(res.json(), filter).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidFilter' });
      expect(res.json().detail, filter).toMatch(/meta\./);
    }
    const groups = await scim(
      'GET',
      `/Groups?filter=${encodeURIComponent('meta.lastModified gt "0000-01-01T00:00:00Z"')}`,
    );
    expect(groups.statusCode).toBe(400);
    expect(groups.json()).toMatchObject({ scimType: 'invalidFilter' });
  });

  it('pages with startIndex and count, and reports totalResults', async () => {
    const first = (await scim('GET', '/Users?startIndex=1&count=2&sortBy=userName')).json();
    expect(first).toMatchObject({ totalResults: 5, startIndex: 1, itemsPerPage: 2 });
    expect(first.Resources.map((r: { userName: string }) => r.userName)).toEqual(['ada', 'alan']);
    const second = (await scim('GET', '/Users?startIndex=3&count=2&sortBy=userName')).json();
    expect(second.Resources.map((r: { userName: string }) => r.userName)).toEqual(['edsger', 'grace']);
    const past = (await scim('GET', '/Users?startIndex=50&count=2')).json();
    expect(past).toMatchObject({ totalResults: 5, itemsPerPage: 0, Resources: [] });
    const countOnly = (await scim('GET', '/Users?count=0')).json();
    expect(countOnly).toMatchObject({ totalResults: 5, itemsPerPage: 0 });
    // Out-of-range values are clamped as RFC 7644 §3.4.2.4 says.
    const clamped = (await scim('GET', '/Users?startIndex=0&count=-3')).json();
    expect(clamped).toMatchObject({ startIndex: 1, itemsPerPage: 0, totalResults: 5 });
    const bad = await scim('GET', '/Users?count=many');
    expect(bad.statusCode).toBe(400);
    expect(bad.json()).toMatchObject({ schemas: [ERROR], scimType: 'invalidValue' });
  });

  it('sorts by sortBy and sortOrder; an unknown sort attribute is refused', async () => {
    const desc = (await scim('GET', '/Users?sortBy=name.familyName&sortOrder=descending')).json();
    expect(desc.Resources.map((r: { name: { familyName: string } }) => r.name.familyName)).toEqual([
      'Turing',
      "O'Hara",
      'Lovelace',
      'Hopper',
      'Dijkstra',
    ]);
    const byEmail = (await scim('GET', '/Users?sortBy=emails.value')).json();
    expect(byEmail.Resources[0].emails[0].value).toBe('ada@example.com');
    const bad = await scim('GET', '/Users?sortBy=password');
    expect(bad.statusCode).toBe(400);
    const badOrder = await scim('GET', '/Users?sortOrder=sideways');
    expect(badOrder.statusCode).toBe(400);
  });

  it('decodes JSON escapes in compared strings, every value still a bound parameter (RFC 7644 §3.4.2.2)', async () => {
    const own = await scimClient(t);
    await seedUser(t, own.org.id, { username: 'user1', attributes: { scim: { title: 'back\\' } } });
    await seedUser(t, own.org.id, { username: 'corp\\jdoe' });
    const userNames = async (filter: string) => {
      const res = await own.scim('GET', `/Users?filter=${encodeURIComponent(filter)}`);
      expect(res.statusCode, `${filter}: ${res.body}`).toBe(200);
      return res.json().Resources.map((r: { userName: string }) => r.userName);
    };
    expect(await userNames(String.raw`userName eq "user\u0031"`)).toEqual(['user1']);
    expect(await userNames(String.raw`title eq "back\\"`)).toEqual(['user1']);
    expect(await userNames(String.raw`userName eq "CORP\\jdoe"`)).toEqual(['corp\\jdoe']);
    expect(await userNames(String.raw`userName eq "CORP\jdoe"`)).toEqual(['corp\\jdoe']);
    const nul = await own.scim('GET', `/Users?filter=${encodeURIComponent(String.raw`title eq "\u0000"`)}`);
    expect(nul.statusCode).toBe(400);
    expect(nul.json()).toMatchObject({ schemas: [ERROR], scimType: 'invalidFilter' });
  });

  it('orders users without a name last ascending and first descending (RFC 7644 §3.4.2.3)', async () => {
    const own = await scimClient(t);
    await seedUser(t, own.org.id, { username: 'named', firstName: 'Bea', lastName: 'Zeller' });
    await seedUser(t, own.org.id, { username: 'nameless' });
    await seedUser(t, own.org.id, { username: 'early', firstName: 'Abe', lastName: 'Abbott' });
    const order = async (sortBy: string, sortOrder: string) =>
      (await own.scim('GET', `/Users?sortBy=${sortBy}&sortOrder=${sortOrder}`))
        .json()
        .Resources.map((r: { userName: string }) => r.userName);
    for (const sortBy of ['name.familyName', 'name.givenName', 'displayName']) {
      expect(await order(sortBy, 'ascending'), sortBy).toEqual(['early', 'named', 'nameless']);
      expect(await order(sortBy, 'descending'), sortBy).toEqual(['nameless', 'named', 'early']);
    }
    // Paging keeps that order: the nameless user is the last page, not the first.
    const last = (await own.scim('GET', '/Users?sortBy=name.familyName&startIndex=3&count=1')).json();
    expect(last.Resources.map((r: { userName: string }) => r.userName)).toEqual(['nameless']);
  });

  it('answers only the requested attributes, or all but the excluded ones', async () => {
    const only = (await scim('GET', '/Users?attributes=userName&filter=userName%20eq%20%22ada%22')).json();
    expect(Object.keys(only.Resources[0]).sort()).toEqual(['id', 'schemas', 'userName']);
    const without = (await scim('GET', `/Users/${ids.Ada}?excludedAttributes=groups,emails`)).json();
    expect(without.emails).toBeUndefined();
    expect(without.groups).toBeUndefined();
    expect(without.userName).toBe('ada');
  });

  it('answers only the named sub-attributes, of each value of a multi-valued one, or all but them (RFC 7644 §3.9)', async () => {
    const only = (
      await scim('GET', `/Users/${ids.Ada}?attributes=name.givenName,emails.value,${ENTERPRISE}:department`)
    ).json();
    expect(only).toEqual({
      schemas: expect.any(Array),
      id: ids.Ada,
      name: { givenName: 'Ada' },
      emails: [{ value: 'ada@example.com' }],
      [ENTERPRISE]: { department: 'Math' },
    });
    const listed = (await scim('GET', '/Users?attributes=name.givenName&filter=userName%20eq%20%22grace%22')).json();
    expect(listed.Resources).toEqual([{ schemas: expect.any(Array), id: ids.Grace, name: { givenName: 'Grace' } }]);

    const without = (await scim('GET', `/Users/${ids.Ada}?excludedAttributes=name.givenName,emails.type`)).json();
    expect(without.name).toMatchObject({ familyName: 'Lovelace' });
    expect(without.name.givenName).toBeUndefined();
    expect(without.emails[0]).toMatchObject({ value: 'ada@example.com' });
    expect(without.emails[0].type).toBeUndefined();
    expect(without.userName).toBe('ada');
  });

  it('searches by POST /Users/.search', async () => {
    const res = await scim('POST', '/Users/.search', {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'],
      filter: 'userName sw "a"',
      sortBy: 'userName',
      count: 1,
      attributes: ['userName'],
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({ totalResults: 2, itemsPerPage: 1, Resources: [{ userName: 'ada' }] });
  });

  it('answers 400 invalidValue naming the parameter to a count, startIndex or attributes of the wrong type', async () => {
    const search = (fields: Record<string, unknown>) =>
      scim('POST', '/Users/.search', { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], ...fields });
    const refused: [string, Promise<Awaited<ReturnType<typeof scim>>>][] = [
      ['count', search({ count: [2] })],
      ['count', search({ count: true })],
      ['count', search({ count: '0x10' })],
      ['startIndex', search({ startIndex: [3] })],
      ['attributes', search({ attributes: 'userName' })],
      ['attributes', search({ attributes: [1, {}] })],
      ['excludedAttributes', search({ excludedAttributes: 'emails' })],
      ['count', scim('GET', '/Users?count=%20')],
      ['count', scim('GET', '/Users?count=1.0')],
      ['startIndex', scim('GET', '/Users?startIndex=0x10')],
      ['startIndex', scim('GET', '/Users?startIndex=1e1')],
    ];
    for (const [name, pending] of refused) {
      const res = await pending;
      expect(res.statusCode, `${name}: ${res.body}`).toBe(400);
      expect(res.json()).toMatchObject({ scimType: 'invalidValue', detail: expect.stringContaining(`"${name}"`) });
    }
    // Integers as JSON numbers, and attribute lists as arrays of strings, are taken.
    const ok = await search({ count: 1, startIndex: 2, attributes: ['userName'] });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json()).toMatchObject({ startIndex: 2, itemsPerPage: 1 });
    // RFC 7643 §2.5: null is unassigned, the default.
    const unassigned = await search({ count: null, startIndex: null });
    expect(unassigned.statusCode, unassigned.body).toBe(200);
    expect(unassigned.json()).toMatchObject({ startIndex: 1 });
  });

  it('answers 400 invalidValue naming the parameter to a count or startIndex quoted in a .search body', async () => {
    for (const path of ['/Users/.search', '/Groups/.search']) {
      for (const [name, value] of [
        ['count', '2'],
        ['startIndex', '2'],
        ['count', ''],
      ] as const) {
        const res = await scim('POST', path, {
          schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'],
          [name]: value,
        });
        expect(res.statusCode, `${path} ${name}=${JSON.stringify(value)}: ${res.body}`).toBe(400);
        expect(res.json()).toMatchObject({
          scimType: 'invalidValue',
          detail: expect.stringContaining(`"${name}" must be a JSON number`),
        });
      }
    }
  });

  it('answers 400 invalidValue naming the parameter to an empty or repeated count or startIndex in a query string', async () => {
    for (const path of ['/Users', '/Groups']) {
      for (const [name, query] of [
        ['count', 'count='],
        ['startIndex', 'startIndex='],
        ['count', 'count=1&count=2'],
        ['startIndex', 'startIndex=1&startIndex=1'],
      ] as const) {
        const res = await scim('GET', `${path}?${query}`);
        expect(res.statusCode, `${path}?${query}: ${res.body}`).toBe(400);
        expect(res.json()).toMatchObject({ scimType: 'invalidValue', detail: expect.stringContaining(`"${name}"`) });
        expect(res.json().detail).not.toContain('must be string');
      }
    }
  });

  it('searches every resource type by POST /.search: users then groups, paged across both (RFC 7644 §3.4.3)', async () => {
    const own = await scimClient(t);
    await seedUser(t, own.org.id, { username: 'zed', firstName: 'Zed', lastName: 'Alpha' });
    await seedUser(t, own.org.id, { username: 'yan', firstName: 'Yan', lastName: 'Beta' });
    for (const displayName of ['Zebra team', 'Yak team']) {
      const made = await own.scim('POST', '/Groups', {
        schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
        displayName,
      });
      expect(made.statusCode, made.body).toBe(201);
    }
    const users = (await own.scim('GET', '/Users')).json();
    const groups = (await own.scim('GET', '/Groups')).json();
    const search = (fields: Record<string, unknown>) =>
      own.scim('POST', '/.search', { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], ...fields });

    const all = await search({});
    expect(all.statusCode, all.body).toBe(200);
    const body = all.json();
    expect(body).toMatchObject({
      schemas: [LIST],
      totalResults: users.totalResults + groups.totalResults,
      startIndex: 1,
    });
    expect(body.Resources).toEqual([...users.Resources, ...groups.Resources]);

    // A page that straddles the two types.
    const straddle = (await search({ startIndex: users.totalResults, count: 2 })).json();
    expect(straddle.Resources.map((r: { meta: { resourceType: string } }) => r.meta.resourceType)).toEqual([
      'User',
      'Group',
    ]);
    expect(straddle.Resources[1].id).toBe(groups.Resources[0].id);
    expect(straddle).toMatchObject({ totalResults: users.totalResults + groups.totalResults, itemsPerPage: 2 });

    // Attributes both types have filter each of them; meta.resourceType picks a type.
    const named = (await search({ filter: 'displayName sw "Z"', attributes: ['displayName'] })).json();
    expect(named.Resources).toEqual([
      { schemas: expect.any(Array), id: expect.any(String), displayName: 'Zed Alpha' },
      { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], id: expect.any(String), displayName: 'Zebra team' },
    ]);
    const onlyGroups = (await search({ filter: 'meta.resourceType eq "Group"' })).json();
    expect(onlyGroups.totalResults).toBe(groups.totalResults);

    // An attribute of one type only, and sorting across types, are refused with a pointer to the per-type search.
    const userOnly = await search({ filter: 'userName eq "zed"' });
    expect(userOnly.statusCode).toBe(400);
    expect(userOnly.json()).toMatchObject({
      scimType: 'invalidFilter',
      detail: expect.stringContaining('/Users/.search'),
    });
    const sorted = await search({ sortBy: 'displayName' });
    expect(sorted.statusCode).toBe(400);
    expect(sorted.json()).toMatchObject({ scimType: 'invalidValue', detail: expect.stringContaining('"sortBy"') });
    const quoted = await search({ count: '1' });
    expect(quoted.statusCode).toBe(400);
    // GET is not a search of the root: 405 naming POST.
    const get = await own.scim('GET', '/.search');
    expect(get.statusCode).toBe(405);
    expect(get.headers.allow).toBe('POST');
  });

  it('answers 400 invalidSyntax to a .search body without the SearchRequest schema (RFC 7644 §3.4.3)', async () => {
    for (const path of ['/Users/.search', '/Groups/.search', '/.search']) {
      for (const schemas of [undefined, ['urn:ietf:params:scim:schemas:core:2.0:User'], 'nope']) {
        const res = await scim('POST', path, { ...(schemas === undefined ? {} : { schemas }), filter: 'id pr' });
        expect(res.statusCode, `${path} ${String(schemas)}`).toBe(400);
        expect(res.json()).toMatchObject({ status: '400', scimType: 'invalidSyntax' });
      }
      // The URN compares case-insensitively, like every schema URN.
      const upper = await scim('POST', path, { schemas: ['URN:IETF:PARAMS:SCIM:API:MESSAGES:2.0:SEARCHREQUEST'] });
      expect(upper.statusCode, path).toBe(200);
    }
  });
});
