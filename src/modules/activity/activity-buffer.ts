import { sql } from 'drizzle-orm';
import type pg from 'pg';
import type { Counter } from 'prom-client';
import type { Database, Db } from '../../platform/db/client.js';
import { copyIn, copyText } from './copy-text.js';

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
 * The columns of one request row, in the order of `requestCopyLine`'s fields: those that vary per
 * request first, then those fixed by the status, then those fixed by the route. `xid` keeps its
 * default (sealing reads audit rows only).
 */
const REQUEST_COLUMNS =
  'timestamp, id, organization_id, user_id, actor_type, actor_id, api_key_id, ip_address, user_agent, status, ' +
  'duration_ms, severity, success, kind, activity_type, category, description, method, path';

/** What `onResponse` knows about one request. */
export interface RequestActivity {
  /** Start of the request, epoch milliseconds (fractional). */
  startedAt: number;
  /** uuidv7 */
  id: string;
  actorType: 'user' | 'api_key' | 'anonymous';
  organizationId: string | null;
  userId: string | null;
  apiKeyId: string | null;
  ipAddress: string | null;
  userAgent: string | null;
  method: string;
  /** Route template. */
  route: string;
  status: number;
  durationMs: number;
}

// Formatting a Date costs about as much as the rest of a line: requests of the same second share
// the `YYYY-MM-DDTHH:MM:SS.` part.
let secondStart = Number.NaN;
let secondPrefix = '';

/** Epoch milliseconds with a fraction as an ISO timestamp to the microsecond. */
function isoMicros(ms: number): string {
  const total = Math.floor(ms * 1000);
  const micros = total % 1_000_000;
  const second = (total - micros) / 1000;
  if (second !== secondStart) {
    secondStart = second;
    secondPrefix = new Date(second).toISOString().slice(0, 20);
  }
  return `${secondPrefix}${String(micros).padStart(6, '0')}Z`;
}

// The tail of a line fixed by the route and method (a few dozen of them): built once each.
const routeTails = new Map<string, Map<string, string>>();

function routeTail(method: string, route: string): string {
  let byMethod = routeTails.get(route);
  if (byMethod === undefined) {
    byMethod = new Map();
    routeTails.set(route, byMethod);
  }
  let tail = byMethod.get(method);
  if (tail === undefined) {
    tail = `request\tapi.request\tapi\t${copyText(`${method} ${route}`)}\t${copyText(method)}\t${copyText(route)}\n`;
    byMethod.set(method, tail);
  }
  return tail;
}

/**
 * One request as one line of `COPY activities (REQUEST_COLUMNS) FROM STDIN` text. Severity, success
 * and description are derived from the status and route here rather than per row in SQL.
 */
