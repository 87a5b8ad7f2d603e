import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { organizationScopeOf } from '../../platform/http/auth.js';
import { noStore } from '../../platform/http/no-store.js';
import { refuseOrganizationId } from '../../platform/http/organization-id-field.js';
import { toPage } from '../../platform/http/pagination.js';
import { listingScope } from '../organizations/organizations.queries.js';
import { apiKeyErrors } from './api-keys.errors.js';
import { type ApiKeyWithOrganization, findApiKey, listApiKeys } from './api-keys.queries.js';
import {
  ApiKeyIdParams,
  ApiKeyPage,
  ApiKeyView,
  CreateApiKeyBody,
  CreatedApiKeyView,
  ListApiKeysQuery,
} from './api-keys.schemas.js';
import { type CreatedApiKey, createApiKey, keyManagerOf, revokeApiKey, rotateApiKey } from './api-keys.service.js';

export function toApiKeyView(k: ApiKeyWithOrganization) {
  return {
    id: k.id,
    name: k.name,
    prefix: k.prefix,
    organization: k.organizationCode,
    organization_id: k.organizationId,
    scopes: k.scopes,
    expires_at: k.expiresAt?.toISOString() ?? null,
    last_used_at: k.lastUsedAt?.toISOString() ?? null,
    revoked_at: k.revokedAt?.toISOString() ?? null,
    created_at: k.createdAt.toISOString(),
  };
}

function toCreatedView(created: CreatedApiKey) {
  return { ...toApiKeyView(created.apiKey), key: created.key };
}

const tags = ['api-keys'];
const auth = { permission: 'apikeys.manage' };

export const apiKeysRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;

  app.post(
    '/api/v1/api-keys',
    {
      config: { auth },
      preValidation: refuseOrganizationId,
      schema: {
        operationId: 'createApiKey',
        tags,
        description:
          'Creates an API key. The key is in this answer only; Gatehouse keeps its SHA-256 hash and prefix. ' +
          'Organization administrators create keys for their own organization; platform-wide keys ' +
          '(`organization: null`) need a superuser. Each scope needs permissions of the caller (read:users: ' +
          'users.view; provisioning: users.view, users.update; scim: users.view, users.update, users.delete, ' +
          'roles.manage; authorize: users.view, roles.view), else 403 `delegation_ceiling`; the key stops serving ' +
          'a scope while its creator lacks them.',
        body: CreateApiKeyBody,
        response: { 201: CreatedApiKeyView },
      },
    },
    async (req, reply) => {
      const created = await createApiKey(db, keyManagerOf(req.actor), req.body);
      return noStore(reply).code(201).send(toCreatedView(created));
    },
  );

  app.get(
    '/api/v1/api-keys',
    {
      config: { auth },
      schema: {
        operationId: 'listApiKeys',
        tags,
        description: 'API keys, newest first, revoked ones included; never the keys themselves.',
        querystring: ListApiKeysQuery,
        response: { 200: ApiKeyPage },
      },
    },
    async (req) => {
      const limit = req.query.limit ?? 50;
      const organizationId = await listingScope(db, req.actor, req.query.organization);
      if (organizationId === null) return { results: [], next: null };
      const rows = await listApiKeys(db, { organizationId, limit, cursor: req.query.cursor });
      const page = toPage(rows, limit, (k) => [k.id]);
      return { results: page.results.map(toApiKeyView), next: page.next };
    },
  );

  app.get(
    '/api/v1/api-keys/:id',
    {
      config: { auth },
      schema: { operationId: 'getApiKey', tags, params: ApiKeyIdParams, response: { 200: ApiKeyView } },
    },
    async (req) => {
      const key = await findApiKey(db, req.params.id, organizationScopeOf(req.actor));
      if (!key) throw apiKeyErrors.notFound(req.params.id);
      return toApiKeyView(key);
    },
  );

  app.delete(
    '/api/v1/api-keys/:id',
    {
      config: { auth },
      schema: {
        operationId: 'revokeApiKey',
        tags,
        description:
          'Revokes the key: it stops working at once on every node. Revoking again changes nothing. ' +
          'Others than superusers revoke their own keys and those of creators within their delegation ceiling, ' +
          "never a superuser's or the command line's (403 `delegation_ceiling`).",
        params: ApiKeyIdParams,
        response: { 204: { type: 'null', description: 'Revoked.' } },
      },
    },
    async (req, reply) => {
      await revokeApiKey(db, keyManagerOf(req.actor), req.params.id);
      return reply.code(204).send();
    },
  );

  app.post(
    '/api/v1/api-keys/:id/rotate',
    {
      config: { auth },
      schema: {
        operationId: 'rotateApiKey',
        tags,
        description:
          'Issues a new key with the same name, organization, scopes and expiry and revokes this one, ' +
          'in one transaction. The new key is in this answer only. Who may rotate a key is who may revoke it; ' +
          'the new key is the caller’s, so its scopes must be within their permissions.',
        params: ApiKeyIdParams,
        response: { 201: CreatedApiKeyView },
      },
    },
    async (req, reply) => {
      const created = await rotateApiKey(db, keyManagerOf(req.actor), req.params.id);
      return noStore(reply).code(201).send(toCreatedView(created));
    },
  );
};
