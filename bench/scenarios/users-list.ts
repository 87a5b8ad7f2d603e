import { bearer, deepCursors, listAccess, pagePath } from '../lib/users-list.js';
import { isSkip, pick, type Scenario } from '../scenario.js';

const DEPTH = Number(process.env.BENCH_PAGE_DEPTH || 1000);

/** Keyset pages of all users (newest first) at depth: the cost must not grow with the page number. */
const scenario: Scenario = {
  name: 'users-list',
  description: `GET /api/v1/users/?limit=50&cursor=… (pages up to ${DEPTH} deep)`,
  limit: 'pg-read',
  connections: 10,
  setup: async (ctx) => {
    const access = await listAccess(ctx);
    if (isSkip(access)) return access;
    const walk = await deepCursors(ctx, access.token, 'sort=-date_joined', DEPTH);
    if (isSkip(walk)) return walk;
    return {
      note: `last ${walk.cursors.length} of ${walk.depth} pages (~${(walk.depth * 50).toLocaleString('en-US')} rows deep)`,
      requests: [
        {
          method: 'GET',
          headers: bearer(access.token),
          setupRequest: (request) => ({ ...request, path: pagePath('sort=-date_joined', pick(walk.cursors)) }),
        },
      ],
    };
  },
};
export default scenario;
