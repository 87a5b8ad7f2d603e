import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { type Actor, organizationScopeOf } from '../../platform/http/auth.js';
import { instantOf, parseDateTime } from '../../platform/http/date-time.js';
import { AppError, commonErrors } from '../../platform/http/errors.js';
import { decodeCursor, encodeCursor, invalidCursor, toPage } from '../../platform/http/pagination.js';
import { findOrganization } from '../organizations/organizations.queries.js';
import { describeUserAgent } from '../sessions/sessions.service.js';
import { scheduleActivityJobs } from './activity.jobs.js';
import {
  type ActiveUserRow,
  type ActivityFilter,
  type ActivityListRow,
  exportActivityLines,
  findActivity,
  listActiveUsers,
  listActivities,
  streamActivityLines,
} from './activity.queries.js';
import {
  ActiveUsersPage,
  ActivityIdParams,
  ActivityPage,
  ActivityStatsPage,
  ActivityStatsQuery,
  ActivityStreamQuery,
  ActivityView,
  ExportActivitiesQuery,
  ListActivitiesQuery,
  UserSessionsQuery,
} from './activity.schemas.js';
import { toActivityCsvHeader, toActivityView } from './activity.views.js';
import { currentFigures, listStatistics, runningPeriodStart, type StatisticsRow } from './activity-stats.js';
import { type SeedSeverity, type Severity, storedSeverity } from './severity.js';

const tags = ['activity'];
const auth = { permission: 'activities.view' };

const activityNotFound = (id: string) => new AppError(404, 'activity_not_found', `Activity ${id} was not found.`);

/**
 * The organization a request may read: a confined caller's own (whatever they ask), or for a
 * superuser the one named, by code or id (or all): activities show both. `null` means "nothing to
 * show" (an unknown or foreign organization).
 */
async function scopeFor(db: Db, actor: Actor, ref: string | undefined): Promise<string | undefined | null> {
  const own = organizationScopeOf(actor);
  if (ref === undefined) return own;
  const org = await findOrganization(db, isUuid(ref) ? ref.toLowerCase() : ref);
  if (!org || (own !== undefined && org.id !== own)) return null;
  return org.id;
}

interface FilterQuery {
  activity_type?: string | undefined;
  user?: string | undefined;
  actor?: string | undefined;
  category?: string | undefined;
  severity?: Severity | SeedSeverity | undefined;
  success?: boolean | undefined;
  since?: string | undefined;
  until?: string | undefined;
  tag?: string | undefined;
  kind?: string | undefined;
  search?: string | undefined;
}

function filterOf(query: FilterQuery, organizationId: string | undefined): ActivityFilter {
  return {
    organizationId,
    activityType: query.activity_type,
    userId: query.user,
    actorId: query.actor,
    category: query.category,
    severity: query.severity && storedSeverity(query.severity),
    success: query.success,
    since: query.since ? instantOf(query.since, 'since') : undefined,
    until: query.until ? instantOf(query.until, 'until') : undefined,
    tag: query.tag,
    kind: query.kind,
    search: query.search,
  };
}

/** The timestamp text a list cursor carries: microseconds, which a Date would lose. */
const CURSOR_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

function afterOf(cursor: string | undefined): { ts: string; id: string } | undefined {
  if (!cursor) return undefined;
  const [ts, id] = decodeCursor(cursor, 2);
  // Both reach the database as they are: anything else than what a page gave is refused here.
  if (typeof ts !== 'string' || !CURSOR_TIMESTAMP.test(ts) || !parseDateTime(ts)) throw invalidCursor();
  if (typeof id !== 'string' || !isUuid(id)) throw invalidCursor();
  return { ts, id };
}

async function pageOf(db: Db, filter: ActivityFilter, limit: number, cursor: string | undefined) {
  const rows = await listActivities(db, filter, limit, afterOf(cursor));
  const page = toPage(rows, limit, (r: ActivityListRow) => [r.ts, r.id]);
  return { results: page.results.map(toActivityView), next: page.next };
}

function toStatsView(row: StatisticsRow, partial = false) {
  return {
    ...row,
    partial,
    period_start: new Date(row.period_start).toISOString(),
    period_end: new Date(row.period_end).toISOString(),
    success_rate: row.total_activities > 0 ? (row.success_count / row.total_activities) * 100 : null,
  };
}

const EXPORT_BATCH = 5000;

