import './account.jobs.js';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyReply } from 'fastify';
import { organizationScopeOf, requireUser } from '../../platform/http/auth.js';
import { noStore } from '../../platform/http/no-store.js';
import { refuseOrganizationId } from '../../platform/http/organization-id-field.js';
import { partialUpdate } from '../../platform/http/partial-update.js';
import { userErrors } from '../users/users.errors.js';
import { findUserById } from '../users/users.queries.js';
import { toUserView } from '../users/users.schemas.js';
import { findUserToManage, updateOwnProfile } from '../users/users.service.js';
import {
  ADMIN_ONLY_FIELDS,
  ChangePasswordBody,
  DetailView,
  EmailVerifiedView,
  InvitationView,
  PasswordResetBody,
  PasswordResetConfirmBody,
  ProfileView,
  RegisterBody,
  TokenBody,
  TokenQuery,
  TokenStatusView,
  UpdateProfileBody,
  UserIdParams,
} from './account.schemas.js';
import {
  changePassword,
  confirmPasswordReset,
  describePasswordToken,
  inviteUser,
  registerUser,
  requestPasswordReset,
  resendVerification,
  verifyEmail,
} from './account.service.js';

const tags = ['account'];
const RESEND_ACCEPTED = 'If an unverified account with this address exists, a new verification link is on its way.';
const RESET_ACCEPTED = 'If an account with this address exists, a link to reset its password is on its way.';

