import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { prepareDummyHash } from '../../platform/crypto/passwords.js';
import { bearerToken } from '../../platform/http/auth.js';
import { MfaRequiredError } from '../mfa/mfa.errors.js';
import { LoginAnswerView } from '../mfa/mfa.schemas.js';
import type { SigningKeyStore } from '../signing-keys/signing-keys.service.js';
import { InvalidTokenView, LoginBody, LogoutBody, RefreshBody, RefreshedView, ValidTokenView } from './auth.schemas.js';
import { authenticateAccessToken, login, logout, refreshSession, type TokenContext } from './auth.service.js';

const tags = ['auth'];

// RFC 6749 §5.1: responses carrying tokens must not be cached.
function noStore(reply: FastifyReply): void {
  reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}

export const authRoutes: FastifyPluginAsyncTypebox<{ keys: SigningKeyStore }> = async (app, { keys }) => {
  const ctx: TokenContext = { db: app.database.db, keys, config: app.config };
  await prepareDummyHash();

  const loginSchema = {
    tags,
    security: [],
    description:
      'Password login. Without `organization`, every account with that email or username is a candidate and the single ' +
      'password match logs in; several matches answer 400 `organization_required`. Wrong password and unknown account ' +
      'answer the same 401 `invalid_credentials`; a suspended/deactivated account (or one in a deactivated ' +
      'organization) answers 401 `account_inactive`, but only once its password matched. With two-factor authentication on, a matching password ' +
      'answers `{mfa_required: true, mfa_token, methods}` instead of tokens; finish at `/api/v1/users/login/mfa/`.',
    body: LoginBody,
    response: { 200: LoginAnswerView },
  };
  for (const [url, operationId] of [
    ['/api/token', 'obtainToken'],
    ['/api/v1/users/login', 'login'],
  ] as const) {
    app.post(url, { schema: { ...loginSchema, operationId } }, async (req, reply) => {
      noStore(reply);
      try {
        return await login(ctx, req.body, { ip: req.ip, userAgent: req.headers['user-agent'] });
      } catch (err) {
        // Password right, second factor due: 200 with the challenge instead of tokens.
        if (err instanceof MfaRequiredError) return err.challenge;
        throw err;
      }
    });
  }

  const refreshSchema = {
    tags,
    security: [],
    description:
      'Trades a refresh token for a new access token and a new refresh token. Each refresh token works once; presenting ' +
      'a used one again revokes the whole session.',
    body: RefreshBody,
    response: { 200: RefreshedView },
  };
  for (const [url, operationId] of [
    ['/api/token/refresh', 'refreshToken'],
    ['/api/v1/users/token/refresh', 'refreshUserToken'],
  ] as const) {
    app.post(url, { schema: { ...refreshSchema, operationId } }, async (req, reply) => {
      const pair = await refreshSession(ctx, req.body.refresh);
      noStore(reply);
      return pair;
    });
  }

  app.post(
    '/api/v1/users/logout',
    {
      schema: {
        operationId: 'logout',
        tags,
        description:
          "Ends the session of the given refresh token and/or of the Bearer token's session; its access and refresh tokens stop working at once.",
        body: LogoutBody,
        response: { 204: { type: 'null', description: 'Logged out.' } },
      },
      // A Bearer-only logout may send no body at all.
      preValidation: async (req) => {
        req.body ??= {};
      },
    },
    async (req, reply) => {
      const sessionId = req.actor.kind === 'user' ? req.actor.sessionId : undefined;
      await logout(ctx.db, { refresh: req.body.refresh, sessionId });
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/v1/users/validate-token',
    {
      schema: {
        operationId: 'validateToken',
        tags,
        description:
          'For other services: whether a Bearer access token is valid right now (signature, expiry, and that its session, ' +
          'user and organization are still active), with the user it belongs to.',
        response: { 200: ValidTokenView, 401: InvalidTokenView },
      },
    },
    async (req, reply) => {
      const token = bearerToken(req);
      const found = token ? await authenticateAccessToken(ctx, token) : undefined;
      // This endpoint answers plain JSON either way (seed 001), not problem+json.
      if (!found)
        return reply
          .code(401)
          .header('www-authenticate', 'Bearer')
          .send({ valid: false as const });
      return { valid: true as const, user: found.state.user, exp: found.claims.exp };
    },
  );
};
