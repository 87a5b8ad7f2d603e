import { sql } from 'drizzle-orm';
import type { Counter } from 'prom-client';
import type { Db } from '../../platform/db/client.js';

/** One buffered activity (request or tracked event), as the bulk INSERT takes it. */
export interface BufferedActivity {
  timestamp: Date;
  id: string;
  kind: 'request' | 'event';
  activityType: string;
  category: string;
  severity: string;
  success: boolean;
  organizationId: string | null;
  userId: string | null;
  actorType: string;
  actorId: string | null;
  apiKeyId: string | null;
  description: string;
  details: Record<string, unknown> | null;
  tags: string[] | null;
  ipAddress: string | null;
  userAgent: string | null;
  method: string | null;
  path: string | null;
  status: number | null;
  durationMs: number | null;
}

/**
 * One request as `onResponse` captures it: a flat record of primitives under short keys, serialized
 * as is into the batch's JSON. The constant columns (kind, type, category, details, tags) and those
 * derived from the status and route (severity, success, description) are filled in by the INSERT.
 */
export interface RequestActivity {
  /** Start of the request, epoch milliseconds (fractional). */
  t: number;
  /** uuidv7 */
  i: string;
  /** actor type: 'user', 'api_key' or 'anonymous' */
  a: string;
  /** organization id */
  o: string | null;
  /** user id (also the actor id for a user) */
  u: string | null;
  /** API key id */
  k: string | null;
  /** IP address */
  p: string | null;
  /** user agent (truncated) */
  g: string | null;
  m: string;
  /** route template */
  r: string;
  s: number;
  /** duration, ms */
  d: number;
}

export interface ActivityBufferOptions {
  /** Rows held in memory at most; beyond, new rows are dropped and counted. */
  maxRows: number;
  /** Rows per INSERT; a full batch is written at once, a partial one within `flushIntervalMs`. */
  batchSize: number;
  flushIntervalMs: number;
  onError(err: unknown): void;
  counters?: { dropped: Counter; written: Counter; failed: Counter };
}

/**
 * The whole batch as one JSON parameter expanded by `json_to_recordset`: one round trip and one
 * small statement for hundreds of rows, cheaper to build than a VALUES list with 21 parameters a
 * row, and the same on both drivers.
 */
async function insertBatch(db: Db, rows: BufferedActivity[]): Promise<void> {
  await db.execute(sql`
    insert into activities (timestamp, id, kind, activity_type, category, severity, success, organization_id,
      user_id, actor_type, actor_id, api_key_id, description, details, tags, ip_address, user_agent,
      method, path, status, duration_ms)
    select r."timestamp", r.id, r.kind, r."activityType", r.category, r.severity, r.success, r."organizationId",
      r."userId", r."actorType", r."actorId", r."apiKeyId", r.description, coalesce(r.details, '{}'::jsonb),
      coalesce(r.tags, '{}'::text[]), r."ipAddress", r."userAgent", r.method, r.path, r.status, r."durationMs"
    from json_to_recordset(${JSON.stringify(rows)}::json) as r("timestamp" timestamptz, id uuid, kind text,
      "activityType" text, category text, severity text, success boolean, "organizationId" uuid, "userId" uuid,
      "actorType" text, "actorId" uuid, "apiKeyId" uuid, description text, details jsonb, tags text[],
      "ipAddress" text, "userAgent" text, method text, path text, status smallint, "durationMs" float8)`);
}

/**
 * Request rows: the compact records of `RequestActivity`, the rest of each row is constant or
 * derived here (description, severity and success from the method, route and status).
 */
async function insertRequests(db: Db, rows: RequestActivity[]): Promise<void> {
  await db.execute(sql`
    insert into activities (timestamp, id, kind, activity_type, category, severity, success, organization_id,
      user_id, actor_type, actor_id, api_key_id, description, ip_address, user_agent, method, path, status, duration_ms)
    select to_timestamp(r.t / 1000), r.i, 'request', 'api.request', 'api',
      case when r.s >= 500 then 'warning' else 'info' end, r.s < 400, r.o, r.u, r.a,
      case when r.a = 'user' then r.u end, r.k, r.m || ' ' || r.r, r.p, r.g, r.m, r.r, r.s, r.d
    from json_to_recordset(${JSON.stringify(rows)}::json) as r(t float8, i uuid, a text, o uuid, u uuid, k uuid,
      p text, g text, m text, r text, s smallint, d float8)`);
}

const isRequest = (row: BufferedActivity | RequestActivity): row is RequestActivity => 'r' in row;

/** A batch as one or two INSERTs: request records and full rows (tracked events) take different shapes. */
async function writeBatch(db: Db, batch: (BufferedActivity | RequestActivity)[]): Promise<void> {
  const requests: RequestActivity[] = [];
  const events: BufferedActivity[] = [];
  for (const row of batch) {
    if (isRequest(row)) requests.push(row);
    else events.push(row);
  }
  if (requests.length > 0) await insertRequests(db, requests);
  if (events.length > 0) await insertBatch(db, events);
}

/**
 * A bounded in-memory queue of activity rows written in bulk off the request path: `push` is a
 * synchronous array append (or a counted drop when full); writes happen by size or every interval,
 * one at a time, and `close` writes whatever is left.
 */
export class ActivityBuffer {
  private rows: (BufferedActivity | RequestActivity)[] = [];
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private closed = false;
  dropped = 0;
  written = 0;
  failed = 0;

  constructor(
    private readonly db: Db,
    private readonly options: ActivityBufferOptions,
  ) {
    this.timer = setInterval(() => void this.flushSoon(true), options.flushIntervalMs);
    this.timer.unref();
  }

  get size(): number {
    return this.rows.length;
  }

  push(row: BufferedActivity | RequestActivity): void {
    if (this.rows.length >= this.options.maxRows || this.closed) {
      this.dropped++;
      this.options.counters?.dropped.inc();
      return;
    }
    this.rows.push(row);
    if (this.rows.length >= this.options.batchSize && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        void this.flushSoon();
      });
    }
  }

  private flushSoon(all = false): Promise<void> {
    if (!this.writing && this.rows.length > 0) {
      this.writing = this.writeBatches(all).finally(() => {
        this.writing = undefined;
      });
    }
    return this.writing ?? Promise.resolve();
  }

  /**
   * Writes full batches (all rows when `all`). A failed batch is counted and dropped: request
   * activity is best effort, and holding it would only fill memory while the database is away.
   */
  private async writeBatches(all: boolean): Promise<void> {
    while (this.rows.length > 0 && (all || this.rows.length >= this.options.batchSize)) {
      const batch = this.rows.splice(0, this.options.batchSize);
      try {
        await writeBatch(this.db, batch);
        this.written += batch.length;
        this.options.counters?.written.inc(batch.length);
      } catch (err) {
        this.failed += batch.length;
        this.options.counters?.failed.inc(batch.length);
        this.options.onError(err);
      }
      if (!all && this.rows.length < this.options.batchSize) return;
    }
  }

  /** Writes everything buffered now (tests, shutdown). */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    while (this.rows.length > 0) await this.flushSoon(true);
  }

  /** Stops the timer, refuses new rows, and writes what is left. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    this.closed = true;
  }
}
