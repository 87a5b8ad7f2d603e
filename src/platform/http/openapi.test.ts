import { readFileSync } from 'node:fs';
import { Ajv } from 'ajv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';

const CONTRACT_PATHS = [
  '/health',
  '/api/provisioning/users',
  '/api/provisioning/users/bulk',
  '/api/provisioning/users/{keycloak_id}',
  '/api/provisioning/users/{keycloak_id}/deactivate',
  '/api/v1/users/register/',
  '/api/token/',
  '/api/v1/users/login/',
  '/api/token/refresh/',
  '/api/v1/users/token/refresh/',
  '/api/v1/users/logout/',
  '/api/v1/users/profile/',
  '/api/v1/users/change-password/',
  '/api/v1/users/sessions/',
  '/api/v1/users/password-reset/',
  '/api/v1/users/password-reset/confirm/',
  '/api/v1/users/validate-token/',
  '/api/v1/users/user/{id}/',
  '/api/v1/users/health/',
  '/api/login/',
  '/api/logout/',
  '/.well-known/jwks.json',
  '/.well-known/openid-configuration',
  '/api/v1/organizations/',
  '/api/v1/users/',
  '/api/v1/roles/',
  '/api/v1/permissions/',
  '/api/v1/modules/',
  '/api/v1/api-keys/',
  '/api/v1/activities/',
  '/api/v1/activity-stats/',
  '/api/v1/user-sessions/',
  '/api/v1/integrations/',
  '/api/v1/users/{id}/roles/',
  '/api/v1/users/profile/permissions/',
  '/api/v1/authorize/',
  '/api/admin/export-users/',
  '/api/admin/export-stats/',
  '/scim/v2/ServiceProviderConfig',
  '/scim/v2/ResourceTypes',
  '/scim/v2/Schemas',
  '/scim/v2/Users',
  '/scim/v2/Users/{id}',
  '/scim/v2/Groups',
  '/scim/v2/Groups/{id}',
];

