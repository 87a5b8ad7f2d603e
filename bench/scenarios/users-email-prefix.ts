import { bearer, listAccess, PAGE_SIZE, USERS_PATH } from '../lib/users-list.js';
import { isSkip, type Scenario } from '../scenario.js';

/** `?email=<prefix>&sort=email`: the index-backed email prefix search, in email order. */
const scenario: Scenario = {
  name: 'users-email-prefix',
  description: 'GET /api/v1/users/?email=<prefix>&sort=email&limit=50',
  limit: 'pg-read',
  connections: 10,
  setup: async (ctx) => {
    const access = await listAccess(ctx);
    if (isSkip(access)) return access;
    const users = ctx.seeded.users;
    return {
      note: 'prefixes of 1–7 digits after "user"',
      requests: [
        {
          method: 'GET',
          headers: bearer(access.token),
          setupRequest: (request) => {
            const n = String(Math.floor(Math.random() * users));
            const prefix = `user${n.slice(0, 1 + Math.floor(Math.random() * n.length))}`;
            return { ...request, path: `${USERS_PATH}?email=${prefix}&sort=email&limit=${PAGE_SIZE}` };
          },
        },
      ],
    };
  },
};
export default scenario;