function requestCopyLine(r: RequestActivity): string {
  const statusPart = r.status >= 500 ? 'warning\tf\t' : r.status >= 400 ? 'info\tf\t' : 'info\tt\t';
  return (
    isoMicros(r.startedAt) +
    '\t' +
    r.id +
    '\t' +
    (r.organizationId ?? '\\N') +
    '\t' +
    (r.userId ?? '\\N') +
    '\t' +
    r.actorType +
    '\t' +
    (r.actorType === 'user' ? (r.userId ?? '\\N') : '\\N') +
    '\t' +
    (r.apiKeyId ?? '\\N') +
    '\t' +
    copyText(r.ipAddress) +
    '\t' +
    copyText(r.userAgent) +
    '\t' +
    r.status +
    '\t' +
    r.durationMs +
    '\t' +
    statusPart +
    routeTail(r.method, r.route)
  );
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
 * Request rows on PostgreSQL, as `COPY … FROM STDIN` text: the server parses a text line per row with
 * no JSON and no expression per column, about a quarter less CPU a row than `json_to_recordset`
 * (bench/activity-writes.ts). The batch commits with `synchronous_commit = off`: a crash may lose
 * the last few hundred milliseconds of committed batches, which breaks no promise (the rows waiting
 * in the buffer are lost with the process anyway, request activity is best effort), and the commit
 * no longer waits for the WAL flush while it holds a pooled connection.
 */
async function copyRequests(pool: pg.Pool, lines: Buffer[]): Promise<void> {
  const text = Buffer.concat(lines);
  const client = await pool.connect();
  try {
    await client.query('begin; set local synchronous_commit = off');
    await copyIn(client, `activities (${REQUEST_COLUMNS})`, text);
    await client.query('commit');
    client.release();
  } catch (err) {
    // A failed COPY leaves the transaction aborted: the connection is closed rather than reused.
    client.release(err as Error);
    throw err;
  }
}

/**
 * Request rows on PGlite, as one JSON parameter: PGlite reads a COPY only from a blob, which costs
 * it twice the CPU of this INSERT (bench/activity-writes.ts).
 */
async function insertRequests(db: Db, rows: RequestActivity[]): Promise<void> {
  await db.execute(sql`
    insert into activities (timestamp, id, kind, activity_type, category, severity, success, organization_id,
      user_id, actor_type, actor_id, api_key_id, description, ip_address, user_agent, method, path, status, duration_ms)
    select to_timestamp(r."startedAt" / 1000), r.id, 'request', 'api.request', 'api',
      case when r.status >= 500 then 'warning' else 'info' end, r.status < 400, r."organizationId", r."userId",
      r."actorType", case when r."actorType" = 'user' then r."userId" end, r."apiKeyId", r.method || ' ' || r.route,
      r."ipAddress", r."userAgent", r.method, r.route, r.status, r."durationMs"
    from json_to_recordset(${JSON.stringify(rows)}::json) as r("startedAt" float8, id uuid, "actorType" text,
      "organizationId" uuid, "userId" uuid, "apiKeyId" uuid, "ipAddress" text, "userAgent" text, method text,
      route text, status smallint, "durationMs" float8)`);
}

/**
 * What the buffer holds: tracked events as rows; requests on PostgreSQL as their COPY lines, encoded
 * when captured so that a flush does not hold the event loop for a whole batch's encoding, and held
 * as bytes: one small object a row for the garbage collector to move rather than the dozens of
 * pieces a concatenated string is made of; requests on PGlite as records for its INSERT.
 */
type Buffered = BufferedActivity | RequestActivity | Buffer;

/** A batch as one or two writes: requests and full rows (tracked events) take different shapes. */
async function writeBatch(database: Database, batch: Buffered[]): Promise<void> {
  const lines: Buffer[] = [];
  const requests: RequestActivity[] = [];
  const events: BufferedActivity[] = [];
  for (const row of batch) {
    if (Buffer.isBuffer(row)) lines.push(row);
    else if ('route' in row) requests.push(row);
    else events.push(row);
  }
  if (lines.length > 0) await copyRequests(database.pool as pg.Pool, lines);
  if (requests.length > 0) await insertRequests(database.db, requests);
  if (events.length > 0) await insertBatch(database.db, events);
}

/**
 * A bounded in-memory queue of activity rows written in bulk off the request path: `push` is a
 * synchronous array append (or a counted drop when full); writes happen by size or every interval,
 * one at a time, and `close` writes whatever is left.
 */
export class ActivityBuffer {
  private rows: Buffered[] = [];
  private readonly copies: boolean;
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private closed = false;
  dropped = 0;
  written = 0;
  failed = 0;

  constructor(
    private readonly database: Database,
    private readonly options: ActivityBufferOptions,
  ) {
    this.copies = database.pool !== undefined;
    this.timer = setInterval(() => void this.flushSoon(true), options.flushIntervalMs);
    this.timer.unref();
  }

  get size(): number {
    return this.rows.length;
  }

  /** Queues one request's row. */
  pushRequest(request: RequestActivity): void {
    this.enqueue(this.copies ? Buffer.from(requestCopyLine(request)) : request);
  }

  /** Queues one tracked event. */
  push(row: BufferedActivity): void {
    this.enqueue(row);
  }

  private enqueue(row: Buffered): void {
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
        await writeBatch(this.database, batch);
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
