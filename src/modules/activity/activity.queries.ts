import { pipeline, type Readable, Transform, type TransformCallback } from 'node:stream';
import { type SQL, sql } from 'drizzle-orm';
import { PgDialect } from 'drizzle-orm/pg-core';
import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { type DbOrTx, queryRows } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { idTimeOf } from '../../platform/db/ids.js';
import { escapeLike } from '../../platform/db/like.js';

/** What `/activities/`, the streams and the export filter on; all optional, combined with AND. */
export interface ActivityFilter {
  /** The caller's organization scope; undefined = every organization (superusers). */
  organizationId?: string | undefined;
  since?: Date | undefined;
  until?: Date | undefined;
  userId?: string | undefined;
  /** Done by this user: audit events they acted in, their requests and tracked events. */
  actorId?: string | undefined;
  activityType?: string | undefined;
  category?: string | undefined;
  severity?: string | undefined;
  success?: boolean | undefined;
  tag?: string | undefined;
  kind?: string | undefined;
  objectType?: string | undefined;
  objectId?: string | undefined;
  /** Free text, case-insensitive, anywhere in the description. */
  search?: string | undefined;
}

/** An activity as lists show it; `ts` is the exact timestamp (microseconds) the cursor carries. */
export interface ActivityListRow {
  id: string;
  ts: string;
  timestamp: Date | string;
  kind: string;
  activity_type: string;
  category: string;
  severity: string;
  success: boolean;
  user_id: string | null;
  organization_id: string | null;
  organization: string | null;
  actor_type: string;
  actor_id: string | null;
  api_key_id: string | null;
  object_type: string | null;
  object_id: string | null;
  description: string;
  details: Record<string, unknown>;
  tags: string[];
  ip_address: string | null;
  user_agent: string | null;
  method: string | null;
  path: string | null;
  status: number | null;
  duration_ms: number | null;
}

/** The WHERE conditions of a filter (at least `true`). */
export function activityConditions(filter: ActivityFilter): SQL {
  const c: SQL[] = [];
  if (filter.organizationId !== undefined) c.push(sql`a.organization_id = ${filter.organizationId}`);
  if (filter.since) c.push(sql`a.timestamp >= ${filter.since.toISOString()}::timestamptz`);
  if (filter.until) c.push(sql`a.timestamp < ${filter.until.toISOString()}::timestamptz`);
  if (filter.userId) c.push(sql`a.user_id = ${filter.userId}`);
  if (filter.actorId) {
    // Two arms, each on an index: an audit event names its actor apart (activities_audit_actor_idx);
    // a request or tracked event names the user who made it as its user (activities_user_idx).
    c.push(sql`((a.kind = 'audit' and a.actor_id = ${filter.actorId} and a.actor_type = 'user')
      or (a.kind <> 'audit' and a.user_id = ${filter.actorId}))`);
  }
  if (filter.activityType) c.push(sql`a.activity_type = ${filter.activityType}`);
  if (filter.category) c.push(sql`a.category = ${filter.category}`);
  if (filter.severity) c.push(sql`a.severity = ${filter.severity}`);
  if (filter.success !== undefined) c.push(sql`a.success = ${filter.success}`);
  if (filter.tag) c.push(sql`a.tags @> array[${filter.tag}]::text[]`);
  if (filter.kind) c.push(sql`a.kind = ${filter.kind}`);
  if (filter.objectType) c.push(sql`a.object_type = ${filter.objectType}`);
  if (filter.objectId) {
    // Ids of users, roles, keys… are stored as written by PostgreSQL's uuid output: lower case.
    const objectId = isUuid(filter.objectId) ? filter.objectId.toLowerCase() : filter.objectId;
    c.push(sql`a.object_id = ${objectId}`);
  }
  if (filter.search) c.push(sql`a.description ilike ${`%${escapeLike(filter.search)}%`}`);
  return c.length > 0 ? sql.join(c, sql` and `) : sql`true`;
}

const LIST_COLUMNS = sql`a.id, to_char(a.timestamp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as ts,
  a.timestamp, a.kind, a.activity_type, a.category, a.severity, a.success, a.user_id, a.organization_id,
  o.code as organization, a.actor_type, a.actor_id, a.api_key_id, a.object_type, a.object_id, a.description,
  a.details, a.tags, a.ip_address, a.user_agent, a.method, a.path, a.status, a.duration_ms`;

