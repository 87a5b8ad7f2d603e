import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { type Static, Type } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { prepareDummyHash } from '../../platform/crypto/passwords.js';
import { bearerToken } from '../../platform/http/auth.js';
import { AppError } from '../../platform/http/errors.js';
import { acceptFormBodies } from '../../platform/http/form-body.js';
import { noStore } from '../../platform/http/no-store.js';
import { MfaRequiredError } from '../mfa/mfa.errors.js';
import { LoginAnswerView, MfaRequiredView } from '../mfa/mfa.schemas.js';
import { noteSessionUse } from '../sessions/sessions.service.js';
import type { SigningKeyStore } from '../signing-keys/signing-keys.service.js';
import { authErrors } from './auth.errors.js';
import {
  GRANT_TYPES,
  InvalidTokenView,
  LoginBody,
  type LoginInput,
  LogoutBody,
  RefreshBody,
  RefreshedView,
  TokenBody,
  TokenPairView,
  ValidTokenView,
} from './auth.schemas.js';
import {
  authenticateAccessToken,
  login,
  logout,
  logoutEverywhere,
  openedFor,
  refreshSession,
  type TokenContext,
  userActorOf,
  verifyAccessToken,
} from './auth.service.js';
import { addOAuth2ErrorMembers } from './oauth2-errors.js';

const tags = ['auth'];

/**
 * RFC 6749 §5.1's names for the two tokens, given beside the contract's `access` and `refresh` to a
 * request that names its `grant_type`: an OAuth2 client reads `access_token`, a seed client `access`.
 */
const OAuth2Names = Type.Partial(Type.Object({ access_token: Type.String(), refresh_token: Type.String() }));

/** `/api/token/`: a login's answer, or with `grant_type=refresh_token` the refresh route's. */
const TokenAnswerView = Type.Union([
  Type.Composite([TokenPairView, OAuth2Names]),
  MfaRequiredView,
  Type.Composite([RefreshedView, OAuth2Names]),
]);

function withOAuth2Names<T extends object>(answer: T): T {
  if (!('access' in answer) || !('refresh' in answer)) return answer;
  return { ...answer, access_token: answer.access, refresh_token: answer.refresh };
}

