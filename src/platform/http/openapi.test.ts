import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../../test/test-app.js';

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
    for (const path of ['/health', '/api/v1/users/', '/api/v1/users/{id}/', '/api/v1/organizations/', '/api/token/']) {
      expect(Object.keys(doc.paths).map((p) => (p.endsWith('/') ? p : `${p}/`))).toContain(
        path.endsWith('/') ? path : `${path}/`,
      );
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
