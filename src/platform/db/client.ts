import { chmodSync, closeSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { DrizzleQueryError, type SQL, sql } from 'drizzle-orm';
import { drizzle as drizzleNodePg } from 'drizzle-orm/node-postgres';
import type { PgDatabase, PgQueryResultHKT, PgTransaction } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import pg from 'pg';
import { createDataDir } from '../../config.js';
import { withoutSecrets } from '../secret-text.js';
import {
  asEmbeddedQueries,
  type EmbeddedDatabase,
  type EmbeddedQueries,
  openEmbeddedDatabase,
} from './pglite-remote.js';

/** The Drizzle handle every query function takes; the same type on PGlite and PostgreSQL. */
export type Db = PgDatabase<PgQueryResultHKT>;
export type Tx = PgTransaction<PgQueryResultHKT>;
/** Either the root handle or an open transaction: query functions accept both. */
export type DbOrTx = Db | Tx;

export interface Database {
  db: Db;
  kind: 'pglite' | 'postgres';
  /** Present on PGlite (which runs in its own thread): pg-boss and raw multi-statement SQL go through it. */
  pglite?: EmbeddedDatabase;
  /** Present on PostgreSQL. */
  pool?: pg.Pool;
  /**
   * PGlite only: settles if its thread stops unexpectedly. Unlike a PostgreSQL server, it cannot come
   * back, so the server exits (`main.ts`) for its supervisor to restart it.
   */
  lost?: Promise<Error>;
  /** Idempotent: a second call waits for the first. */
  close(): Promise<void>;
}

/** Thrown when another process already holds the embedded database folder. */
export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly pid: number,
  ) {
    super(
      `the embedded database in ${dataDir} is in use by process ${pid} (a running Gatehouse server); stop it first, or use its HTTP API`,
    );
    this.name = 'DataDirInUseError';
  }
}

/**
 * Thrown when the PostgreSQL server of DATABASE_URL cannot be connected to (refused, unknown host,
 * login refused, no such database). The message names the server and database, never the password.
 */