/**
 * One page of activities, newest first: `(timestamp, id)` descending, the partitioned table's
 * primary key, continued after `after` (the last row of the previous page). Fetches `limit + 1`.
 */
export async function listActivities(
  db: DbOrTx,
  filter: ActivityFilter,
  limit: number,
  after?: { ts: string; id: string },
): Promise<ActivityListRow[]> {
  const keyset = after ? sql`and (a.timestamp, a.id) < (${after.ts}::timestamptz, ${after.id}::uuid)` : sql``;
  return queryRows<ActivityListRow>(
    db,
    sql`select ${LIST_COLUMNS}
      from activities a left join organizations o on o.id = a.organization_id
      where ${activityConditions(filter)} ${keyset}
      order by a.timestamp desc, a.id desc
      limit ${limit + 1}`,
  );
}

/**
 * How far an activity's timestamp may lie from the moment its UUIDv7 id was made. Every writer
 * takes the timestamp first and makes the id after: an audit event's timestamp is its transaction's
 * start (`now()`), its id made when the event is recorded within; a request's timestamp is when it
 * came in, its id made when it was answered; a tracked event takes both at once. So the timestamp
 * is at most the id's time, but for the database's clock running ahead of the server's (audit
 * events): `ID_AHEAD_MS` allows a minute of that. Below, `ID_BEHIND_MS` is the longest request or
 * transaction whose activity is still found by id: an hour.
 */
const ID_AHEAD_MS = 60_000;
const ID_BEHIND_MS = 3_600_000;
/** A UUIDv7's 48 bits of milliseconds reach the year 10889; no activity is stamped after 9999. */
const LAST_ID_TIME = Date.UTC(9999, 11, 31);

/**
 * One activity by id, or undefined. The primary key is (timestamp, id) on a table partitioned by
 * month of timestamp, with no index on id alone (one more index on the table every request writes
 * to). The id's UUIDv7 time bounds the timestamp (see `ID_BEHIND_MS`), so the statement reads one
 * partition (two across a month's end), and only a short range of its primary key: the range below
 * the id's time is read first, newest first, where the row is found after the rows written while
 * its request or transaction ran; the minute above only when that finds nothing. An id that is no
 * UUIDv7 costs no statement, one of a month whose partition was dropped reads only the (small)
 * default partition; only an id naming no activity reads its whole hour and minute.
 */
export async function findActivity(db: DbOrTx, id: string): Promise<ActivityListRow | undefined> {
  const at = idTimeOf(id)?.getTime();
  if (at === undefined || at > LAST_ID_TIME) return undefined;
  const time = (ms: number) => new Date(ms).toISOString();
  const [row] = await queryRows<ActivityListRow>(
    db,
    sql`with found as (
        (select * from activities
          where timestamp <= ${time(at)}::timestamptz and timestamp >= ${time(at - ID_BEHIND_MS)}::timestamptz
            and id = ${id}::uuid
          order by timestamp desc
          limit 1)
        union all
        (select * from activities
          where timestamp > ${time(at)}::timestamptz and timestamp <= ${time(at + ID_AHEAD_MS)}::timestamptz
            and id = ${id}::uuid
          limit 1)
        limit 1
      )
      select ${LIST_COLUMNS} from found a left join organizations o on o.id = a.organization_id`,
  );
  return row;
}

export interface ActiveUserRow {
  user_id: string;
  organization_id: string | null;
  organization: string | null;
  email: string | null;
  username: string | null;
  last_activity: Date | string;
  /** The exact last activity (microseconds) the cursor carries. */
  ts: string;
  current_path: string | null;
  method: string | null;
  ip_address: string | null;
  user_agent: string | null;
}

/**
 * One page of the users whose latest request is within the last `minutes`, most recent first:
 * (latest request, user id) descending, continued after `after` (the last row of the previous
 * page). Fetches `limit + 1`.
 */
