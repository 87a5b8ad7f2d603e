import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Histogram, Registry } from 'prom-client';
import { secretsEqual } from './crypto/tokens.js';
import { AppError } from './http/errors.js';

/** One registry per app, so tests that build several apps do not collide. */
export function registerMetrics(app: FastifyInstance): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by route template and status (its _count is the request total)',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  app.decorate('metrics', registry);
  app.addHook('onResponse', async (request, reply) => {
    // The route template, never the raw URL: ids in paths would make unbounded label sets.
    const labels = { method: request.method, route: request.routeOptions.url ?? 'unmatched', status: reply.statusCode };
    duration.observe(labels, reply.elapsedTime / 1000);
  });
  const token = app.config.metricsToken;
  app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
    // Route names, timings and process figures: public unless METRICS_TOKEN says who may scrape them.
    if (token !== undefined) {
      const sent = /^Bearer (.+)$/i.exec(request.headers.authorization ?? '')?.[1];
      if (sent === undefined || !secretsEqual(sent, token)) {
        reply.header('www-authenticate', 'Bearer realm="metrics"');
        throw new AppError(401, 'not_authenticated', 'This endpoint needs the METRICS_TOKEN as a Bearer token.');
      }
    }
    reply.type(registry.contentType);
    return registry.metrics();
  });
  return registry;
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry;
  }
}
