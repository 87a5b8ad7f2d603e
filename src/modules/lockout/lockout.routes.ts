import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import { organizationScopeOf } from '../../platform/http/auth.js';
import { userErrors } from '../users/users.errors.js';
import { findUserById } from '../users/users.queries.js';
import { findUserToManage } from '../users/users.service.js';
import { findLockout } from './lockout.queries.js';
import { unlockAccount } from './lockout.service.js';

const UnlockParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const UnlockedView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  locked: Type.Literal(false),
  status: Type.String({
    description: 'The user’s status after the unlock (`active` unless suspended or deactivated).',
  }),
});

const LockoutView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  locked: Type.Boolean({ description: 'Locked by failed logins right now.' }),
  locked_until: Type.Union([Type.String({ format: 'date-time' }), Type.Null()], {
    description: 'When the current lock lifts by itself; null when not locked.',
  }),
  failed_attempts: Type.Integer({ description: 'Failed logins counted in the current window.' }),
});

export const lockoutRoutes: FastifyPluginAsyncTypebox = async (app) => {
  app.get(
    '/api/v1/users/:id/lockout',
    {
      config: { auth: { permission: 'users.view' } },
      schema: {
        operationId: 'getUserLockout',
        tags: ['users'],
        description: 'Whether failed logins have locked the account, until when, and how many failures are counted.',
        params: UnlockParams,
        response: { 200: LockoutView },
      },
    },
    async (req) => {
      const user = await findUserById(app.database.db, req.params.id, organizationScopeOf(req.actor));
      if (!user) throw userErrors.notFound(req.params.id);
      const state = await findLockout(app.database.db, user);
      const lockedUntil = state?.lockedUntil && state.lockedUntil.getTime() > Date.now() ? state.lockedUntil : null;
      return {
        id: user.id,
        locked: lockedUntil !== null,
        locked_until: lockedUntil?.toISOString() ?? null,
        failed_attempts: lockedUntil ? 0 : (state?.failedCount ?? 0),
      };
    },
  );

  app.post(
    '/api/v1/users/:id/unlock',
    {
      config: { auth: { permission: 'users.update' } },
      schema: {
        operationId: 'unlockUser',
        tags: ['users'],
        description:
          'Lifts a lock before its time: failed logins are forgotten, and a `locked` status becomes `active`. ' +
          `Accounts lock after LOCKOUT_THRESHOLD failed logins within LOCKOUT_WINDOW seconds (defaults 5 in 15 min), for ` +
          'LOCKOUT_DURATION seconds (default 15 min), ending their sessions; while locked, a login answers the same 401 ' +
          'as a wrong password, whatever the password.',
        params: UnlockParams,
        response: { 200: UnlockedView },
      },
    },
    async (req) => {
      const user = await findUserToManage(app.database.db, req.actor, req.params.id);
      const { userId, status } = await unlockAccount(app.database.db, user.id, user.organizationId, req.actor);
      return { id: userId, locked: false as const, status };
    },
  );
};
