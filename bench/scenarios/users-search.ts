import { bearer, listAccess, PAGE_SIZE, USERS_PATH } from '../lib/users-list.js';
import { isSkip, type Scenario } from '../scenario.js';

/**
 * `?search=<prefix>` over email, username and names, with prefixes of every selectivity: `user1`
 * matches ~11 % of the seeded users, `user123456` one or a handful.
 */
const scenario: Scenario = {
  name: 'users-search',
  description: 'GET /api/v1/users/?search=<prefix>&limit=50 (random prefixes of seeded emails)',
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
            return { ...request, path: `${USERS_PATH}?search=${prefix}&limit=${PAGE_SIZE}` };
          },
        },
      ],
    };
  },
};
export default scenario;
