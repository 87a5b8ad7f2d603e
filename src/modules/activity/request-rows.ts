import { from as copyFrom } from 'pg-copy-streams';
import type { Database } from '../../platform/db/client.js';
import { booleanField, Chunk, fields, HEADER, TRAILER, withoutNul } from '../../platform/db/copy-binary.js';

/**
 * The columns of one request row, in the order `RequestRows` writes its fields: those that vary per
 * request first, then those fixed by the status, then those fixed by the route. `xid` keeps its
 * default (sealing reads audit rows only).
 */
const REQUEST_COLUMNS =
  'timestamp, id, organization_id, user_id, actor_type, actor_id, api_key_id, ip_address, user_agent, status, ' +
  'duration_ms, severity, success, kind, activity_type, category, description, method, path';
const FIELDS = 19;

/** What `onResponse` knows about one request. */
export interface RequestActivity {
  /** Start of the request, epoch milliseconds (fractional). */
  startedAt: number;
  /** uuidv7, as text or as its 16 bytes. */
  id: string | Uint8Array;
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

/** timestamptz is microseconds since 2000-01-01 UTC. */
const POSTGRES_EPOCH_MICROS = 946_684_800_000_000;
const TWO_32 = 2 ** 32;
const MIN_CHUNK_BYTES = 16_384;
/** A row's bytes besides its IP address, user agent and route tail: 19 lengths and fixed values. */
const ROW_FIXED_BYTES = 2 + FIELDS * 4 + 8 + 5 * 16 + 9 + 2 + 8 + 7 + 1;

// Severity and success follow from the status: three byte strings instead of work per row.
const SERVER_ERROR = Buffer.concat([fields('warning'), booleanField(false)]);
const CLIENT_ERROR = Buffer.concat([fields('info'), booleanField(false)]);
const SUCCESS = Buffer.concat([fields('info'), booleanField(true)]);
const ACTOR_TYPES = { user: fields('user'), api_key: fields('api_key'), anonymous: fields('anonymous') };

// The fields fixed by the route and method (a few dozen of them): encoded once each.
const routeTails = new Map<string, Map<string, Buffer>>();

function routeTail(method: string, route: string): Buffer {
  let byMethod = routeTails.get(route);
  if (byMethod === undefined) {
    byMethod = new Map();
    routeTails.set(route, byMethod);
  }
  let tail = byMethod.get(method);
  if (tail === undefined) {
    tail = fields('request', 'api.request', 'api', withoutNul(`${method} ${route}`), method, withoutNul(route));
    byMethod.set(method, tail);
  }
  return tail;
}

/**
 * Request rows, encoded in COPY's binary format the moment they are captured, straight
 * into large shared buffers: no text line, no object per row for the garbage collector to move, and
 * PostgreSQL reads a row without parsing its timestamp and uuids from text (about 15 % of its CPU
 * per row). A chunk holds at most `rowsPerChunk` rows; full chunks wait for `take`.
 */
export class RequestRows {
  private readonly full: Chunk[] = [];
  private current: Chunk | undefined;
  /**
   * Bytes the next chunk starts with: what the last one used. Busy, chunks fill up at the size they
   * need without growing; quiet, the one-second flush leaves small chunks and so allocates little.
   */
  private startBytes = MIN_CHUNK_BYTES;
  /** Rows held. */
  size = 0;

  constructor(private readonly rowsPerChunk: number) {}

  /** Whether a full chunk waits to be written. */
  get hasFullChunk(): boolean {
    return this.full.length > 0;
  }

