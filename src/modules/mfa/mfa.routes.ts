import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { organizationScopeOf, requireUser } from '../../platform/http/auth.js';
import { TokenPairView } from '../auth/auth.schemas.js';
import { completeMfaLogin, recordFailedCredentialCheck, type TokenContext } from '../auth/auth.service.js';
import type { SigningKeyStore } from '../signing-keys/signing-keys.service.js';
import { findUserById } from '../users/users.queries.js';
import { findUserToManage } from '../users/users.service.js';
import { CodeBody, MfaLoginBody, RecoveryCodesView, TotpEnrolmentView, UserIdParams } from './mfa.schemas.js';
import { confirmTotp, disableTotp, enrolTotp, resetMfa } from './mfa.service.js';

const tags = ['mfa'];

export const mfaRoutes: FastifyPluginAsyncTypebox<{ keys: SigningKeyStore }> = async (app, { keys }) => {
  const ctx: TokenContext = { db: app.database.db, keys, config: app.config };
  const db = app.database.db;

  app.post(
    '/api/v1/users/mfa/totp',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'enrolTotp',
        tags,
        description:
          'Starts TOTP enrolment: a new secret (sealed at rest), pending until confirmed with a code. Enrolling again ' +
          'before confirming replaces the secret; with TOTP already on, disable it first.',
        response: { 200: TotpEnrolmentView },
      },
    },
    async (req, reply) => {
      const actor = requireUser(req.actor);
      const user = await findUserById(db, actor.userId);
      reply.header('cache-control', 'no-store');
      return enrolTotp(db, app.config, actor, user?.email ?? actor.userId);
    },
  );

  app.post(
    '/api/v1/users/mfa/totp/confirm',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'confirmTotp',
        tags,
        description: 'Turns TOTP on with a first code and answers ten single-use recovery codes, shown only here.',
        body: CodeBody,
        response: { 200: RecoveryCodesView },
      },
    },
    async (req, reply) => {
      const codes = await confirmTotp(db, app.config, requireUser(req.actor), req.body.code);
      reply.header('cache-control', 'no-store');
      return { enabled: true as const, recovery_codes: codes };
    },
  );

  app.delete(
    '/api/v1/users/mfa/totp',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'disableTotp',
        tags,
        description:
          'Turns TOTP off; needs a current code (or a recovery code) in the body. A wrong code answers 401 ' +
          '`invalid_mfa_code` and counts as a failed login of the account (lockout), as at the login’s second step.',
        body: CodeBody,
        response: { 204: { type: 'null', description: 'Disabled.' } },
      },
    },
    async (req, reply) => {
      const actor = requireUser(req.actor);
      const client = { ip: req.ip, userAgent: req.headers['user-agent'] };
      await disableTotp(db, app.config, actor, req.body.code, () =>
        recordFailedCredentialCheck(
          db,
          app.config,
          { id: actor.userId, organizationId: actor.organizationId },
          client,
          'disable_mfa',
        ),
      );
      return reply.code(204).send();
    },
  );

  app.post(
    '/api/v1/users/:id/mfa/reset',
    {
      config: { auth: { permission: 'users.update' } },
      schema: {
        operationId: 'resetMfa',
        tags,
        description: "An administrator's reset: removes the user's authenticator and recovery codes.",
        params: UserIdParams,
        response: { 204: { type: 'null', description: 'Reset.' } },
      },
    },
    async (req, reply) => {
      const user = await findUserToManage(db, req.actor, req.params.id);
      await resetMfa(db, user.id, organizationScopeOf(req.actor), req.actor);
      return reply.code(204).send();
    },
  );

  app.post(
    '/api/v1/users/login/mfa',
    {
      schema: {
        operationId: 'loginMfa',
        tags,
        security: [],
        description:
          'Second step of a login with TOTP on: the `mfa_token` of the password step (single use, 5 minutes) and a ' +
          'current TOTP code or a recovery code. Wrong codes answer 401; five wrong codes use the token up.',
        body: MfaLoginBody,
        response: { 200: TokenPairView },
      },
    },
    async (req, reply) => {
      reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
      return completeMfaLogin(ctx, req.body, { ip: req.ip, userAgent: req.headers['user-agent'] });
    },
  );
};