export class DatabaseUnreachableError extends Error {
  constructor(databaseUrl: string, cause: unknown) {
    const url = new URL(databaseUrl);
    const where = `${url.host || url.searchParams.get('host') || 'localhost'}${url.pathname}`;
    const e = cause as { message?: string; code?: string };
    // A refusal on every address of a name comes as an AggregateError with an empty message.
    const reason = e.message || e.code || String(cause);
    let password = url.password;
    try {
      password = decodeURIComponent(url.password);
    } catch {}
    super(`cannot connect to the database at ${where}: ${withoutSecrets(reason, [url.password, password])}`, {
      cause,
    });
    this.name = 'DatabaseUnreachableError';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * PGlite is one process's database: a second opener would corrupt it. The lock file holds the
 * owner's pid; a stale file (owner gone) is taken over.
 */
function lockDataDir(dir: string): () => void {
  createDataDir(dir);
  const file = join(dir, 'gatehouse.lock');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, String(process.pid));
      closeSync(fd);
      return () => rmSync(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number(readFileSync(file, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && isAlive(pid))
        throw new DataDirInUseError(dir, pid);
      rmSync(file, { force: true });
    }
  }
  throw new Error(`could not lock ${file}`);
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let running: Promise<void> | undefined;
  return () => {
    running ??= fn();
    return running;
  };
}

export interface OpenDatabaseOptions {
  databaseUrl?: string | undefined;
  /** PGlite folder; `undefined` or 'memory://' keeps the database in memory (tests). */
  dataDir?: string | undefined;
  poolSize?: number;
  /** How long a connection (or a turn for a pooled one) is awaited; see `CONNECT_TIMEOUT_MS`. */
  connectTimeoutMs?: number;
}

/**
 * A server that stops answering (a host gone from the network, a firewall dropping packets) would
 * otherwise hold a new connection for as long as the kernel keeps retrying, minutes, and every request
 * with it. With a bound the request answers 503 `database_unavailable`. It also bounds the wait for a
 * turn when every pooled connection is busy: ten seconds of that is an outage too.
 */
const CONNECT_TIMEOUT_MS = 10_000;

/** Opens PostgreSQL when a URL is given, PGlite otherwise. */
export async function openDatabase(options: OpenDatabaseOptions): Promise<Database> {
  if (options.databaseUrl) {
    databasePorts.add(Number(new URL(options.databaseUrl).port || process.env.PGPORT || 5432));
    const pool = new pg.Pool({
      connectionString: options.databaseUrl,
      max: options.poolSize ?? 20,
      connectionTimeoutMillis: options.connectTimeoutMs ?? CONNECT_TIMEOUT_MS,
    });
    // An idle client losing its connection must not crash the process; the next query reports it.
    pool.on('error', () => {});
    // Connect once now: a server that cannot be reached is one clear error here, not a driver
    // error from whichever query happens to come first.
    try {
      (await pool.connect()).release();
    } catch (err) {
      await pool.end();
      throw new DatabaseUnreachableError(options.databaseUrl, err);
    }
    const db = drizzleNodePg(pool) as unknown as Db;
    return { db, kind: 'postgres', pool, close: once(() => pool.end()) };
  }
  const inMemory = !options.dataDir || options.dataDir === 'memory://';
  const unlock = inMemory ? () => {} : lockDataDir(options.dataDir as string);
  try {
    const pglite = await openEmbeddedDatabase(inMemory ? undefined : ownerOnlyDirectory(options.dataDir as string));
    // Drizzle's PGlite driver calls `query` and `transaction` only, which the thread's client answers.
    const db = drizzlePglite(pglite as unknown as PGlite) as unknown as Db;
    return {
      db,
      kind: 'pglite',
      pglite,
      lost: pglite.lost,
      close: once(async () => {
        await pglite.close();
        unlock();
      }),
    };
  } catch (err) {
    unlock();
    throw err;
  }
}

/**
 * The embedded database's folder in DATA_DIR, readable by this account alone (0700), as PostgreSQL
 * demands of its data directory: the files PGlite writes are 0666, and they hold password hashes,
 * queued mail with live reset links and everything else any local account could otherwise read or
 * change. A folder made by an earlier version is narrowed at start.
 */
function ownerOnlyDirectory(dataDir: string): string {
  const dir = join(dataDir, 'pgdata');
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  if ((statSync(dir).mode & 0o077) !== 0) chmodSync(dir, 0o700);
  return dir;
}

/** Round-trips to the database; used by /health. */
export async function pingDatabase(db: Db): Promise<void> {
  await db.execute(sql`select 1`);
}

/** The database error of either driver with this SQLSTATE, under Drizzle's wrapping (in `cause`). */
function driverError(err: unknown, sqlState: string): { constraint?: string } | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 3 && e; depth++) {
    const candidate = e as { code?: string; constraint?: string; cause?: unknown };
    if (candidate.code === sqlState) return candidate;
    e = candidate.cause;
  }
  return undefined;
}

/** Unique violation details from either driver, for mapping to a 409. */
export function uniqueViolation(err: unknown): { constraint: string } | undefined {
  const found = driverError(err, '23505');
  return found && { constraint: found.constraint ?? '' };
}

/**
 * Whether PostgreSQL ended this transaction to break a deadlock (40P01): nothing it did stands, and
 * running it again succeeds once the other transaction has gone on.
 */
export function deadlockDetected(err: unknown): boolean {
  return driverError(err, '40P01') !== undefined;
}

// Socket errors of a server that is down, restarting or cut off (a name that stops resolving too:
// in a cluster, a database service without endpoints). They are the database's only under a
// failed query, or when they name a port of a server opened here (a transaction's or COPY's own
// connection): the same codes from the mail server or an integration's endpoint are not.
const UNREACHABLE_SOCKET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
// SQLSTATEs of a server that cannot serve now: 57P01 admin_shutdown, 57P02 crash_shutdown,
// 57P03 cannot_connect_now (starting up, shutting down, in recovery), 53300 too_many_connections.
// Class 08 (connection exceptions) is matched as a class.
const UNREACHABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
// What node-postgres and its pool say, without a code, when a connection ends or never comes.
const UNREACHABLE_DRIVER_MESSAGE =
  /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error)/;