/**
 * Exports running at once on this node. On PostgreSQL an export holds one pooled connection for as
 * long as its client takes to read it (the COPY waits on a slow reader): without a cap, a few
 * stalled downloads could take the connections every other request needs.
 */
export const MAX_CONCURRENT_EXPORTS = 2;

export const activityRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;
  const pool = app.database.pool;
  await scheduleActivityJobs(db);
  let exportsRunning = 0;

  app.get(
    '/api/v1/activities',
    {
      config: { auth },
      schema: {
        operationId: 'listActivities',
        tags,
        description:
          'Audit events, request activity and tracked events, newest first. Organization administrators and ' +
          'viewers see their own organization only.',
        querystring: ListActivitiesQuery,
        response: { 200: ActivityPage },
      },
    },
    async (req) => {
      const scope = await scopeFor(db, req.actor, req.query.organization);
      if (scope === null) return { results: [], next: null };
      return pageOf(db, filterOf(req.query, scope), req.query.limit ?? 50, req.query.cursor);
    },
  );

  app.get(
    '/api/v1/activities/:id',
    {
      config: { auth },
      schema: {
        operationId: 'getActivity',
        tags,
        description:
          'One activity, as the list shows it. What the list would not show the caller (another organization’s, ' +
          'or the platform’s own for an organization administrator) answers 404, as an unknown id does.',
        params: ActivityIdParams,
        response: { 200: ActivityView },
      },
    },
    async (req) => {
      const scope = organizationScopeOf(req.actor);
      // findActivity answers nothing, without a query, for an id that is not a UUIDv7.
      const row = await findActivity(db, req.params.id);
      if (!row || (scope !== undefined && row.organization_id !== scope)) throw activityNotFound(req.params.id);
      return toActivityView(row);
    },
  );

  app.get(
    '/api/v1/activities/export',
    {
      config: { auth },
      schema: {
        operationId: 'exportActivities',
        tags,
        description:
          'The filtered activities, newest first, streamed as NDJSON (one object per line, as in the list) or CSV. ' +
          'A server runs a few exports at once; beyond, 503 `export_busy` with Retry-After.',
        querystring: ExportActivitiesQuery,
        documentedResponse: {
          200: {
            description: 'The activities: one per line in NDJSON, or CSV with a header line.',
            content: {
              'application/x-ndjson': { schema: { type: 'string' } },
              'text/csv': { schema: { type: 'string' } },
            },
          },
        },
      },
    },
    async (req, reply) => {
      if (exportsRunning >= MAX_CONCURRENT_EXPORTS) {
        throw new AppError(503, 'export_busy', 'Other exports are running on this server; retry shortly.', {
          headers: { 'retry-after': '5' },
        });
      }
      // The slot is taken before anything is awaited and held until the response is done or its
      // client gone, whichever comes first (an error answer ends the response too).
      exportsRunning++;
      reply.raw.once('close', () => {
        exportsRunning--;
      });
      const scope = await scopeFor(db, req.actor, req.query.organization);
      const filter = filterOf(req.query, scope ?? undefined);
      const csv = req.query.format === 'csv';
      const format = csv ? 'csv' : 'ndjson';
      async function* lines() {
        if (csv) yield toActivityCsvHeader();
        if (scope === null) return;
        if (pool) {
          // A client gone mid-stream returns this generator early: that destroys the COPY stream,
          // which discards its connection and so ends the COPY on the server.
          yield* await streamActivityLines(pool, filter, format);
          return;
        }
        // PGlite: keyset chunks. The next chunk is queried while this one is sent, so at most two
        // chunks are held. A client gone mid-stream leaves a prefetch nobody awaits: its failure is
        // not unhandled.
        const fetchAfter = (after: { ts: string; id: string } | undefined) => {
          const chunk = exportActivityLines(db, filter, format, EXPORT_BATCH, after);
          chunk.catch(() => undefined);
          return chunk;
        };
        let next = fetchAfter(undefined);
        for (;;) {
          const chunk = await next;
          const more = chunk.count >= EXPORT_BATCH && chunk.last !== null;
          if (more) next = fetchAfter(chunk.last ?? undefined);
          yield* chunk.parts;
          if (!more) return;
        }
      }
      reply
        .header('content-type', csv ? 'text/csv; charset=utf-8' : 'application/x-ndjson')
        .header('content-disposition', `attachment; filename="activities.${csv ? 'csv' : 'ndjson'}"`);
      return reply.send(Readable.from(lines(), { objectMode: false }));
    },
  );

  app.get(
    '/api/v1/activity-streams',
    {
      config: { auth },
      schema: {
        operationId: 'listActivityStream',
        tags,
        description: 'One user’s history (`user`) or one object’s (`object_type` and `object_id`), newest first.',
        querystring: ActivityStreamQuery,
        response: { 200: ActivityPage },
      },
    },
    async (req) => {
      const q = req.query;
      if (!q.user && !(q.object_type && q.object_id)) {
        throw commonErrors.validation([{ field: 'user', message: 'Name a user, or an object_type and object_id.' }]);
      }
      const scope = await scopeFor(db, req.actor, q.organization);
      if (scope === null) return { results: [], next: null };
      const filter = { ...filterOf(q, scope), objectType: q.object_type, objectId: q.object_id };
      return pageOf(db, filter, q.limit ?? 50, q.cursor);
    },
  );

  app.get(
    '/api/v1/activity-stats',
    {
      config: { auth },
      schema: {
        operationId: 'listActivityStats',
        tags,
        description:
          'Hourly or daily figures, newest first: totals, per category, user and system activities, success rate, ' +
          'request duration percentiles. A job stores each hour (and day) once it is over; the first page starts ' +
          'with the period still running, computed on the spot (`partial: true`) unless `until` or `since` leave ' +
          'it out. Superusers get the whole platform unless they name an organization; others get their own ' +
          'organization.',
        querystring: ActivityStatsQuery,
        response: { 200: ActivityStatsPage },
      },
    },
    async (req) => {
      const q = req.query;
      const scope = await scopeFor(db, req.actor, q.organization);
      if (scope === null) return { results: [], next: null };
      const limit = q.limit ?? 50;
      let before: Date | undefined;
      if (q.cursor) {
        const [at] = decodeCursor(q.cursor, 1);
        before = typeof at === 'string' ? parseDateTime(at) : undefined;
        if (!before) throw invalidCursor();
      }
      const periodType = q.period ?? 'hour';
      // The first page starts with the period still running, unless the range asked for leaves it out.
      let live: ReturnType<typeof toStatsView> | undefined;
      const running = runningPeriodStart(periodType);
      const since = q.since ? instantOf(q.since, 'since') : undefined;
      const until = q.until ? instantOf(q.until, 'until') : undefined;
      if (before === undefined && (!until || running < until) && (!since || running >= since)) {
        live = toStatsView(await currentFigures(db, periodType, scope ?? null), true);
        // A stored row of the running period (an aggregation run by hand) gives way to the live one.
        before = running;
      }
      const stored = limit - (live ? 1 : 0);
      const rows = await listStatistics(db, {
        organizationId: scope ?? null,
        periodType,
        ...(since ? { since } : {}),
        ...(until ? { until } : {}),
        ...(before ? { before } : {}),
        limit: stored,
      });
      const results = [...(live ? [live] : []), ...rows.slice(0, stored).map((r) => toStatsView(r))];
      const last = results[results.length - 1];
      return { results, next: rows.length > stored && last ? encodeCursor([last.period_start]) : null };
    },
  );

  app.get(
    '/api/v1/activities/active-users',
    {
      config: { auth },
      schema: {
        operationId: 'listActiveUsers',
        tags,
        description:
          'Who is active now: users whose last request is within `active_within` minutes, most recent first (then by ' +
          'user id), with their current path, IP and the device, browser and OS of their user agent. A user whose ' +
          'request comes in while later pages are read moves ahead of the cursor, and is not on those pages.',
        querystring: UserSessionsQuery,
        response: { 200: ActiveUsersPage },
      },
    },
    async (req) => {
      const scope = await scopeFor(db, req.actor, req.query.organization);
      if (scope === null) return { results: [], next: null };
      const limit = req.query.limit ?? 100;
      const rows = await listActiveUsers(db, scope, req.query.active_within ?? 5, limit, afterOf(req.query.cursor));
      const page = toPage(rows, limit, (r: ActiveUserRow) => [r.ts, r.user_id]);
      return {
        results: page.results.map((r) => {
          const device = describeUserAgent(r.user_agent ?? undefined);
          return {
            user_id: r.user_id,
            email: r.email,
            username: r.username,
            organization: r.organization,
            organization_id: r.organization_id,
            last_activity: new Date(r.last_activity).toISOString(),
            current_path: r.current_path,
            method: r.method,
            ip_address: r.ip_address,
            device_type: device.deviceType,
            browser: device.browser,
            os: device.os,
          };
        }),
        next: page.next,
      };
    },
  );
};
