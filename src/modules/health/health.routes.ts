import { type FastifyPluginAsyncTypebox, Type } from '@fastify/type-provider-typebox';
import { pingDatabase } from '../../platform/db/client.js';

const HealthView = Type.Object({
  status: Type.Union([Type.Literal('ok'), Type.Literal('unavailable')]),
  database: Type.Union([Type.Literal('ok'), Type.Literal('unreachable')]),
  version: Type.String(),
  uptime_seconds: Type.Number(),
});

const VERSION = process.env.npm_package_version ?? '0.1.0';
// A dead database must not hang the probe: a load balancer needs an answer quickly.
const PING_TIMEOUT_MS = 2000;

export const healthRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const check = async (_req: unknown, reply: { code(n: number): unknown }) => {
    let healthy = true;
    try {
      await Promise.race([
        pingDatabase(app.database.db),
        new Promise((_, reject) => setTimeout(() => reject(new Error('timeout')), PING_TIMEOUT_MS).unref()),
      ]);
    } catch {
      healthy = false;
    }
    reply.code(healthy ? 200 : 503);
    return {
      status: healthy ? ('ok' as const) : ('unavailable' as const),
      database: healthy ? ('ok' as const) : ('unreachable' as const),
      version: VERSION,
      uptime_seconds: Math.round(process.uptime()),
    };
  };
  const schema = {
    tags: ['health'],
    security: [],
    description: 'Liveness and readiness: 200 when the server can serve, 503 while the database is unreachable.',
    response: { 200: HealthView, 503: HealthView },
  };
  app.get('/health', { schema: { ...schema, operationId: 'health' } }, check);
  app.get('/api/v1/users/health', { schema: { ...schema, operationId: 'usersHealth' } }, check);
};