export const authRoutes: FastifyPluginAsyncTypebox<{ keys: SigningKeyStore }> = async (app, { keys }) => {
  const ctx: TokenContext = { db: app.database.db, keys, config: app.config };
  await prepareDummyHash();

  const loginDescription =
    'Password login. Without `organization`, every account with that email or username (with both: every account ' +
    'both name) is a candidate and the single ' +
    'password match logs in; several matches answer 400 `organization_required`. Wrong password and unknown account ' +
    'answer the same 401 `invalid_credentials`; a suspended/deactivated account (or one in a deactivated ' +
    'organization) answers 401 `account_inactive`, but only once its password matched. With two-factor authentication on, a matching password ' +
    'answers `{mfa_required: true, mfa_token, methods}` instead of tokens; finish at `/api/v1/users/login/mfa/`.';
  const passwordLogin = async (req: FastifyRequest, input: LoginInput) => {
    try {
      return openedFor(req, await login(ctx, input, { ip: req.ip, userAgent: req.headers['user-agent'] }));
    } catch (err) {
      // Password right, second factor due: 200 with the challenge instead of tokens.
      if (err instanceof MfaRequiredError) return err.challenge;
      throw err;
    }
  };
  // Two paths trade refresh tokens (seed 001's and simplejwt's): one schema and one handler.
  // Both take forms as well (see formAndJson): seed 001's clients post whichever way their library does.
  const consumes = ['application/json', 'application/x-www-form-urlencoded'];
  const refreshSchema = (operationId: string) => ({
    operationId,
    tags,
    security: [],
    description:
      'Trades a refresh token for a new access token and a new refresh token. Each refresh token works once; ' +
      'presenting a used one again revokes the whole session. In JSON or as a form (`refresh=…`, ' +
      '`application/x-www-form-urlencoded`), with the same fields and refusals.',
    body: RefreshBody,
    consumes,
    response: { 200: RefreshedView },
  });
  const refresh = async (req: FastifyRequest<{ Body: Static<typeof RefreshBody> }>, reply: FastifyReply) => {
    const pair = openedFor(req, await refreshSession(ctx, req.body.refresh));
    noStore(reply);
    return pair;
  };

  // The token endpoint the discovery document names, and its refresh route, also take form bodies:
  // OAuth2 clients send them (RFC 6749 §4.3.2, §6), and so do seed 001/002's Django clients
  // (`requests.post(url, data=…)`; simplejwt's views parse forms). A scope of their own, so that no
  // other route accepts forms (see acceptFormBodies).
  const formAndJson: FastifyPluginAsyncTypebox = async (scope) => {
    acceptFormBodies(scope);
    addOAuth2ErrorMembers(scope);

    scope.post(
      '/api/token',
      {
        schema: {
          operationId: 'obtainToken',
          tags,
          security: [],
          description:
            `${loginDescription}\n\nAlso the OAuth2 token endpoint of the discovery document (RFC 6749), in JSON or as a form: ` +
            '`grant_type` `password` (the default; `username` may hold an email address) logs in as above; `refresh_token` ' +
            'with `refresh_token` answers as `/api/token/refresh/` does (`{access, refresh, token_type, expires_in}`) and draws ' +
            "on this endpoint's login rate limit. Any other grant type answers 400 `unsupported_grant_type`.",
          body: TokenBody,
          consumes,
          response: { 200: TokenAnswerView },
        },
        // RFC 6749 §5.2: an unknown grant type is the error, whatever else the body holds or lacks.
        preValidation: async (req) => {
          const grant = (req.body as { grant_type?: unknown } | null | undefined)?.grant_type;
          if (typeof grant === 'string' && !(GRANT_TYPES as readonly string[]).includes(grant))
            throw authErrors.unsupportedGrantType();
        },
      },
      async (req, reply) => {
        noStore(reply);
        const body = req.body;
        if (body.grant_type === undefined) return passwordLogin(req, body);
        if (body.grant_type !== 'refresh_token') return withOAuth2Names(await passwordLogin(req, body));
        try {
          return withOAuth2Names(openedFor(req, await refreshSession(ctx, body.refresh_token)));
        } catch (err) {
          if (err instanceof AppError && err.code === 'invalid_refresh_token')
            throw authErrors.invalidRefreshToken('refresh_token');
          throw err;
        }
      },
    );

    scope.post('/api/token/refresh', { schema: refreshSchema('refreshToken') }, refresh);
  };
  await app.register(formAndJson);

  // The login and refresh routes, twins of /api/token/ and /api/token/refresh/ for the same seed 001
  // clients, take forms too; their own scope, as their refusals carry no OAuth2 members. They set no
  // cookie, so a cross-site form posting here gains nothing (the cookie login, /api/login/, stays
  // JSON-only).
  const loginFormAndJson: FastifyPluginAsyncTypebox = async (scope) => {
    acceptFormBodies(scope);
    scope.post(
      '/api/v1/users/login',
      {
        schema: {
          operationId: 'login',
          tags,
          security: [],
          description: `${loginDescription}\n\nIn JSON or as a form (\`application/x-www-form-urlencoded\`).`,
          body: LoginBody,
          consumes,
          response: { 200: LoginAnswerView },
        },
      },
      async (req, reply) => {
        noStore(reply);
        return passwordLogin(req, req.body);
      },
    );
    scope.post('/api/v1/users/token/refresh', { schema: refreshSchema('refreshUserToken') }, refresh);
  };
  await app.register(loginFormAndJson);

  /**
   * The session of a Bearer token that verifies (signature, expiry) although its session has ended, so
   * no actor came of it: logging out again with it names that session, which ends nothing, as a used
   * refresh token does. A token that does not verify names nothing.
   */
  async function endedBearerSession(req: FastifyRequest): Promise<string | undefined> {
    const token = bearerToken(req);
    return token ? (await verifyAccessToken(ctx, token))?.sid : undefined;
  }

  app.post(
    '/api/v1/users/logout',
    {
      schema: {
        operationId: 'logout',
        tags,
        description:
          "Ends the session of the given refresh token and/or of the Bearer token's session; its access and refresh tokens stop working at once. " +
          "With `all: true`, signs out everywhere: every session of the Bearer token's user ends (one `auth.logout` event " +
          'names how many); without a Bearer token that answers 400 naming `all`.',
        body: LogoutBody,
        response: { 204: { type: 'null', description: 'Logged out.' } },
      },
      config: { optionalUser: true },
      // A Bearer-only logout may send no body at all.
      preValidation: async (req) => {
        req.body ??= {};
      },
    },
    async (req, reply) => {
      const sessionId = req.actor.kind === 'user' ? req.actor.sessionId : await endedBearerSession(req);
      if (req.body.all === true) {
        if (req.actor.kind !== 'user') throw authErrors.logoutAllNeedsBearer();
        await logoutEverywhere(ctx.db, req.actor, 'bearer');
        // A refresh token sent as well may be another user's session: it ends as without `all`.
        if (req.body.refresh !== undefined) await logout(ctx.db, { refresh: req.body.refresh });
        return reply.code(204).send();
      }
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
      // A public route reads no credential before its handler: the request's activity row names the
      // token's user, as the caller of a protected route would be named.
      req.actor = userActorOf(found);
      // A service checking the token for its user is that session in use.
      await noteSessionUse(ctx.db, found.claims.sid);
      return { valid: true as const, user: found.state.user, exp: found.claims.exp };
    },
  );
};
