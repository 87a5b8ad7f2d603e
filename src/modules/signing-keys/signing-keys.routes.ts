import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { GRANT_TYPES } from '../auth/auth.schemas.js';
import { DiscoveryView, JwksView } from './signing-keys.schemas.js';
import { SIGNING_ALGORITHM, type SigningKeyStore } from './signing-keys.service.js';

const tags = ['tokens'];

export const signingKeysRoutes: FastifyPluginAsyncTypebox<{ keys: SigningKeyStore }> = async (app, { keys }) => {
  const { publicUrl, issuer } = app.config;

  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        operationId: 'getJwks',
        tags,
        security: [],
        description:
          'Public keys that verify access tokens (RFC 7517). After a rotation the previous key stays listed until every token it signed has expired.',
        response: { 200: JwksView },
      },
    },
    async (_req, reply) => {
      await keys.settled();
      // Short: a verifier must see a newly rotated key soon (jose's remote key set also refetches on an unknown kid).
      reply.header('cache-control', 'public, max-age=60');
      return keys.jwks();
    },
  );

  // OpenID Connect Discovery 1.0 §3, limited to what Gatehouse implements: no authorization endpoint yet.
  const discovery = {
    issuer,
    jwks_uri: `${publicUrl}/.well-known/jwks.json`,
    token_endpoint: `${publicUrl}/api/token/`,
    grant_types_supported: [...GRANT_TYPES],
    response_types_supported: [],
    subject_types_supported: ['public'],
    id_token_signing_alg_values_supported: [SIGNING_ALGORITHM],
    token_endpoint_auth_methods_supported: ['none'],
    claims_supported: ['iss', 'aud', 'sub', 'exp', 'iat', 'jti', 'org_id', 'org', 'sid', 'is_staff', 'is_superuser'],
  };
  app.get(
    '/.well-known/openid-configuration',
    {
      schema: {
        operationId: 'getOpenIdConfiguration',
        tags,
        security: [],
        description: 'Discovery document: issuer, JWKS location and token endpoint.',
        response: { 200: DiscoveryView },
      },
    },
    async (_req, reply) => {
      reply.header('cache-control', 'public, max-age=3600');
      return discovery;
    },
  );
};