describe('OpenAPI documentation', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('documents every route with an operationId and a tag', async () => {
    const res = await t.request({ method: 'GET', url: '/api/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json() as {
      openapi: string;
      paths: Record<string, Record<string, { operationId?: string; tags?: string[] }>>;
    };
    expect(doc.openapi).toMatch(/^3\./);
    const undocumented: string[] = [];
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(operations)) {
        if (!op.operationId || !op.tags?.length) undocumented.push(`${method.toUpperCase()} ${path}`);
      }
    }
    expect(undocumented).toEqual([]);
    // Every path API-CONTRACT.md names, spelled as it spells them.
    const missing = CONTRACT_PATHS.filter((path) => !(path in doc.paths));
    expect(missing).toEqual([]);
  });

  it("documents each operation's refusals in its part's format, and a DELETE's 204 as it answers", async () => {
    const doc = (await t.request({ method: 'GET', url: '/api/openapi.json' })).json() as {
      paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>>;
      components: { schemas: Record<string, { required?: string[] }> };
    };
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(operations)) {
        const refusal = Object.keys(op.responses.default?.content ?? {});
        const expected = path.startsWith('/scim/')
          ? 'application/scim+json'
          : path.startsWith('/api/admin/')
            ? 'application/json'
            : 'application/problem+json';
        expect(refusal, `${method} ${path}`).toEqual([expected]);
        if (method === 'delete') expect(Object.keys(op.responses), path).toContain('204');
      }
    }
    expect(doc.components.schemas.Problem?.required).toEqual(['type', 'title', 'status', 'detail', 'code']);
    // What the documentation says a DELETE answers, and what it answers.
    const su = await superuserClient(t);
    const code = unique('doc-');
    expect((await su.post('/api/v1/organizations/', { code, name: 'Doc' })).statusCode).toBe(201);
    const deleted = await su.delete(`/api/v1/organizations/${code}/`);
    expect(deleted.statusCode).toBe(204);
    const missing = await su.delete(`/api/v1/organizations/${code}/`);
    expect(missing.statusCode).toBe(404);
    expect(missing.headers['content-type']).toContain('application/problem+json');
  });

  it('documents what SCIM answers and reads, and its real answers validate against the document', async () => {
    type Operation = {
      requestBody?: { content: Record<string, unknown> };
      responses: Record<string, { content?: Record<string, { schema: object }> }>;
    };
    const doc = (await t.request({ method: 'GET', url: '/api/openapi.json' })).json() as {
      paths: Record<string, Record<string, Operation>>;
    };
    for (const [path, operations] of Object.entries(doc.paths)) {
      if (!path.startsWith('/scim/')) continue;
      for (const [method, op] of Object.entries(operations)) {
        const success = Object.keys(op.responses).filter((status) => status.startsWith('2'));
        expect(success, `${method} ${path}`).not.toEqual([]);
        if (op.requestBody) {
          expect(Object.keys(op.requestBody.content), `${method} ${path}`).toContain('application/scim+json');
        }
      }
    }

    const { org, scim } = await scimClient(t);
    const member = await seedUser(t, org.id, { username: 'doc-member' });
    const ajv = new Ajv({ strict: false });
    const check = async (method: 'GET' | 'POST' | 'PUT' | 'PATCH', url: string, path: string, body?: unknown) => {
      const res = await scim(method, url, body);
      const schema =
        doc.paths[path]?.[method.toLowerCase()]?.responses[res.statusCode]?.content?.['application/scim+json']?.schema;
      expect(schema, `${method} ${url} answered ${res.statusCode}: ${res.body}`).toBeDefined();
      const validate = ajv.compile(schema as object);
      expect(validate(res.json()) ? [] : validate.errors, `${method} ${url}`).toEqual([]);
      return res.json();
    };
    const user = {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:User'],
      userName: 'doc-user',
      name: { givenName: 'Doc', familyName: 'User' },
      emails: [{ value: 'doc-user@example.com', primary: true }],
      title: 'Writer',
      'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User': { department: 'Docs' },
    };
    const created = await check('POST', '/Users', '/scim/v2/Users', user);
    const group = await check('POST', '/Groups', '/scim/v2/Groups', {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
      displayName: 'Doc writers',
      members: [{ value: created.id }, { value: member.id }],
    });
    const patch = (value: object) => ({
      schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
      Operations: [{ op: 'replace', value }],
    });
    const search = { schemas: ['urn:ietf:params:scim:api:messages:2.0:SearchRequest'], filter: 'userName sw "doc"' };
    await check('GET', `/Users/${created.id}`, '/scim/v2/Users/{id}');
    await check('GET', `/Users/${created.id}?attributes=userName`, '/scim/v2/Users/{id}');
    await check('PUT', `/Users/${created.id}`, '/scim/v2/Users/{id}', user);
    await check('PATCH', `/Users/${created.id}`, '/scim/v2/Users/{id}', patch({ title: 'Editor' }));
    await check('GET', '/Users?sortBy=userName', '/scim/v2/Users');
    await check('POST', '/Users/.search', '/scim/v2/Users/.search', search);
    await check('GET', `/Groups/${group.id}`, '/scim/v2/Groups/{id}');
    await check('PATCH', `/Groups/${group.id}`, '/scim/v2/Groups/{id}', patch({ displayName: 'Doc editors' }));
    await check('PUT', `/Groups/${group.id}`, '/scim/v2/Groups/{id}', {
      schemas: ['urn:ietf:params:scim:schemas:core:2.0:Group'],
      displayName: 'Doc writers',
    });
    await check('GET', '/Groups', '/scim/v2/Groups');
    await check('POST', '/Groups/.search', '/scim/v2/Groups/.search', { ...search, filter: 'displayName pr' });
    await check('POST', '/Bulk', '/scim/v2/Bulk', {
      schemas: ['urn:ietf:params:scim:api:messages:2.0:BulkRequest'],
      Operations: [{ method: 'POST', path: '/Users', bulkId: 'b1', data: { ...user, userName: 'doc-bulk' } }],
    });
    await check('GET', '/ServiceProviderConfig', '/scim/v2/ServiceProviderConfig');
    await check('GET', '/ResourceTypes', '/scim/v2/ResourceTypes');
    await check('GET', '/ResourceTypes/User', '/scim/v2/ResourceTypes/{id}');
    const listed = await check('GET', '/Schemas', '/scim/v2/Schemas');
    await check('GET', `/Schemas/${listed.Resources[0].id}`, '/scim/v2/Schemas/{id}');
  });

  it('documents a success answer for every read, and only the parameters a single SCIM resource reads', async () => {
    const doc = (await t.request({ method: 'GET', url: '/api/openapi.json' })).json() as {
      paths: Record<string, Record<string, { responses: Record<string, unknown>; parameters?: { name: string }[] }>>;
    };
    for (const [path, operations] of Object.entries(doc.paths)) {
      const read = operations.get;
      if (read)
        expect(
          Object.keys(read.responses).filter((s) => /^[23]/.test(s)),
          `GET ${path}`,
        ).not.toEqual([]);
    }
    expect(Object.keys(doc.paths['/api/v1/activities/export/']?.get?.responses['200'] ?? {})).toContain('content');
    for (const path of ['/scim/v2/Users/{id}', '/scim/v2/Groups/{id}']) {
      const names = (doc.paths[path]?.get?.parameters ?? []).map((p) => p.name).sort();
      expect(names, path).toEqual(['attributes', 'excludedAttributes', 'id']);
    }
  });

  it('serves the interactive documentation page', async () => {
    const res = await t.request({ method: 'GET', url: '/api/docs' });
    const page = res.statusCode === 302 ? await t.request({ method: 'GET', url: res.headers.location as string }) : res;
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toContain('text/html');
  });
});

describe('committed OpenAPI document', () => {
  it('matches what the routes generate (run `npm run openapi` after changing a route)', async () => {
    const { generateOpenApi, OPENAPI_FILE } = await import('../../../scripts/openapi.js');
    const committed = readFileSync(OPENAPI_FILE, 'utf8');
    expect(await generateOpenApi()).toBe(committed);
  });
});
