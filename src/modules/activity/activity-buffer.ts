import { sql } from 'drizzle-orm';
import type { Counter } from 'prom-client';
import { type Database, type Db, unreachableDatabaseReason } from '../../platform/db/client.js';
import type { OutageLog } from '../../platform/outage-log.js';
import { copyRequestRows, type RequestActivity, RequestRows } from './request-rows.js';

export type { RequestActivity } from './request-rows.js';

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

export interface ActivityBufferOptions {
  /** Rows held in memory at most; beyond, new rows are dropped and counted. */
  maxRows: number;
  /**
   * Rows per INSERT or COPY (on PostgreSQL request rows go at least `COPY_ROWS` at a time); a full
   * batch is written at once, a partial one within `flushIntervalMs`.
   */
  batchSize: number;
  flushIntervalMs: number;
  /** A row or write that failed for any reason but an unreachable database. */
  onError(err: unknown): void;
  /** Told of writes held back because the database cannot be reached, and of the next one that succeeds. */
  outage?: OutageLog;
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
 * Request rows per COPY on PostgreSQL, at least. Measured with binary COPYs of 60,000 request rows
 * in alternating rounds: 5.5 µs of PostgreSQL CPU a row in COPYs of 500, 4.8 in COPYs of 2,000, 4.75
 * in COPYs of 4,000; the writing process spends a quarter less a row as well. Not on PGlite, whose
 * COPY holds its one session (7 ms for 500 rows, every other query waiting): there a COPY takes
 * `batchSize` rows.
 */
const COPY_ROWS = 2000;

/**
 * A bounded in-memory queue of activity rows written in bulk off the request path: a push is a
 * synchronous append (or a counted drop when full); writes happen by size or every interval, one
 * at a time, and `close` writes whatever is left. Request rows are held encoded for COPY
 * (`RequestRows`), apart from tracked events.
 */
export class ActivityBuffer {
  /** Tracked events. */
  private rows: BufferedActivity[] = [];
  private readonly requests: RequestRows;
  private writing: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private scheduled = false;
  private closed = false;
  /** Rows being written: still held, so they count against `maxRows`. */
  private inFlight = 0;
  /** The last write found the database unreachable: its rows are back, and wait for the next interval. */
  private held = false;
  dropped = 0;
  written = 0;
  failed = 0;

  constructor(
    private readonly database: Database,
    private readonly options: ActivityBufferOptions,
  ) {
    // A COPY's statement and transaction cost is spread over COPY_ROWS rows on PostgreSQL, unless
    // a quarter of the buffer's bound is fewer.
    const rowsPerCopy =
      database.pool === undefined
        ? options.batchSize
        : Math.max(options.batchSize, Math.min(COPY_ROWS, Math.floor(options.maxRows / 4)));
    this.requests = new RequestRows(rowsPerCopy);
    this.timer = setInterval(() => void this.flushSoon(true), options.flushIntervalMs);
    this.timer.unref();
  }

  get size(): number {
    return this.rows.length + this.requests.size + this.inFlight;
  }

  /** Queues one request's row. */
  pushRequest(request: RequestActivity): void {
    if (this.refuses()) return;
    if (!this.requests.append(request)) {
      this.count('failed', 1);
      this.options.onError(new Error(`request row with an id that is not a uuid: ${request.method} ${request.route}`));
      return;
    }
    if (this.requests.hasFullChunk) this.writeSoon();
  }

  /** Queues one tracked event. */
  push(row: BufferedActivity): void {
    if (this.refuses()) return;
    this.rows.push(row);
    if (this.rows.length >= this.options.batchSize) this.writeSoon();
  }

  /** Whether a new row is dropped (and counted) because the buffer is full or closed. */
  private refuses(): boolean {
    if (this.size < this.options.maxRows && !this.closed) return false;
    this.dropped++;
    this.options.counters?.dropped.inc();
    return true;
  }

  private count(outcome: 'written' | 'failed', rows: number): void {
    this[outcome] += rows;
    this.options.counters?.[outcome].inc(rows);
  }

  private writeSoon(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      void this.flushSoon();
    });
  }

  private flushSoon(all = false): Promise<void> {
    // While the database is away, full batches wait for the interval rather than trying per request.
    if (this.held && !all) return this.writing ?? Promise.resolve();
    if (!this.writing && this.size > 0) {
      this.writing = this.writeBatches(all).finally(() => {
        this.writing = undefined;
      });
    }
    return this.writing ?? Promise.resolve();
  }

  /**
   * Writes full batches (all rows when `all`). A batch the database cannot be reached for goes
   * back to the buffer (still bounded by `maxRows`) and the next interval tries again; a batch that
   * failed otherwise is counted and dropped, since the database would refuse it every time.
   */
  private async writeBatches(all: boolean): Promise<void> {
    for (;;) {
      let wrote = false;
      const requests = this.requests;
      if (all ? requests.size > 0 : requests.hasFullChunk) {
        const { data, rows, chunks } = requests.take(all);
        const stored = await this.write(
          rows,
          () => copyRequestRows(this.database, data),
          () => requests.restore(chunks),
        );
        if (!stored) return;
        wrote = true;
      }
      if (this.rows.length > 0 && (all || this.rows.length >= this.options.batchSize)) {
        const batch = this.rows.splice(0, this.options.batchSize);
        const stored = await this.write(
          batch.length,
          () => insertBatch(this.database.db, batch),
          () => this.rows.unshift(...batch),
        );
        if (!stored) return;
        wrote = true;
      }
      if (!wrote) return;
    }
  }

  /** False when the rows went back to the buffer (the database cannot be reached). */
  private async write(rows: number, write: () => Promise<void>, putBack: () => void): Promise<boolean> {
    this.inFlight = rows;
    try {
      await write();
      this.inFlight = 0;
      this.held = false;
      this.count('written', rows);
      this.options.outage?.succeeded();
    } catch (err) {
      this.inFlight = 0;
      const reason = unreachableDatabaseReason(err, true);
      if (reason !== undefined) {
        putBack();
        this.held = true;
        this.options.outage?.failed(err, reason);
        return false;
      }
      this.count('failed', rows);
      this.options.onError(err);
    }
    return true;
  }

  /**
   * Writes everything buffered now (tests, shutdown); stops early, rows still held, when the
   * database cannot be reached.
   */
  async flush(): Promise<void> {
    while (this.writing) await this.writing;
    while (this.size > 0) {
      await this.flushSoon(true);
      if (this.held) return;
    }
  }

  /**
   * Stops the timer, refuses new rows, and writes what is left; what cannot be written (the
   * database is away) is counted failed.
   */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.flush();
    this.closed = true;
    const left = this.rows.length + this.requests.size;
    if (left > 0) {
      this.rows = [];
      this.requests.take(true);
      this.count('failed', left);
    }
  }
}
