import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import type { Database } from '../../platform/db/client.js';
import { newIdBytes } from '../../platform/db/ids.js';
import { createOutageLog } from '../../platform/outage-log.js';
import { apiKeyRowId } from '../api-keys/env-key.js';
import { ActivityBuffer, type RequestActivity } from './activity-buffer.js';
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
 * IP, user agent) into the bounded activity buffer from `onResponse`: the row is encoded for COPY
 * into the buffer's bytes at once, nothing awaited. The buffer is written every second or by batch
 * and on close; when it is full, requests go on and the drop is counted
 * (`activity_requests_dropped_total`).
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
  const buffer = new ActivityBuffer(database, {
    maxRows: config.activityBufferSize,
    batchSize: config.activityBatchSize,
    flushIntervalMs: 1000,
    counters,
    onError: (err) => app.log.warn({ err }, 'activity write failed'),
    outage: createOutageLog(app.log, 'activity writer', (err) => app.log.warn({ err }, 'activity write failed')),
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

  // Route templates are few: whether one is tracked is decided once.
  const tracked = new Map<string, boolean>();
  const isTracked = (route: string): boolean => {
    const result = !UNTRACKED.test(route);
    tracked.set(route, result);
    return result;
  };

  app.addHook('onResponse', (request: FastifyRequest, reply: FastifyReply, done: () => void) => {
    const route = request.routeOptions.url;
    if (route !== undefined && (tracked.get(route) ?? isTracked(route)) === false) return done();
    const actor = request.actor;
    const durationMs = reply.elapsedTime;
    const userAgent = request.headers['user-agent'];
    let actorType: RequestActivity['actorType'] = 'anonymous';
    let organizationId: string | null = null;
    let userId: string | null = null;
    let apiKeyId: string | null = null;
    if (actor && actor.kind !== 'anonymous') {
      actorType = actor.kind;
      organizationId = actor.organizationId;
      if (actor.kind === 'user') userId = actor.userId;
      else if (actor.kind === 'api_key') apiKeyId = apiKeyRowId(actor.apiKeyId);
    }
    buffer.pushRequest({
      startedAt: Date.now() - durationMs,
      id: newIdBytes(),
      actorType,
      organizationId,
      userId,
      apiKeyId,
      ipAddress: request.ip ?? null,
      userAgent: userAgent
        ? userAgent.length > MAX_USER_AGENT
          ? userAgent.slice(0, MAX_USER_AGENT)
          : userAgent
        : null,
      method: request.method,
      route: route ?? '(unmatched)',
      status: reply.statusCode,
      durationMs,
    });
    done();
  });
}
