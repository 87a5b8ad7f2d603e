import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { noStore } from '../../platform/http/no-store.js';
import { recordAudit } from '../activity/audit.js';
import { LoginBody, TokenUserView } from '../auth/auth.schemas.js';
import {
  completeMfaLogin,
  login,
  logout,
  logoutEverywhere,
  openedFor,
  revokeSession,
  type TokenContext,
} from '../auth/auth.service.js';
import { MfaRequiredError } from '../mfa/mfa.errors.js';
import { EnrolledRecoveryCodes, MfaLoginBody, MfaRequiredView } from '../mfa/mfa.schemas.js';
import type { SigningKeyStore } from '../signing-keys/signing-keys.service.js';
import {
  clearSessionCookies,
  cookieErrors,
  csrfTokenFor,
  newCookieCredential,
  sessionCookieOf,
  sessionIdOfCookie,
  setSessionCookies,
} from './cookie-auth.service.js';

const CookieLoginView = Type.Object({
  user: TokenUserView,
  csrf_token: Type.String({
    description:
      'Send it as `X-CSRF-Token` on every POST, PUT, PATCH and DELETE made with the cookie (also in the `gatehouse_csrf` cookie).',
  }),
});

const CookieLogoutBody = Type.Object({
  all: Type.Optional(
    Type.Boolean({
      description:
        '`true`: sign out everywhere, ending every session of the signed-in user (this one included), as ' +
        '`POST /api/v1/users/logout/` does.',
    }),
  ),
});

const tags = ['auth'];

export const cookieAuthRoutes: FastifyPluginAsyncTypebox<{ keys: SigningKeyStore }> = async (app, { keys }) => {
  const ctx: TokenContext = { db: app.database.db, keys, config: app.config };

  /** Sets the new session's cookies and ends the session of a cookie the browser still sent. */
  async function startCookieSession(
    req: FastifyRequest,
    reply: FastifyReply,
    cookieToken: string,
    userId: string,
  ): Promise<void> {
    const previous = sessionCookieOf(req);
    const previousSession = previous && (await sessionIdOfCookie(ctx.db, previous));
    if (previousSession) {
      await ctx.db.transaction(async (tx) => {
        const ended = await revokeSession(tx, previousSession, 'replaced_by_login');
        if (!ended) return;
        // The browser's previous session may be another user's: the event is about its user, done by
        // the one who just logged in.
        await recordAudit(tx, {
          type: 'session.revoked',
          category: 'authentication',
          organizationId: ended.organizationId,
          userId: ended.userId,
          actorUserId: userId,
          description: 'Session ended by a new login in the same browser',
          details: { session_id: ended.sessionId, reason: 'replaced_by_login' },
          objectType: 'session',
          objectId: ended.sessionId,
        });
      });
    }
    setSessionCookies(reply, app.config, cookieToken);
  }

  app.post(
    '/api/login',
    {
      schema: {
        operationId: 'cookieLogin',
        tags,
        security: [],
        description:
          'Browser login: the same credentials and answers as `POST /api/token/`, but the session is held in an httpOnly, ' +
          'SameSite=Lax cookie (Secure when PUBLIC_URL is https) that every route accepts instead of a Bearer token. ' +
          'Needs no CSRF token; a session cookie already present is ended. With two-factor authentication on, a ' +
          'matching password answers `{mfa_required: true, mfa_token, methods}` and sets no cookie; finish at ' +
          '`/api/login/mfa/`.',
        body: LoginBody,
        response: { 200: Type.Union([CookieLoginView, MfaRequiredView]) },
      },
    },
    async (req, reply) => {
      const credential = newCookieCredential();
      noStore(reply);
      let user: Awaited<ReturnType<typeof login>>['user'];
      try {
        ({ user } = openedFor(
          req,
          await login(ctx, req.body, {
            ip: req.ip,
            userAgent: req.headers['user-agent'],
            cookieTokenHash: credential.hash,
          }),
        ));
      } catch (err) {
        if (err instanceof MfaRequiredError) return err.challenge;
        throw err;
      }
      await startCookieSession(req, reply, credential.token, user.id);
      return { user, csrf_token: csrfTokenFor(credential.token) };
    },
  );

  app.post(
    '/api/login/mfa',
    {
      schema: {
        operationId: 'cookieLoginMfa',
        tags,
        security: [],
        description:
          'Second step of a browser login with TOTP on: the `mfa_token` of `POST /api/login/` and a TOTP or recovery ' +
          'code; sets the session cookie like a login without a second factor.',
        body: MfaLoginBody,
        response: { 200: Type.Intersect([CookieLoginView, Type.Object({ recovery_codes: EnrolledRecoveryCodes })]) },
      },
    },
    async (req, reply) => {
      const credential = newCookieCredential();
      noStore(reply);
      const { user, recovery_codes } = openedFor(
        req,
        await completeMfaLogin(ctx, req.body, {
          ip: req.ip,
          userAgent: req.headers['user-agent'],
          cookieTokenHash: credential.hash,
        }),
      );
      await startCookieSession(req, reply, credential.token, user.id);
      return { user, csrf_token: csrfTokenFor(credential.token), ...(recovery_codes ? { recovery_codes } : {}) };
    },
  );

  app.post(
    '/api/logout',
    {
      config: { optionalUser: true, cookieSession: true },
      schema: {
        operationId: 'cookieLogout',
        tags,
        description:
          'Ends the cookie session (needs `X-CSRF-Token` like any state-changing cookie request) or the Bearer token’s ' +
          'session, and clears the cookies. Without a working session it only clears them. With `{"all": true}`, ' +
          'signs out everywhere: every session of that user ends (one `auth.logout` event names how many); without ' +
          'a working session that answers 400 naming `all` (the cookies are cleared all the same).',
        body: CookieLogoutBody,
        response: { 204: { type: 'null', description: 'Logged out.' } },
      },
      // A logout without `all` may send no body at all, as the console's does.
      preValidation: async (req) => {
        req.body ??= {};
      },
    },
    async (req, reply) => {
      // Cleared whatever follows: the browser's session is over either way (or was already).
      clearSessionCookies(reply, app.config);
      if (req.actor.kind !== 'user') {
        if (req.body.all === true) throw cookieErrors.logoutAllNeedsSession();
        return reply.code(204).send();
      }
      const { sessionId } = req.actor;
      // A working Bearer token is resolved before the cookie: the event names what was used.
      const cookie = sessionCookieOf(req);
      const viaCookie = cookie !== undefined && (await sessionIdOfCookie(ctx.db, cookie)) === sessionId;
      const method = viaCookie ? 'cookie' : 'bearer';
      if (req.body.all === true) await logoutEverywhere(ctx.db, req.actor, method);
      else await logout(ctx.db, { sessionId, sessionMethod: method });
      return reply.code(204).send();
    },
  );
};