export const accountRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;

  async function profileOf(userId: string) {
    const user = await findUserById(db, userId);
    if (!user) throw userErrors.notFound(userId);
    return toUserView(user);
  }

  app.post(
    '/api/v1/users/register',
    {
      schema: {
        operationId: 'register',
        tags,
        security: [],
        description:
          'Self-registration into an organization (by code; default `default`) unless its settings say ' +
          '`self_registration: false` (403 `registration_closed`). The password policy answers 400 `password_too_weak`. ' +
          'A verification link is mailed to the address. `password2` or `password_confirm`, when sent, must equal ' +
          '`password`. Any other field (`organization_id`, `is_staff`, `user_type`, …) answers 400 naming it and ' +
          'creates nothing.',
        body: RegisterBody,
        response: { 201: ProfileView },
      },
      // Before the schema, for its clearer reason: the organization is named by its code.
      preValidation: refuseOrganizationId,
    },
    async (req, reply) => {
      const user = await registerUser(db, app.config, req.body);
      return reply.code(201).send(toUserView(user));
    },
  );

  const verifyDescription =
    'Uses up an email-verification token (from the link mailed at registration) and marks the address verified.';
  app.post(
    '/api/v1/users/verify-email',
    {
      schema: {
        operationId: 'verifyEmail',
        tags,
        security: [],
        description: verifyDescription,
        body: TokenBody,
        response: { 200: EmailVerifiedView },
      },
    },
    async (req, reply) => {
      await verifyEmail(db, req.body.token);
      noStore(reply);
      return { detail: 'Your email address is verified.', email_verified: true as const };
    },
  );
  app.get(
    '/api/v1/users/verify-email',
    {
      schema: {
        operationId: 'verifyEmailLink',
        tags,
        security: [],
        description:
          `${verifyDescription} The token in the query string: links mailed by earlier versions point here ` +
          '(the mailed link now opens the admin console’s page `/admin/verify-email`, which calls POST).',
        querystring: TokenQuery,
        response: { 200: EmailVerifiedView },
      },
    },
    async (req, reply) => {
      await verifyEmail(db, req.query.token);
      noStore(reply);
      return { detail: 'Your email address is verified.', email_verified: true as const };
    },
  );

  app.post(
    '/api/v1/users/verify-email/resend',
    {
      schema: {
        operationId: 'resendVerificationEmail',
        tags,
        security: [],
        description:
          'Mails a new verification link to each active, unverified account with this address (in `organization`, or ' +
          'in every organization); earlier links stop working. Always 202 with the same body, whether or not such an ' +
          'account exists; the lookup and the mail happen later, in a job. An address is mailed at most 3 verification ' +
          'links per 15 minutes; further requests mail nothing.',
        body: PasswordResetBody,
        response: { 202: DetailView },
      },
    },
    async (req, reply) => {
      await resendVerification(db, req.body);
      return reply.code(202).send({ detail: RESEND_ACCEPTED });
    },
  );

  app.get(
    '/api/v1/users/profile',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'getProfile',
        tags,
        description: 'The signed-in user.',
        response: { 200: ProfileView },
      },
    },
    async (req) => profileOf(requireUser(req.actor).userId),
  );

  app.patch(
    '/api/v1/users/profile',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'updateProfile',
        tags,
        description:
          'Changes the signed-in user’s `username` (409 `username_taken` if in use), `first_name`, `last_name` and ' +
          '`attributes` (replaced whole), written as every other API writes users: a typed user’s ' +
          '`attributes.profile` must match their type’s schema (400 naming `profile.<path>`), and ' +
          '`attributes.scim`, the identity provider’s, is kept when left out and answers 400 naming it when ' +
          'changed. Fields a user may not set on themselves (`email`, `status`, `is_staff`, ' +
          '`is_superuser`, `email_verified`, `organization`, `password`, …) answer 400 naming them; other unknown ' +
          'fields are ignored, and a body with nothing to change answers the profile as it is.',
        body: UpdateProfileBody,
        response: { 200: ProfileView },
      },
      ...partialUpdate({
        body: UpdateProfileBody,
        view: ProfileView,
        alsoReadOnly: ADMIN_ONLY_FIELDS,
        via: 'through the profile',
        current: (req) => profileOf(requireUser(req.actor).userId),
      }),
    },
    async (req) => toUserView(await updateOwnProfile(db, requireUser(req.actor), req.body)),
  );

  app.post(
    '/api/v1/users/change-password',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'changePassword',
        tags,
        description:
          'Changes the signed-in user’s password: a wrong `old_password` answers 400 naming it and counts as a failed ' +
          'login of the account (lockout: at the threshold every session ends, this one too); the new one must meet ' +
          'the password policy. Every other session of the user ends; this one stays signed in.',
        body: ChangePasswordBody,
        response: { 200: DetailView },
      },
    },
    async (req) => {
      await changePassword(db, app.config, requireUser(req.actor), req.body, {
        ip: req.ip,
        userAgent: req.headers['user-agent'],
      });
      return { detail: 'Your password has been changed; your other sessions have been signed out.' };
    },
  );

  app.post(
    '/api/v1/users/password-reset',
    {
      schema: {
        operationId: 'requestPasswordReset',
        tags,
        security: [],
        description:
          'Mails a single-use reset link (valid 1 hour) to each active account with this address (in `organization`, ' +
          'or in every organization). Always 202 with the same body, whether or not an account exists; the lookup and ' +
          'the mail happen later, in a job. An address is mailed at most 3 reset links per 15 minutes; further requests ' +
          'mail nothing.',
        body: PasswordResetBody,
        response: { 202: DetailView },
      },
    },
    async (req, reply) => {
      await requestPasswordReset(db, req.body);
      return reply.code(202).send({ detail: RESET_ACCEPTED });
    },
  );

  const tokenStatus = async (token: string, reply: FastifyReply) => {
    const row = await describePasswordToken(db, token);
    noStore(reply);
    return {
      valid: true as const,
      purpose: row.purpose as 'password_reset' | 'invite',
      expires_at: row.expiresAt.toISOString(),
    };
  };
  const tokenStatusDescription =
    'Whether a reset or invitation token can still be used (nothing is used up by asking); 400 `invalid_token` ' +
    'naming `token` when setting the password with it would be refused. Set the password with ' +
    '`POST /api/v1/users/password-reset/confirm/`.';

  app.post(
    '/api/v1/users/password-reset/check',
    {
      schema: {
        operationId: 'checkPasswordResetTokenInBody',
        tags,
        security: [],
        description: `${tokenStatusDescription} The admin console's page \`/admin/set-password\`, which the mailed link opens, asks this first: the token travels in the body, so no URL (a proxy's access log) records it.`,
        body: TokenBody,
        response: { 200: TokenStatusView },
      },
    },
    (req, reply) => tokenStatus(req.body.token, reply),
  );

  app.get(
    '/api/v1/users/password-reset/confirm',
    {
      schema: {
        operationId: 'checkPasswordResetToken',
        tags,
        security: [],
        description: `${tokenStatusDescription} The same as \`POST …/password-reset/check/\` with the token in the query string.`,
        querystring: TokenQuery,
        response: { 200: TokenStatusView },
      },
    },
    (req, reply) => tokenStatus(req.query.token, reply),
  );

  app.post(
    '/api/v1/users/password-reset/confirm',
    {
      schema: {
        operationId: 'confirmPasswordReset',
        tags,
        security: [],
        description:
          'Sets a new password with a reset or invitation token. The token works once; a used, expired or unknown one ' +
          'answers 400 `invalid_token`, as does one whose account has since changed its email or left `active`. ' +
          'Every session of the user ends, and a lock from failed logins lifts.',
        body: PasswordResetConfirmBody,
        response: { 200: DetailView },
      },
    },
    async (req) => {
      await confirmPasswordReset(db, req.body);
      return { detail: 'Your password has been set; sign in with it.' };
    },
  );

  app.post(
    '/api/v1/users/:id/invite',
    {
      config: { auth: { permission: 'users.update' } },
      schema: {
        operationId: 'inviteUser',
        tags,
        description:
          'Mails an active user without a password (a provisioned account) a link to set one, valid 7 days, through ' +
          'the password-reset confirm endpoint. 409 `user_has_password` or `user_not_active` otherwise, and ' +
          '`organization_inactive` while the user’s organization is deactivated.',
        params: UserIdParams,
        response: { 202: InvitationView },
      },
    },
    async (req, reply) => {
      const user = await findUserToManage(db, req.actor, req.params.id);
      const { expiresAt } = await inviteUser(db, app.config, user.id, organizationScopeOf(req.actor));
      return reply.code(202).send({ detail: 'Invitation sent.', expires_at: expiresAt.toISOString() });
    },
  );
};
