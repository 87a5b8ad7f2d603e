import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { type DbOrTx, pgClientOf, pgliteClientOf } from './client.js';

/**
 * COPY's binary format (PostgreSQL docs, "COPY", Binary Format), written straight into buffers: a
 * signature, flags and header extension length, then per row a 16-bit field count and per field a
 * 32-bit length (-1 = null) and the value in the type's send format; a 16-bit -1 ends the data.
 * PostgreSQL reads such rows without parsing uuids, timestamps and arrays from text, and PGlite reads
 * them from a blob at about half the cost of a set-based INSERT. Request rows, large audit batches and
 * the new users of a provisioning call are written this way.
 */
export const HEADER = Buffer.from('PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0', 'latin1');
export const TRAILER = Buffer.from([0xff, 0xff]);
const TEXT_OID = 25;
/** 2000-01-01T00:00:00Z, where binary timestamps count from, in microseconds since the Unix epoch. */
const POSTGRES_EPOCH_MICROS = 946_684_800_000_000n;

/** Text fields as bytes, each behind its length. */
export function fields(...values: string[]): Buffer {
  const parts = values.flatMap((value) => {
    const bytes = Buffer.from(value);
    const length = Buffer.alloc(4);
    length.writeInt32BE(bytes.length);
    return [length, bytes];
  });
  return Buffer.concat(parts);
}

export function booleanField(value: boolean): Buffer {
  return Buffer.from([0, 0, 0, 1, value ? 1 : 0]);
}

/** NUL cannot be stored in a text column at all: it is dropped rather than failing the whole batch. */
export function withoutNul(value: string): string {
  return value.includes('\0') ? value.replaceAll('\0', '') : value;
}

const HEX = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) {
  HEX['0123456789abcdef'.charCodeAt(i)] = i;
  HEX['0123456789ABCDEF'.charCodeAt(i)] = i;
}

// The users, organizations and keys behind requests recur: each uuid is parsed once, while the
// cache is small enough to keep (it is emptied when it fills up).
const uuidFields = new Map<string, Uint8Array>();
const UUID_CACHE = 10_000;

/**
 * Writes a canonical uuid string's 16 bytes into `to` from `at`; false (with bytes written) if it is
 * not one.
 */
function writeUuid(uuid: string, to: Uint8Array, at: number): boolean {
  if (uuid.length !== 36) return false;
  let out = at;
  for (let i = 0; i < 36; i += 2) {
    if (i === 8 || i === 13 || i === 18 || i === 23) {
      if (uuid.charCodeAt(i) !== 45) return false;
      i--;
      continue;
    }
    const high = HEX[uuid.charCodeAt(i)] ?? -1;
    const low = HEX[uuid.charCodeAt(i + 1)] ?? -1;
    if (high < 0 || low < 0) return false;
    to[out++] = (high << 4) | low;
  }
  return true;
}

/** A recurring uuid as a binary field (length and 16 bytes), from the cache; undefined if it is not one. */
function uuidField(uuid: string): Uint8Array | undefined {
  const cached = uuidFields.get(uuid);
  if (cached !== undefined) return cached;
  const field = new Uint8Array(20);
  field[3] = 16;
  if (!writeUuid(uuid, field, 4)) return undefined;
  if (uuidFields.size >= UUID_CACHE) uuidFields.clear();
  uuidFields.set(uuid, field);
  return field;
}

/**
 * Encoded rows in one buffer. Lengths and numbers go through a DataView: `Buffer#writeInt32BE` and
 * the like check their arguments in JavaScript and cost several times as much, at two dozen a row.
 */
export class Chunk {
  bytes: Buffer;
  view: DataView;
  /** Bytes used. */
  end = 0;
  rows = 0;

