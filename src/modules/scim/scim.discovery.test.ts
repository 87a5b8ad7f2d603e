import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';

describe('SCIM discovery', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('describes the service provider, resource types and schemas', async () => {
    const { scim } = await scimClient(t);
    const spc = await scim('GET', '/ServiceProviderConfig');
    expect(spc.statusCode).toBe(200);
    expect(spc.headers['content-type']).toContain('application/scim+json');
    expect(spc.json()).toMatchObject({
      patch: { supported: true },
      bulk: { supported: true, maxOperations: 1000 },
      filter: { supported: true, maxResults: 1000 },
      sort: { supported: true },
      etag: { supported: true },
      changePassword: { supported: false },
    });
    const types = (await scim('GET', '/ResourceTypes')).json();
    expect(types.Resources.map((r: { id: string }) => r.id)).toEqual(['User', 'Group']);
    expect((await scim('GET', '/ResourceTypes/User')).json()).toMatchObject({ endpoint: '/Users' });
    const schemas = (await scim('GET', '/Schemas')).json();
    expect(schemas.totalResults).toBe(3);
    const userSchema = await scim('GET', '/Schemas/urn:ietf:params:scim:schemas:core:2.0:User');
    expect(userSchema.json().attributes.map((a: { name: string }) => a.name)).toContain('userName');
    expect((await scim('GET', '/Schemas/urn:nope')).statusCode).toBe(404);
  });

  it('describes the name parts and the sub-attributes of each multi-valued User attribute it keeps (RFC 7643 §4.1, §7)', async () => {
    const { scim } = await scimClient(t);
    type Attribute = { name: string; type: string; multiValued: boolean; subAttributes?: Attribute[] };
    const user = (await scim('GET', '/Schemas/urn:ietf:params:scim:schemas:core:2.0:User')).json();
    const byName = new Map<string, Attribute>(user.attributes.map((a: Attribute) => [a.name, a]));
    const subs = (name: string) =>
      Object.fromEntries((byName.get(name)?.subAttributes ?? []).map((a) => [a.name, a.type]));
    expect(subs('name')).toEqual({
      formatted: 'string',
      familyName: 'string',
      givenName: 'string',
      middleName: 'string',
      honorificPrefix: 'string',
      honorificSuffix: 'string',
    });
    for (const name of ['phoneNumbers', 'ims', 'entitlements', 'roles']) {
      expect(byName.get(name)?.multiValued, name).toBe(true);
      expect(subs(name), name).toEqual({ value: 'string', display: 'string', type: 'string', primary: 'boolean' });
    }
    expect(subs('photos')).toEqual({ value: 'reference', display: 'string', type: 'string', primary: 'boolean' });
    expect(subs('x509Certificates')).toEqual({
      value: 'binary',
      display: 'string',
      type: 'string',
      primary: 'boolean',
    });
    expect(subs('addresses')).toEqual({
      formatted: 'string',
      streetAddress: 'string',
      locality: 'string',
      region: 'string',
      postalCode: 'string',
      country: 'string',
      type: 'string',
      primary: 'boolean',
    });
  });

  it("describes the product's userName rules, and that an address's local part is ASCII, in the User schema", async () => {
    const { scim } = await scimClient(t);
    const user = (await scim('GET', '/Schemas/urn:ietf:params:scim:schemas:core:2.0:User')).json();
    const userName = user.attributes.find((a: { name: string }) => a.name === 'userName');
    expect(userName.description).toContain(
      "letters of any script (with their combining marks), digits and _ . @ + - ' # only",
    );
    expect(userName.description).toContain('email address');
    expect(userName.description).toContain('müller@a.example');
    const emails = user.attributes.find((a: { name: string }) => a.name === 'emails');
    expect(emails.description).toContain('ASCII');
    expect(emails.description).toContain('jane@bücher.example');
  });

  it('refuses a filter on the discovery endpoints (RFC 7644 §4), so no client takes the full list as its matches', async () => {
    const { scim } = await scimClient(t);
    for (const path of ['/ResourceTypes', '/Schemas', '/ServiceProviderConfig']) {
      const res = await scim('GET', `${path}?filter=${encodeURIComponent('id eq "User"')}`);
      expect(res.statusCode, path).toBe(403);
      expect(res.json()).toMatchObject({
        schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'],
        status: '403',
        detail: expect.stringContaining('no filter'),
      });
    }
  });

  it('accepts trailing slashes and plain application/json bodies', async () => {
    const { scim } = await scimClient(t);
    expect((await scim('GET', '/ServiceProviderConfig/')).statusCode).toBe(200);
    const res = await t.request({
      method: 'POST',
      url: '/scim/v2/Groups',
      headers: { authorization: `Bearer ${(await scimClient(t)).key}`, 'content-type': 'application/json' },
      payload: { schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'], displayName: 'Plain' },
    });
    expect(res.statusCode).toBe(201);
  });

  it('answers 415 for another media type, in the SCIM error schema and naming application/scim+json', async () => {
    const { scim } = await scimClient(t);
    const res = await scim('POST', '/Users', '<User/>', { 'content-type': 'application/xml' });
    expect(res.statusCode).toBe(415);
    expect(res.headers['content-type']).toContain('application/scim+json');
    expect(res.json()).toMatchObject({
      schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'],
      status: '415',
      detail: expect.stringContaining('application/scim+json'),
    });
  });
});
