// The HTTP ceiling: a bare Fastify route in the same process model as the service (one Node
// process started with `node --import tsx`, loopback, keep-alive), without logging, plugins or a database.
import Fastify from 'fastify';

const app = Fastify({ logger: false });
app.get(
  '/health',
  {
    schema: {
      response: { 200: { type: 'object', properties: { status: { type: 'string' } }, required: ['status'] } },
    },
  },
  async () => ({ status: 'ok' }),
);
await app.listen({ host: '127.0.0.1', port: Number(process.env.PORT) });
process.once('SIGTERM', () => {
  app.close().then(() => process.exit(0));
});