export async function listActiveUsers(
  db: DbOrTx,
  organizationId: string | undefined,
  minutes: number,
  limit: number,
  after?: { ts: string; id: string },
): Promise<ActiveUserRow[]> {
  const scope = organizationId !== undefined ? sql`and a.organization_id = ${organizationId}` : sql``;
  const keyset = after ? sql`where (l.timestamp, l.user_id) < (${after.ts}::timestamptz, ${after.id}::uuid)` : sql``;
  return queryRows<ActiveUserRow>(
    db,
    sql`select l.user_id, l.organization_id, o.code as organization, u.email, u.username, l.timestamp as last_activity,
        to_char(l.timestamp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as ts,
        l.path as current_path, l.method, l.ip_address, l.user_agent
      from (
        select distinct on (a.user_id) a.user_id, a.organization_id, a.timestamp, a.path, a.method, a.ip_address,
          a.user_agent
        from activities a
        where a.kind = 'request' and a.user_id is not null
          and a.timestamp >= now() - make_interval(mins => ${minutes}) ${scope}
        order by a.user_id, a.timestamp desc
      ) l
      left join users u on u.id = l.user_id
      left join organizations o on o.id = l.organization_id
      ${keyset}
      order by l.timestamp desc, l.user_id desc
      limit ${limit + 1}`,
  );
}

