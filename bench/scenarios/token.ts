import { isSkip, json, type Scenario } from '../scenario.js';

/** Password logins: bound by argon2id, so the limit is the verifications/s measured in the same run. */
const scenario: Scenario = {
  name: 'token',
  description: 'POST /api/token/ (password login of the superuser)',
  limit: 'argon2',
  connections: 8,
  setup: async (ctx) => {
    const first = await ctx.login();
    if (isSkip(first)) return first;
    return {
      requests: [
        {
          method: 'POST',
          path: '/api/token/',
          headers: json,
          body: JSON.stringify({ email: ctx.admin.email, password: ctx.admin.password }),
        },
      ],
    };
  },
};
export default scenario;