  constructor(size: number) {
    this.bytes = Buffer.allocUnsafe(size);
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, size);
  }

  /** A whole COPY stream to be written row by row: the header first. */
  static stream(size: number): Chunk {
    const chunk = new Chunk(HEADER.length + size + TRAILER.length);
    chunk.bytes.set(HEADER, 0);
    chunk.end = HEADER.length;
    return chunk;
  }

  /** Makes room for `bytes` more (and the trailer) after `at`, the end of the rows so far. */
  room(at: number, bytes: number): void {
    if (this.bytes.length - at >= bytes + TRAILER.length) return;
    this.end = at;
    this.grow(Math.max(2 * this.bytes.length, at + bytes + TRAILER.length));
  }

  /** The stream ending at `at`, with its trailer. */
  close(at: number): Buffer {
    this.bytes.set(TRAILER, at);
    return this.bytes.subarray(0, at + TRAILER.length);
  }

  /** Moves the rows into a buffer of `size` bytes. */
  grow(size: number): void {
    const bytes = Buffer.allocUnsafe(size);
    this.bytes.copy(bytes, 0, 0, this.end);
    this.bytes = bytes;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, size);
  }

  /**
   * A canonical uuid string as a field; -1 if it is not one, which PostgreSQL would refuse. Ids that
   * recur (users, organizations, keys) are kept parsed; `cache` false for one seen once (a new id).
   */
  uuid(at: number, uuid: string | null, cache = true): number {
    if (uuid === null) return this.null(at);
    if (!cache) {
      this.view.setInt32(at, 16);
      return writeUuid(uuid, this.bytes, at + 4) ? at + 20 : -1;
    }
    const field = uuidField(uuid);
    return field === undefined ? -1 : this.bytesField(at, field);
  }

  null(at: number): number {
    this.view.setInt32(at, -1);
    return at + 4;
  }

  text(at: number, text: string | null): number {
    if (text === null) return this.null(at);
    // Short ASCII (an IP address, most user agents) is copied here: cheaper than a call into C++.
    const n = text.length;
    if (n <= 256) {
      const bytes = this.bytes;
      let to = at + 4;
      for (let i = 0; i < n; i++) {
        const c = text.charCodeAt(i);
        if (c === 0 || c > 0x7f) return this.encoded(at, text);
        bytes[to++] = c;
      }
      this.view.setInt32(at, n);
      return to;
    }
    return this.encoded(at, text);
  }

  private encoded(at: number, text: string): number {
    const length = this.bytes.write(withoutNul(text), at + 4);
    this.view.setInt32(at, length);
    return at + 4 + length;
  }

  bytesField(at: number, field: Uint8Array): number {
    this.bytes.set(field, at);
    return at + field.length;
  }

  bool(at: number, value: boolean): number {
    this.view.setInt32(at, 1);
    this.bytes[at + 4] = value ? 1 : 0;
    return at + 5;
  }

  /** A timestamptz from microseconds since the Unix epoch: binary COPY counts them from 2000-01-01 UTC. */
  timestamp(at: number, unixMicros: bigint): number {
    this.view.setInt32(at, 8);
    this.view.setBigInt64(at + 4, unixMicros - POSTGRES_EPOCH_MICROS);
    return at + 12;
  }

  /** jsonb's binary form: a version byte (1), then the JSON text. */
  jsonb(at: number, json: string): number {
    // The text lands one byte further on; its own length field then gives way to the version byte.
    const end = this.text(at + 1, json);
    this.view.setInt32(at, end - at - 4);
    this.bytes[at + 4] = 1;
    return end;
  }

  /** A one-dimensional text[] without nulls: header (dimensions, flags, element type, length, lower bound), then each element. */
  textArray(at: number, values: string[]): number {
    const view = this.view;
    view.setInt32(at + 4, 1);
    view.setInt32(at + 8, 0);
    view.setInt32(at + 12, TEXT_OID);
    view.setInt32(at + 16, values.length);
    view.setInt32(at + 20, 1);
    let end = at + 24;
    for (const value of values) end = this.text(end, value);
    view.setInt32(at, end - at - 4);
    return end;
  }
}

/**
 * COPYs the rows `encode` gives (a whole stream, see `Chunk.stream`) into `target` ("table (columns)")
 * through the handle, in its transaction: over the connection on PostgreSQL, from a blob on PGlite.
 * False, with nothing written, when the handle has no single connection (a pooled root handle) or
 * `encode` refuses (a value that is not what its column takes): the caller then inserts.
 */
export async function copyBinary(db: DbOrTx, target: string, encode: () => Buffer | undefined): Promise<boolean> {
  const connection = pgClientOf(db);
  const pglite = connection ? undefined : pgliteClientOf(db);
  if (!connection && !pglite) return false;
  const rows = encode();
  if (!rows) return false;
  if (connection) await copyIn(connection, target, rows);
  else await pglite?.query(`copy ${target} from '/dev/blob' (format binary)`, [], { blob: new Blob([rows]) });
  return true;
}

/** Runs `copy <target> from stdin (format binary)` with `rows` as its input, on one node-postgres connection. */
async function copyIn(client: pg.ClientBase, target: string, rows: Buffer): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const stream = client.query(copyFrom(`copy ${target} from stdin (format binary)`));
    stream.on('finish', resolve);
    stream.on('error', reject);
    stream.end(rows);
  });
}