/** The exact timestamp (microseconds) an export's keyset carries. */
const TS_TEXT = sql`to_char(a.timestamp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;
/** The timestamp as every object shows one, in milliseconds (truncated, as `toActivityView` does). */
const SHOWN_TS = sql`to_char(a.timestamp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** One CSV field built by PostgreSQL: RFC 4180 quoting, and a leading = + - @ defused for spreadsheets. */
const csv = (expr: SQL) =>
  sql`coalesce('"' || replace(case when (${expr}) ~ '^[=+@\t\r-]' then '''' || (${expr}) else (${expr}) end, '"', '""') || '"', '')`;

/** A nullable uuid as a JSON value. */
const jsonUuid = (expr: SQL) => sql`coalesce('"' || ${expr}::text || '"', 'null')`;
/** Any value as a JSON value (text escaped as json_build_object does). */
const jsonOf = (expr: SQL) => sql`coalesce(to_json(${expr})::text, 'null')`;
/** A text value that needs no JSON escaping (see `NEEDS_ESCAPING`) as a JSON value. */
const jsonPlain = (expr: SQL) => sql`coalesce('"' || ${expr} || '"', 'null')`;

/** The text columns of an NDJSON line, in its key order. */
const TEXT_COLUMNS = [
  sql`a.kind`,
  sql`a.activity_type`,
  sql`a.category`,
  sql`a.severity`,
  sql`o.code`,
  sql`a.actor_type`,
  sql`a.object_type`,
  sql`a.object_id`,
  sql`a.description`,
  sql`a.ip_address`,
  sql`a.user_agent`,
  sql`a.method`,
  sql`a.path`,
] as const;

/** What to_json changes in text (escape_json): the quote, the backslash, control characters. */
const NEEDS_ESCAPING = sql.raw(`'[\\x01-\\x1f"\\\\]'`);

/**
 * One NDJSON line, byte for byte what `json_build_object(...)::text` gives (same keys, order and
 * " : " / ", " separators), put together by concatenation: json_build_object looks up every
 * argument's type output on every row, which made it most of the export's cost. Uuids, booleans,
 * numbers and the timestamp need no escaping; text goes through `text` (to_json, or plain quotes).
 */
const ndjsonLineWith = (text: (expr: SQL) => SQL) => {
  const [
    kind,
    activityType,
    category,
    severity,
    organization,
    actorType,
    objectType,
    objectId,
    description,
    ip,
    ua,
    method,
    path,
  ] = TEXT_COLUMNS.map(text);
  return sql`'{"id" : "' || a.id::text || '", "kind" : ' || ${kind}
  || ', "activity_type" : ' || ${activityType} || ', "category" : ' || ${category}
  || ', "severity" : ' || ${severity} || ', "success" : ' || a.success::text
  || ', "user_id" : ' || ${jsonUuid(sql`a.user_id`)} || ', "organization" : ' || ${organization}
  || ', "organization_id" : ' || ${jsonUuid(sql`a.organization_id`)} || ', "actor_type" : ' || ${actorType}
  || ', "actor_id" : ' || ${jsonUuid(sql`a.actor_id`)} || ', "api_key_id" : ' || ${jsonUuid(sql`a.api_key_id`)}
  || ', "object_type" : ' || ${objectType} || ', "object_id" : ' || ${objectId}
  || ', "description" : ' || ${description} || ', "details" : ' || a.details::text
  || ', "tags" : ' || ${jsonOf(sql`a.tags`)} || ', "ip_address" : ' || ${ip}
  || ', "user_agent" : ' || ${ua} || ', "method" : ' || ${method}
  || ', "path" : ' || ${path} || ', "status" : ' || coalesce(a.status::text, 'null')
  || ', "duration_ms" : ' || ${jsonOf(sql`a.duration_ms`)} || ', "timestamp" : "' || ${SHOWN_TS} || '"}'`;
};

/**
 * to_json was most of what a line costs, and most rows hold no character it would change: one
 * match over all their text picks the plain quoting for those, to_json for the rest.
 */
const ndjsonLine = sql`case when concat(${sql.join([...TEXT_COLUMNS], sql`, `)}) ~ ${NEEDS_ESCAPING}
  then ${ndjsonLineWith(jsonOf)} else ${ndjsonLineWith(jsonPlain)} end`;

/** One CSV line (without its end), its fields in the list's order: concat_ws skips nulls, hence the empty-string defaults. */
const csvLine = sql`concat_ws(',', a.id::text, a.kind, ${csv(sql`a.activity_type`)}, a.category, a.severity,
  coalesce(a.success::text, ''), coalesce(a.user_id::text, ''), ${csv(sql`o.code`)}, coalesce(a.organization_id::text, ''),
  a.actor_type, coalesce(a.actor_id::text, ''), coalesce(a.api_key_id::text, ''),
  ${csv(sql`a.object_type`)}, ${csv(sql`a.object_id`)}, ${csv(sql`a.description`)}, ${csv(sql`a.details::text`)},
  ${csv(sql`array_to_string(a.tags, ' ')`)}, ${csv(sql`a.ip_address`)}, ${csv(sql`a.user_agent`)}, coalesce(a.method, ''),
  ${csv(sql`a.path`)}, coalesce(a.status::text, ''), coalesce(a.duration_ms::text, ''), ${SHOWN_TS})`;

/**
 * Rows per text of an export chunk: about 70 kB of NDJSON, below V8's large-object size, so the
 * texts die young instead of waiting in the old generation for a full collection.
 */
const EXPORT_PART_ROWS = 100;
const PART = sql.raw(String(EXPORT_PART_ROWS));

/**
 * One export chunk, newest first after `after`, as a few texts of `EXPORT_PART_ROWS` finished
 * NDJSON or CSV lines each, built by PostgreSQL (string functions and string_agg run in C), so the
 * server holds a few strings per chunk instead of thousands of row objects. Also answers the
 * chunk's row count and the keyset of its last (oldest) row. PGlite's path; PostgreSQL streams the
 * whole range with `streamActivityLines`.
 */
export async function exportActivityLines(
  db: DbOrTx,
  filter: ActivityFilter,
  format: 'ndjson' | 'csv',
  limit: number,
  after?: { ts: string; id: string },
): Promise<{ parts: string[]; count: number; last: { ts: string; id: string } | null }> {
  const keyset = after ? sql`and (a.timestamp, a.id) < (${after.ts}::timestamptz, ${after.id}::uuid)` : sql``;
  const line = format === 'ndjson' ? ndjsonLine : csvLine;
  // The keyset of the last row comes from PostgreSQL, not from its line: a line shows milliseconds,
  // the keyset needs the microseconds. The fixed-width timestamp text and the uuid text order as
  // the values do (collation "C"), so the least pair is the last row's.
  const eol = format === 'csv' ? '\r\n' : '\n';
  const parts = await queryRows<{ text: string; count: number; last: string[] | null }>(
    db,
    sql`select string_agg(p.line, ${eol} order by p.n) || ${eol} as text, count(*)::int as count,
        min(array[p.ts, p.id::text] collate "C") as last
      from (
        select q.*, row_number() over () as n
        from (
          select ${line} as line, a.id, ${TS_TEXT} as ts
          from activities a left join organizations o on o.id = a.organization_id
          where ${activityConditions(filter)} ${keyset}
          order by a.timestamp desc, a.id desc
          limit ${limit}
        ) q
      ) p
      group by (p.n - 1) / ${PART}
      order by (p.n - 1) / ${PART}`,
  );
  const final = parts.at(-1);
  if (!final) return { parts: [], count: 0, last: null };
  const [ts, id] = final.last ?? [];
  const last = ts && id ? { ts, id } : null;
  return { parts: parts.map((part) => part.text), count: parts.reduce((n, part) => n + part.count, 0), last };
}

const dialect = new PgDialect();

/**
 * The filtered activities, newest first, as finished NDJSON or CSV lines streamed by PostgreSQL
 * itself: one `COPY (SELECT …) TO STDOUT`, so Node neither pages nor parses rows, only passes
 * bytes on (the lines' framing is dropped by `CopyLineText`). One statement, one snapshot. The
 * stream respects backpressure: pg-copy-streams stops reading the socket while the consumer is
 * full, and PostgreSQL then waits on its send. The connection is released when the copy ends; if
 * the stream fails or is destroyed first (a client gone mid-export), the connection is discarded
 * instead, which ends the COPY on the server.
 */
export async function streamActivityLines(
  pool: pg.Pool,
  filter: ActivityFilter,
  format: 'ndjson' | 'csv',
): Promise<Readable> {
  const eol = format === 'csv' ? '\r\n' : '\n';
  const query = dialect.sqlToQuery(
    sql`select ${format === 'ndjson' ? ndjsonLine : csvLine} || ${eol}
      from activities a left join organizations o on o.id = a.organization_id
      where ${activityConditions(filter)}
      order by a.timestamp desc, a.id desc`,
  );
  const client = await pool.connect();
  let copy: Readable;
  try {
    copy = client.query(copyTo(`copy (${inlineParameters(client, query)}) to stdout with (format binary)`));
  } catch (err) {
    client.release(true);
    throw err;
  }
  return pipeline(copy, new CopyLineText(), (err) => client.release(err ?? undefined));
}

/**
 * COPY takes no bind parameters, so the filter's values are written into the statement as literals
 * by the driver's own `escapeLiteral` (quotes doubled; a value with a backslash becomes an E''
 * string with it doubled too), which yields exactly one string literal whatever the value holds.
 * Only the values from `activityConditions` are inlined: the rest of the text is this module's
 * constant SQL, which holds no `$` (checked), so every `$n` is one of drizzle's placeholders. The
 * literals are untyped, as the parameters were: PostgreSQL infers their types from the same context.
 */
function inlineParameters(client: pg.PoolClient, query: { sql: string; params: unknown[] }): string {
  const used = query.sql.match(/\$/g)?.length ?? 0;
  if (used !== query.params.length) throw new Error('export statement: unexpected $ in the query text');
  return query.sql.replace(/\$(\d+)/g, (_, n: string) => {
    const value = query.params[Number(n) - 1];
    if (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') {
      throw new Error(`export statement: parameter $${n} is not a string, number or boolean`);
    }
    return client.escapeLiteral(String(value));
  });
}

/** The 19-byte header of COPY's binary format: signature, flags, header-extension length (0). */
const COPY_BINARY_HEADER = 19;

/**
 * The bytes of a one-column binary COPY, unframed: each tuple is a field count (int16, -1 ends the
 * data), the field's length (int32) and that many bytes, and only those bytes go on. Binary rather
 * than text or CSV format because both escape or quote what a line legitimately holds (JSON
 * backslashes, CSV line breaks); the binary format passes a text value through unchanged.
 */
export class CopyLineText extends Transform {
  private skip = COPY_BINARY_HEADER;
  /** Bytes of the current line still to come. */
  private remaining = 0;
  /** The start of a tuple's framing cut by a chunk boundary. */
  private pending: Buffer | null = null;

  override _transform(data: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    const chunk = this.pending ? Buffer.concat([this.pending, data]) : data;
    this.pending = null;
    // The lines are moved to the front of the chunk they came in (the framing is only ever behind
    // them), so passing a megabyte on allocates nothing. The chunks are the COPY stream's own
    // buffers, read by nothing else.
    let written = 0;
    let at = 0;
    while (at < chunk.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, chunk.length - at);
        this.skip -= n;
        at += n;
      } else if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - at);
        if (written !== at) chunk.copy(chunk, written, at, at + n);
        written += n;
        this.remaining -= n;
        at += n;
      } else if (chunk.length - at < 2 || (chunk.readInt16BE(at) !== -1 && chunk.length - at < 6)) {
        this.pending = Buffer.from(chunk.subarray(at));
        break;
      } else if (chunk.readInt16BE(at) === -1) {
        at = chunk.length;
      } else {
        this.remaining = Math.max(0, chunk.readInt32BE(at + 2));
        at += 6;
      }
    }
    done(null, written > 0 ? chunk.subarray(0, written) : undefined);
  }
}
