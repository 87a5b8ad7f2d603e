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
 * The columns of one request row, in the order of `requestCopyLine`'s fields. `kind`, `activity_type`
 * and `category` are constants of every line; `xid` keeps its default (sealing reads audit rows only).
 */
const REQUEST_COLUMNS =
  'timestamp, id, kind, activity_type, category, severity, success, organization_id, user_id, actor_type, ' +
  'actor_id, api_key_id, description, ip_address, user_agent, method, path, status, duration_ms';

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

/** Epoch milliseconds with a fraction as an ISO timestamp to the microsecond. */
function isoMicros(ms: number): string {
  const whole = Math.floor(ms);
  const micros = Math.floor((ms - whole) * 1000);
  const iso = new Date(whole).toISOString();
  return `${iso.slice(0, 23)}${micros < 10 ? '00' : micros < 100 ? '0' : ''}${micros}Z`;
}

/**
 * One request as one line of `COPY activities (REQUEST_COLUMNS) FROM STDIN` text: the row is encoded
 * once, when it is captured, and a batch is these lines joined. Severity, success and description
 * are derived from the status and route here rather than per row in SQL.
 */
export function requestCopyLine(r: RequestActivity): string {
  const actorId = r.actorType === 'user' ? r.userId : null;
  return (
    `${isoMicros(r.startedAt)}\t${r.id}\trequest\tapi.request\tapi\t${r.status >= 500 ? 'warning' : 'info'}\t` +
    `${r.status < 400 ? 't' : 'f'}\t${r.organizationId ?? '\\N'}\t${r.userId ?? '\\N'}\t${r.actorType}\t` +
    `${actorId ?? '\\N'}\t${r.apiKeyId ?? '\\N'}\t${copyText(`${r.method} ${r.route}`)}\t${copyText(r.ipAddress)}\t` +
    `${copyText(r.userAgent)}\t${copyText(r.method)}\t${copyText(r.route)}\t${r.status}\t${r.durationMs}\n`
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
 * Request rows as `COPY … FROM STDIN` text: PostgreSQL parses a text line per row with no JSON
 * or expression per column, about a third less server CPU a row than `json_to_recordset`
 * (bench/activity-writes.ts). On PostgreSQL the batch commits with `synchronous_commit = off`: a
 * crash may lose the last few hundred milliseconds of committed batches, which costs nothing that
 * is promised (the rows waiting in the buffer are lost with the process anyway); the flush is best
 * effort, and the commit no longer waits for the WAL flush. PGlite reads the same text as a blob.
 */
async function copyRequests(database: Database, lines: string[]): Promise<void> {
  const text = lines.join('');
  const target = `activities (${REQUEST_COLUMNS})`;
  if (database.pglite) {
    await copyIn(database.pglite, target, text);
    return;
  }
  const client = await (database.pool as pg.Pool).connect();
  try {
    await client.query('begin; set local synchronous_commit = off');
    await copyIn(client, target, text);
    await client.query('commit');
    client.release();
  } catch (err) {
    // A failed COPY leaves the transaction aborted; the connection is dropped rather than reused.
    client.release(err as Error);
    throw err;
  }
}

/** A batch as one or two writes: request lines and full rows (tracked events) take different shapes. */
async function writeBatch(database: Database, batch: (BufferedActivity | string)[]): Promise<void> {
  const requests: string[] = [];
  const events: BufferedActivity[] = [];
  for (const row of batch) {
    if (typeof row === 'string') requests.push(row);
    else events.push(row);
  }
  if (requests.length > 0) await copyRequests(database, requests);
  if (events.length > 0) await insertBatch(database.db, events);
}

/**
 * A bounded in-memory queue of activity rows written in bulk off the request path: `push` is a
 * synchronous array append (or a counted drop when full); writes happen by size or every interval,
 * one at a time, and `close` writes whatever is left.
 */
export class ActivityBuffer {
  /** Tracked events as rows, requests as their COPY lines (`requestCopyLine`). */
  private rows: (BufferedActivity | string)[] = [];
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
    this.timer = setInterval(() => void this.flushSoon(true), options.flushIntervalMs);
    this.timer.unref();
  }

  get size(): number {
    return this.rows.length;
  }

  push(row: BufferedActivity | string): void {
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
