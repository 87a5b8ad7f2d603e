import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import { uuidv7 } from 'uuidv7';
import type { Database } from '../../platform/db/client.js';
import { ActivityBuffer } from './activity-buffer.js';
import { createTracker } from './tracker.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Request activity and tracked events waiting for their bulk INSERT. */
    activityBuffer: ActivityBuffer;
  }
}

/** Paths whose requests are not activity: probes, scrapes and the documentation. */
const UNTRACKED = /^\/(metrics|health|api\/docs|api\/openapi\.json|favicon)/;
const MAX_USER_AGENT = 512;

/**
 * Records every request (method, route template, status, duration, user, organization, API key,
 * IP, user agent) into the bounded activity buffer from `onResponse`: one object appended to an
 * array per request, nothing awaited. The buffer is written every second or by batch and on close;
 * when it is full, requests go on and the drop is counted (`activity_requests_dropped_total`).
 * With ACTIVITY_TRACKING=off only tracked events use the buffer. Also decorates `app.tracker`.
 */
export function installRequestTracking(app: FastifyInstance, database: Database): void {
  const config = app.config;
  const counters = {
    dropped: new Counter({
      name: 'activity_requests_dropped_total',
      help: 'Activity rows dropped because the in-memory buffer was full',
      registers: [app.metrics],
    }),
    written: new Counter({
      name: 'activity_rows_written_total',
      help: 'Activity rows written by the bulk writer',
      registers: [app.metrics],
    }),
    failed: new Counter({
      name: 'activity_rows_failed_total',
      help: 'Activity rows lost because their bulk INSERT failed',
      registers: [app.metrics],
    }),
  };
  const buffer = new ActivityBuffer(database.db, {
    maxRows: config.activityBufferSize,
    batchSize: config.activityBatchSize,
    flushIntervalMs: 1000,
    counters,
    onError: (err) => app.log.warn({ err }, 'activity write failed'),
  });
  new Gauge({
    name: 'activity_buffer_rows',
    help: 'Activity rows waiting in memory',
    registers: [app.metrics],
    collect() {
      this.set(buffer.size);
    },
  });
  app.decorate('activityBuffer', buffer);
  app.decorate('tracker', createTracker(buffer));
  app.addHook('onClose', async () => {
    await buffer.close();
  });
  if (!config.activityTracking) return;

  app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const route = request.routeOptions.url;
    if (route !== undefined && UNTRACKED.test(route)) return done();
    const actor = request.actor;
    const status = reply.statusCode;
    const durationMs = reply.elapsedTime;
    const path = route ?? '(unmatched)';
    const userAgent = request.headers['user-agent'];
    buffer.push({
      timestamp: new Date(Date.now() - durationMs),
      id: uuidv7(),
      kind: 'request',
      activityType: 'api.request',
      category: 'api',
      severity: status >= 500 ? 'warning' : 'info',
      success: status < 400,
      organizationId: actor && actor.kind !== 'anonymous' ? actor.organizationId : null,
      userId: actor?.kind === 'user' ? actor.userId : null,
      actorType: actor && actor.kind !== 'anonymous' ? actor.kind : 'anonymous',
      actorId: actor?.kind === 'user' ? actor.userId : null,
      apiKeyId: actor?.kind === 'api_key' ? actor.apiKeyId : null,
      description: `${request.method} ${path}`,
      details: null,
      tags: null,
      ipAddress: request.ip ?? null,
      userAgent: userAgent ? userAgent.slice(0, MAX_USER_AGENT) : null,
      method: request.method,
      path,
      status,
      durationMs,
    });
    done();
  });
}
