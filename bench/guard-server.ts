// The service as `npm start` runs it, plus two probe routes that differ only in their access rule:
// `GET /bench/authenticated` (any signed-in user) and `GET /bench/guarded` (`users.view`). Comparing
// them in one run isolates what the permission check costs.
import { Type } from '@fastify/type-provider-typebox';
import type { FastifyPluginAsync } from 'fastify';
import { loadConfig } from '../src/config.js';
import { stopOnSignals } from '../src/platform/shutdown.js';
import { startServer } from '../src/server.js';

const Ok = Type.Object({ ok: Type.Boolean() });

const probes: FastifyPluginAsync = async (app) => {
  app.get(
    '/bench/authenticated',
    { config: { auth: 'authenticated' }, schema: { response: { 200: Ok } } },
    async () => ({
      ok: true,
    }),
  );
  app.get(
    '/bench/guarded',
    { config: { auth: { permission: 'users.view' } }, schema: { response: { 200: Ok } } },
    async () => ({
      ok: true,
    }),
  );
};

const server = await startServer(loadConfig(), { worker: true, plugins: [probes] });
stopOnSignals(server.app.log, 'guard-server', () => server.stop());
