import { createApiKey, OPERATOR } from '../src/modules/api-keys/api-keys.service.js';
import { seedOrganization } from './seed.js';
import type { TestApp } from './test-app.js';

/** Test support: a fresh organization with a SCIM key, and a request function that sends it. */

export type Scim = (
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE',
  url: string,
  body?: unknown,
  headers?: Record<string, string>,
) => ReturnType<TestApp['request']>;

export async function scimClient(t: TestApp, scopes = ['scim']) {
  const org = await seedOrganization(t);
  const { key } = await createApiKey(t.database.db, OPERATOR, { name: 'idp', organization: org.code, scopes });
  const scim: Scim = (method, url, body, headers = {}) =>
    t.request({
      method,
      url: `/scim/v2${url}`,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/scim+json' }),
        ...headers,
      },
      ...(body === undefined ? {} : { payload: typeof body === 'string' ? body : JSON.stringify(body) }),
    });
  return { org, key, scim };
}
