import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import type { Config } from '../../config.js';

/**
 * Paths the seeds' Django services spell with a trailing slash (API-CONTRACT §4, §5) are documented
 * so; every path is served with or without it. Seed 000's provisioning API, SCIM and the well-known
 * documents are spelled without.
 */
const SLASHED = /^\/api\/(v1|token|login|logout|admin)(\/|$)/;

export function documentedPath(url: string): string {
  return SLASHED.test(url) && !url.endsWith('/') ? `${url}/` : url;
}

/** OpenAPI 3 document generated from the route schemas, served at /api/openapi.json and /api/docs. */
export async function registerOpenApi(app: FastifyInstance, config: Config): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Gatehouse API',
        version: '0.1.0',
        description: 'Multi-tenant user management and provisioning.',
      },
      servers: [{ url: config.publicUrl }],
      components: {
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
      security: [{ bearerAuth: [] }],
    },
    transform: ({ schema, url }) => ({ schema, url: documentedPath(url) }),
  });
  await app.register(swaggerUi, { routePrefix: '/api/docs', uiConfig: { deepLinking: true } });
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
