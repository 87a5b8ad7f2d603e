import { bearer, isSkip, probe, type Scenario } from '../scenario.js';

const PATH = '/api/v1/users/validate-token/';

/** A token-only route: signature and revocation checks; ideally no database round trip on the hot path. */
const scenario: Scenario = {
  name: 'validate-token',
  description: 'GET /api/v1/users/validate-token/ (Bearer access token)',
  limit: 'http',
  connections: 50,
  setup: async (ctx) => {
    const tokens = await ctx.login();
    if (isSkip(tokens)) return tokens;
    const missing = await probe(ctx, PATH, tokens.access);
    if (missing) return missing;
    return { requests: [{ method: 'GET', path: PATH, headers: bearer(tokens.access) }] };
  },
};
export default scenario;
