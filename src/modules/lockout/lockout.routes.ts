import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import { unlockAccount } from './lockout.service.js';

const UnlockParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
const UnlockedView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  locked: Type.Literal(false),
  status: Type.String({
    description: 'The user’s status after the unlock (`active` unless suspended or deactivated).',
  }),
});

export const lockoutRoutes: FastifyPluginAsyncTypebox = async (app) => {
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
      const { userId, status } = await unlockAccount(app.database.db, req.params.id);
      return { id: userId, locked: false as const, status };
    },
  );
};
