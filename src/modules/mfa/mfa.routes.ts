import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { organizationScopeOf, requireUser } from '../../platform/http/auth.js';
import { noStore } from '../../platform/http/no-store.js';
import { provePassword } from '../account/account.service.js';
import { completeMfaLogin, lockoutAttempts, openedFor, type TokenContext } from '../auth/auth.service.js';
import type { SigningKeyStore } from '../signing-keys/signing-keys.service.js';
import { findUserToManage } from '../users/users.service.js';
import {
  CodeBody,
  EnrolBody,
  EnrolWithChallengeBody,
  MfaLoginBody,
  MfaLoginView,
  RecoveryCodesView,
  TotpEnrolmentView,
  UserIdParams,
} from './mfa.schemas.js';
import { confirmTotp, disableTotp, enrolTotp, enrolWithChallenge, resetMfa } from './mfa.service.js';

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
          'Starts TOTP enrolment: a new secret (sealed at rest), pending until confirmed with a code. Needs the ' +
          'current password (a wrong one answers 400 `wrong_password` and counts as a failed login of the account). ' +
          'Enrolling again before confirming replaces the secret; with TOTP already on, disable it first.',
        body: EnrolBody,
        response: { 200: TotpEnrolmentView },
      },
    },
    async (req, reply) => {
      const actor = requireUser(req.actor);
      const client = { ip: req.ip, userAgent: req.headers['user-agent'] };
      const user = await provePassword(db, app.config, actor, req.body.password, client, {
        field: 'password',
        purpose: 'enrol_mfa',
      });
      noStore(reply);
      return enrolTotp(db, app.config, actor, user.email);
    },
  );

  app.post(
    '/api/v1/users/login/mfa/enrol',
    {
      schema: {
        operationId: 'loginEnrolTotp',
        tags,
        security: [],
        description:
          'For an organization that requires two-factor authentication, an account without an authenticator: its ' +
          'login answers 403 `mfa_enrollment_required` with an `mfa_token`; this answers a new TOTP secret for it. ' +
          'Logging in at `/api/v1/users/login/mfa/` (or `/api/login/mfa/`) with the same token and the first code ' +
          'turns the authenticator on and answers its recovery codes with the tokens.',
        body: EnrolWithChallengeBody,
        response: { 200: TotpEnrolmentView },
      },
    },
    async (req, reply) => {
      noStore(reply);
      return enrolWithChallenge(db, app.config, req.body.mfa_token);
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
      noStore(reply);
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
          '`invalid_mfa_code` and counts as a failed login of the account (lockout), as at the login’s second step. ' +
          'In an organization that requires two-factor authentication (`settings.require_mfa`) it answers 403 ' +
          '`mfa_required_by_organization` and checks no code; an administrator’s reset ' +
          '(`/api/v1/users/{id}/mfa/reset/`) stays possible.',
        body: CodeBody,
        response: { 204: { type: 'null', description: 'Disabled.' } },
      },
    },
    async (req, reply) => {
      const actor = requireUser(req.actor);
      const client = { ip: req.ip, userAgent: req.headers['user-agent'] };
      await disableTotp(db, app.config, actor, req.body.code, lockoutAttempts(db, app.config, client, 'disable_mfa'));
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
          'current TOTP code or a recovery code. Wrong codes answer 401; five wrong codes use the token up. With the ' +
          'token of a 403 `mfa_enrollment_required` login, after `/api/v1/users/login/mfa/enrol/`: the first code of ' +
          'the new authenticator, which turns it on; the answer adds its `recovery_codes`.',
        body: MfaLoginBody,
        response: { 200: MfaLoginView },
      },
    },
    async (req, reply) => {
      noStore(reply);
      return openedFor(
        req,
        await completeMfaLogin(ctx, req.body, { ip: req.ip, userAgent: req.headers['user-agent'] }),
      );
    },
  );
};
