import { isMissingRoute, isSkip, json, notAvailable, type Scenario } from '../scenario.js';

const PATH = '/api/token/refresh/';

/**
 * Refresh-token rotation. Every request must present a fresh refresh token (a replayed one revokes
 * its session), so the tokens form chains: each request takes a token from a shared pool and the
 * rotated token in its answer goes back into the pool. The pool holds more chains than connections.
 */
const scenario: Scenario = {
  name: 'refresh',
  description: 'POST /api/token/refresh/ (rotation, a fresh token per request)',
  limit: 'pg-write',
  connections: 50,
  setup: async (ctx) => {
    const pool: string[] = [];
    for (let i = 0; i < 60; i++) {
      const tokens = await ctx.login();
      if (isSkip(tokens)) return tokens;
      pool.push(tokens.refresh);
    }
    const probe = await ctx.call('POST', PATH, { body: { refresh: pool.pop() } });
    if (isMissingRoute(probe)) return notAvailable('POST', PATH);
    if (probe.status !== 200 || typeof probe.body?.refresh !== 'string') {
      return { skip: `POST ${PATH} answers ${probe.status}: ${JSON.stringify(probe.body)}` };
    }
    pool.push(probe.body.refresh);
    return {
      note: `${pool.length} rotating chains`,
      requests: [
        {
          method: 'POST',
          path: PATH,
          headers: json,
          setupRequest: (request) => ({ ...request, body: JSON.stringify({ refresh: pool.shift() ?? 'pool-empty' }) }),
          onResponse: (status, body) => {
            if (status !== 200) return;
            const next = (JSON.parse(body) as { refresh?: string }).refresh;
            if (next) pool.push(next);
          },
        },
      ],
    };
  },
};
export default scenario;
