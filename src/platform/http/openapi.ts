import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { Type } from '@sinclair/typebox';
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

declare module 'fastify' {
  interface FastifySchema {
    /**
     * Answers documented in OpenAPI without serialising through them, as `{ description, content }`
     * per status: for open resources a response schema would drop every property it does not name.
     */
    documentedResponse?: Record<string, unknown>;
  }
}

const FieldErrors = Type.Array(Type.Object({ field: Type.String(), message: Type.String() }));

/** Every refusal of this API (contract §2): RFC 9457, with a stable code and the fields at fault. */
const Problem = Type.Object({
  type: Type.String(),
  title: Type.String(),
  status: Type.Integer(),
  detail: Type.String(),
  code: Type.String({ description: 'Stable, snake_case: what went wrong (`validation_failed`, `email_taken`, …).' }),
  instance: Type.Optional(Type.String()),
  errors: Type.Optional(FieldErrors),
});

/** RFC 7644 §3.12. */
const ScimError = Type.Object({
  schemas: Type.Array(Type.String()),
  status: Type.String(),
  scimType: Type.Optional(Type.String()),
  detail: Type.Optional(Type.String()),
});

/** Seed 003's export endpoints keep their own refusal shape. */
const SeedExportError = Type.Object({
  success: Type.Literal(false),
  error: Type.String(),
  code: Type.Optional(Type.String()),
  errors: Type.Optional(FieldErrors),
});

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });

/** What an operation answers when it refuses, by the part of the API it belongs to. */
function refusalOf(url: string) {
  if (url.startsWith('/scim/')) {
    return {
      description: 'Refused: a SCIM error.',
      content: { 'application/scim+json': { schema: ref('ScimError') } },
    };
  }
  if (url.startsWith('/api/admin/')) {
    return { description: 'Refused.', content: { 'application/json': { schema: ref('SeedExportError') } } };
  }
  return {
    description: 'Refused (4xx) or failed (5xx): a problem document.',
    content: { 'application/problem+json': { schema: ref('Problem') } },
  };
}

/**
 * What the generated document says beyond the route schemas: the answers a route documents only
 * (`documentedResponse`), every operation's refusals (as the `default` response, 4xx and 5xx
 * alike), and the 204 of a DELETE that declares no answer (the generator would call it 200).
 */
function documented(schema: Record<string, unknown>, url: string, method: string): Record<string, unknown> {
  const { documentedResponse, ...rest } = schema;
  const response = {
    ...((rest.response as Record<string, unknown> | undefined) ?? {}),
    ...((documentedResponse as Record<string, unknown> | undefined) ?? {}),
  };
  if (method === 'DELETE' && Object.keys(response).length === 0) {
    response[204] = { type: 'null', description: 'Deleted.' };
  }
  response.default ??= refusalOf(url);
  return { ...rest, response };
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
        schemas: { Problem, ScimError, SeedExportError },
        securitySchemes: {
          bearerAuth: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT' },
          apiKey: { type: 'apiKey', in: 'header', name: 'X-API-Key' },
        },
      },
      security: [{ bearerAuth: [] }],
    },
    transform: ({ schema, url, route }) => {
      const path = documentedPath(url);
      if (!schema || schema.hide) return { schema, url: path };
      const method = String(Array.isArray(route.method) ? route.method[0] : route.method);
      return { schema: documented(schema as Record<string, unknown>, url, method) as typeof schema, url: path };
    },
  });
  await app.register(swaggerUi, { routePrefix: '/api/docs', uiConfig: { deepLinking: true } });
  app.get('/api/openapi.json', { schema: { hide: true } }, async () => app.swagger());
}