/**
 * Why `err` means the PostgreSQL server cannot be reached right now (refused, reset or cut
 * connection, a pool connect timeout, a server shutting down or starting), in a few words for the
 * log; undefined for any other error. Looks through Drizzle's wrapping and a refusal on several
 * addresses (an AggregateError). `fromDatabase`: the error came from a database connection or
 * query for certain (a socket error on a read names no port to tell it by).
 */
export function unreachableDatabaseReason(err: unknown, fromDatabase = false): string | undefined {
  const pending: { e: unknown; underQuery: boolean }[] = [{ e: err, underQuery: fromDatabase }];
  for (let seen = 0; pending.length > 0 && seen < 10; seen++) {
    const { e: value, underQuery } = pending.shift() as { e: unknown; underQuery: boolean };
    if (!value || typeof value !== 'object') continue;
    const e = value as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
    const code = typeof e.code === 'string' ? e.code : undefined;
    const message = typeof e.message === 'string' ? e.message : '';
    const reason = message ? `${code}: ${message}` : code;
    if (code && (UNREACHABLE_SQLSTATES.has(code) || /^08[0-9A-Z]{3}$/.test(code))) return reason;
    if (code && UNREACHABLE_SOCKET_CODES.has(code) && (underQuery || isDatabaseSocket(value))) return reason;
    if (UNREACHABLE_DRIVER_MESSAGE.test(message)) return message;
    const below = underQuery || value instanceof DrizzleQueryError;
    pending.push({ e: e.cause, underQuery: below });
    if (Array.isArray(e.errors)) for (const inner of e.errors) pending.push({ e: inner, underQuery: below });
  }
  return undefined;
}

/** Ports of the PostgreSQL servers this process opened. */
const databasePorts = new Set<number>();

function isDatabaseSocket(err: { port?: unknown; address?: unknown }): boolean {
  if (typeof err.port === 'number' && databasePorts.has(err.port)) return true;
  // A Unix-domain socket of PostgreSQL: <directory>/.s.PGSQL.<port>.
  return typeof err.address === 'string' && /\/\.s\.PGSQL\.\d+$/.test(err.address);
}

/**
 * The node-postgres connection under a Drizzle handle or transaction, for what only the driver
 * speaks (COPY); undefined on PGlite and on a pooled root handle.
 */
export function pgClientOf(db: DbOrTx): pg.ClientBase | undefined {
  const client = (db as unknown as { session?: { client?: unknown } }).session?.client;
  return client instanceof pg.Client ? client : undefined;
}

/**
 * The PGlite client under a Drizzle handle or transaction, for what only PGlite's own API takes (a
 * COPY from a blob); undefined on PostgreSQL.
 */
export function pgliteClientOf(db: DbOrTx): EmbeddedQueries | undefined {
  return asEmbeddedQueries((db as unknown as { session?: { client?: unknown } }).session?.client);
}

/** Runs raw SQL and returns its rows; both drivers answer `{ rows }`. */
export async function queryRows<T>(db: DbOrTx, query: SQL): Promise<T[]> {
  const result = (await db.execute(query)) as unknown as { rows: T[] };
  return result.rows;
}

/**
 * A query built once per database handle and run as a named prepared statement. Building a Drizzle
 * query costs about 140 µs of CPU per call, several times the round trip itself; hot read paths
 * (a user by id on every authenticated call) prepare theirs. A transaction handle gets its own.
 */
export function preparedPerHandle<P>(build: (db: DbOrTx) => P): (db: DbOrTx) => P {
  const cache = new WeakMap<DbOrTx, P>();
  return (db) => {
    let prepared = cache.get(db);
    if (prepared === undefined) {
      prepared = build(db);
      cache.set(db, prepared);
    }
    return prepared;
  };
}
