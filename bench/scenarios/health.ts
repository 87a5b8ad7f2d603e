import type { Scenario } from '../scenario.js';

/** GET /health: routing, hooks, serialisation and one `select 1` round trip. */
const scenario: Scenario = {
  name: 'health',
  description: 'GET /health (one `select 1` per request)',
  limit: 'http',
  connections: 50,
  setup: async () => ({ requests: [{ method: 'GET', path: '/health' }] }),
};
export default scenario;
