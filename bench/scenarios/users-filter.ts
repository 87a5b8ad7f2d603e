import { bearer, deepCursors, listAccess, pagePath } from '../lib/users-list.js';
import { isSkip, pick, type Scenario } from '../scenario.js';

const DEPTH = Number(process.env.BENCH_PAGE_DEPTH || 1000);

/** Keyset pages filtered by organization and status, deep into one organization. */
const scenario: Scenario = {
  name: 'users-filter',
  description: `GET /api/v1/users/?organization=…&status=active&cursor=… (pages up to ${DEPTH} deep)`,
  limit: 'pg-read',
  connections: 10,
  setup: async (ctx) => {
    const access = await listAccess(ctx);
    if (isSkip(access)) return access;
    const query = `organization=${ctx.seeded.organizations[3] ?? ctx.seeded.organizations[0]}&status=active`;
    const walk = await deepCursors(ctx, access.token, query, DEPTH);
    if (isSkip(walk)) return walk;
    return {
      note: `last ${walk.cursors.length} of ${walk.depth} pages of one organization`,
      requests: [
        {
          method: 'GET',
          headers: bearer(access.token),
          setupRequest: (request) => ({ ...request, path: pagePath(query, pick(walk.cursors)) }),
        },
      ],
    };
  },
};
export default scenario;
