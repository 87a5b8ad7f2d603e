import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';

const NOT_DECODABLE = 'Not valid percent-encoded UTF-8.';

// `%ED%A0%80` is half a surrogate pair written as UTF-8, which no decoder takes: such a parameter was
// used as its undecoded text ("Organization %ED%A0%80 was not found.", a search for the literal).
describe('query strings whose percent-encoding does not decode', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('are refused with 400 naming the parameter, as the same bytes in a path or a form body', async () => {
    const su = await superuserClient(t);
    for (const [url, field] of [
      ['/api/v1/users/?organization=%ED%A0%80', 'organization'],
      ['/api/v1/activities/?search=%ED%A0%80', 'search'],
      ['/api/v1/users/?search=a&search=%FF', 'search'],
      ['/api/v1/users/?search=50%', 'search'],
      ['/api/v1/users/?search=%E0%A4%A', 'search'],
      ['/api/v1/users/?%C0%AF=1', '%C0%AF'],
    ] as const) {
      const res = await su.get(url);
      expect(res.statusCode, url).toBe(400);
      expect(res.headers['content-type'], url).toContain('application/problem+json');
      expect(res.json(), url).toMatchObject({
        code: 'validation_failed',
        errors: [{ field, message: NOT_DECODABLE }],
      });
    }
  });

  it('are refused before authentication, like a path that does not decode', async () => {
    const res = await t.request({ method: 'GET', url: '/api/v1/users/?search=%FF' });
    expect(res.statusCode).toBe(400);
    expect(res.json().errors).toEqual([{ field: 'search', message: NOT_DECODABLE }]);
  });

  it('answer SCIM clients in the SCIM error format', async () => {
    const { scim } = await scimClient(t);
    const res = await scim('GET', '/Users?filter=userName%20eq%20%22%ED%A0%80%22');
    expect(res.statusCode).toBe(400);
    expect(res.headers['content-type']).toContain('application/scim+json');
    expect(res.json()).toMatchObject({ status: '400', scimType: 'invalidValue' });
    expect(res.json().detail).toContain(`filter: ${NOT_DECODABLE}`);
  });

  it('leave valid UTF-8, `+` for a space and repeated parameters as they were', async () => {
    const su = await superuserClient(t);
    const org = await seedOrganization(t);
    await seedUser(t, org.id, { email: 'caf\u00e9.zoe@example.com', firstName: 'Zo\u00eb Anne' });
    const found = async (query: string) =>
      (await su.get(`/api/v1/users/?organization=${org.code}&${query}`))
        .json()
        .results.map((u: { email: string }) => u.email);
    expect(await found('search=caf%C3%A9')).toEqual(['caf\u00e9.zoe@example.com']);
    expect(await found('search=Zo%C3%AB+Anne')).toEqual(['caf\u00e9.zoe@example.com']);
    expect(await found('search=nobody%20here')).toEqual([]);
    // A parameter given twice is still refused by the route's schema as before, not merged.
    expect((await su.get(`/api/v1/users/?organization=${org.code}&search=a&search=b`)).statusCode).toBe(400);
  });
});
