import { bearer, isSkip, pick, probe, type Scenario } from '../scenario.js';

/** An authenticated read of one user by id: token check, permission check, one primary-key SELECT. */
const scenario: Scenario = {
  name: 'user-by-id',
  description: 'GET /api/v1/users/{id}/ (superuser Bearer token)',
  limit: 'pg-read',
  connections: 50,
  setup: async (ctx) => {
    const tokens = await ctx.login();
    if (isSkip(tokens)) return tokens;
    const ids = ctx.seeded.sampleUserIds.length > 0 ? ctx.seeded.sampleUserIds : [tokens.user.id];
    const missing = await probe(ctx, `/api/v1/users/${ids[0]}/`, tokens.access);
    if (missing) return missing;
    return {
      note: ids.length > 1 ? `${ids.length} seeded ids` : 'own id',
      requests: [
        {
          method: 'GET',
          headers: bearer(tokens.access),
          setupRequest: (request) => ({ ...request, path: `/api/v1/users/${pick(ids)}/` }),
        },
      ],
    };
  },
};
export default scenario;