  /** Encodes one request; false if one of its ids is not a uuid (the row is not kept). */
  append(r: RequestActivity): boolean {
    const tail = routeTail(r.method, r.route);
    const ip = r.ipAddress;
    const userAgent = r.userAgent;
    const room = ROW_FIXED_BYTES + tail.length + 3 * ((ip?.length ?? 0) + (userAgent?.length ?? 0));
    let c = this.current;
    if (c === undefined) {
      c = new Chunk(Math.max(this.startBytes, room));
      this.current = c;
    } else if (c.bytes.length - c.end < room) c.grow(Math.max(2 * c.bytes.length, c.end + room));
    const view = c.view;
    let at = c.end;
    view.setInt16(at, FIELDS);
    // timestamptz holds whole microseconds: the fraction below is truncated.
    const micros = Math.floor(r.startedAt * 1000) - POSTGRES_EPOCH_MICROS;
    view.setInt32(at + 2, 8);
    view.setInt32(at + 6, Math.floor(micros / TWO_32));
    view.setUint32(at + 10, micros >>> 0);
    at += 14;
    if (typeof r.id === 'string') at = c.uuid(at, r.id, false);
    else {
      view.setInt32(at, 16);
      at = c.bytesField(at + 4, r.id);
    }
    if (at < 0) return false;
    at = c.uuid(at, r.organizationId);
    if (at < 0) return false;
    const userAt = at;
    at = c.uuid(at, r.userId);
    if (at < 0) return false;
    at = c.bytesField(at, ACTOR_TYPES[r.actorType]);
    // actor_id: the user again when the caller is one.
    if (r.actorType === 'user' && r.userId !== null) {
      c.bytes.copyWithin(at, userAt, userAt + 20);
      at += 20;
    } else at = c.null(at);
    at = c.uuid(at, r.apiKeyId);
    if (at < 0) return false;
    at = c.text(at, ip);
    at = c.text(at, userAgent);
    view.setInt32(at, 2);
    view.setInt16(at + 4, r.status);
    view.setInt32(at + 6, 8);
    view.setFloat64(at + 10, r.durationMs);
    at = c.bytesField(at + 18, r.status >= 500 ? SERVER_ERROR : r.status >= 400 ? CLIENT_ERROR : SUCCESS);
    c.end = c.bytesField(at, tail);
    c.rows++;
    this.size++;
    if (c.rows >= this.rowsPerChunk) this.seal(c);
    return true;
  }

  private seal(chunk: Chunk): void {
    this.full.push(chunk);
    this.current = undefined;
    this.startBytes = Math.max(MIN_CHUNK_BYTES, chunk.end);
  }

  /**
   * Removes and returns the full chunks' rows (all rows when `all`) as COPY data pieces; `chunks`
   * go back with `restore` when they could not be written.
   */
  take(all: boolean): { data: Buffer[]; rows: number; chunks: Chunk[] } {
    const chunks = this.full.splice(0);
    if (all && this.current !== undefined) {
      this.seal(this.current);
      chunks.push(...this.full.splice(0));
    }
    let rows = 0;
    const data: Buffer[] = [HEADER];
    for (const chunk of chunks) {
      rows += chunk.rows;
      data.push(chunk.bytes.subarray(0, chunk.end));
    }
    data.push(TRAILER);
    this.size -= rows;
    return { data, rows, chunks };
  }

  /** Puts taken chunks back in front, to be written first. */
  restore(chunks: Chunk[]): void {
    this.full.unshift(...chunks);
    for (const chunk of chunks) this.size += chunk.rows;
  }
}

const COPY_REQUESTS = `copy activities (${REQUEST_COLUMNS}) from stdin (format binary)`;

/**
 * Writes request rows taken from `RequestRows` with one `COPY … (FORMAT binary)`: on PGlite from a
 * blob, which costs it a third less CPU a row than the `json_to_recordset` INSERT it replaced (500-row
 * batches, 15 against 23 µs). On PostgreSQL the batch commits with `synchronous_commit = off`: a
 * crash may lose the last few hundred milliseconds of committed batches, which breaks no promise (the
 * rows waiting in the buffer are lost with the process anyway, request activity is best effort), and
 * the commit no longer waits for the WAL flush while it holds a pooled connection.
 */
export async function copyRequestRows(database: Database, data: Buffer[]): Promise<void> {
  const { pool, pglite } = database;
  if (pool === undefined) {
    if (pglite === undefined) throw new Error('no database to copy request rows into');
    await pglite.query(COPY_REQUESTS.replace('stdin', `'/dev/blob'`), [], { blob: new Blob(data) });
    return;
  }
  const client = await pool.connect();
  try {
    await client.query('begin; set local synchronous_commit = off');
    await new Promise<void>((resolve, reject) => {
      const stream = client.query(copyFrom(COPY_REQUESTS));
      stream.on('finish', resolve);
      stream.on('error', reject);
      for (const piece of data) stream.write(piece);
      stream.end();
    });
    await client.query('commit');
    client.release();
  } catch (err) {
    // A failed COPY leaves the transaction aborted: the connection is closed rather than reused.
    client.release(err as Error);
    throw err;
  }
}
