import PgBoss from 'pg-boss';
import type { Database, DbOrTx } from '../db/client.js';
import type { EmbeddedDatabase } from '../db/pglite-remote.js';
import { jobDefinitions } from './registry.js';

/** pg-boss keeps its tables in this schema, beside ours; its own versioned DDL creates it. */
export const JOB_SCHEMA = 'pgboss';

/** What pg-boss calls instead of its own pool: `executeSql` answers `{ rows }`, or nothing once closed. */
export interface BossDb {
  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: unknown[] }>;
}

// pg-boss wraps DDL and maintenance as `BEGIN; …; COMMIT;` in one parameterless string.
const EXPLICIT_TRANSACTION = /^\s*BEGIN;([\s\S]*)COMMIT;\s*$/;

/**
 * The PGlite side of pg-boss. Parameterised statements go through `query` (extended protocol).
 * Parameterless text may hold several statements, which only `exec` (simple protocol) runs. An
 * explicit BEGIN…COMMIT is unwrapped into `pglite.transaction` so a failing statement is rolled
 * back: left to `exec`, it would leave the one shared connection in an aborted transaction and
 * every later query, HTTP ones included, would fail.
 */
function pgliteDb(pglite: EmbeddedDatabase): BossDb {
  return {
    async executeSql(text, values) {
      if (values && values.length > 0) return pglite.query(text, values);
      const wrapped = EXPLICIT_TRANSACTION.exec(text);
      const results = wrapped
        ? await pglite.transaction((tx) => tx.exec(wrapped[1] as string))
        : await pglite.exec(text);
      return results.at(-1) ?? { rows: [] };
    },
  };
}

/** The root connection pg-boss uses for the worker, maintenance and schema creation. */
export function bossDbFor(database: Database): BossDb {
  if (database.pglite) return pgliteDb(database.pglite);
  const pool = database.pool;
  if (!pool) throw new Error('database has neither a PGlite instance nor a pool');
  // pg's pool destroys a client whose query failed, so an aborted BEGIN…COMMIT never poisons the pool.
  return { executeSql: (text, values) => pool.query(text, values) };
}

/**
 * The driver connection under a Drizzle handle: for a transaction, the very connection the
 * transaction runs on, so a job sent through it commits or rolls back with the caller's writes.
 * Drizzle keeps it at `session.client` on both drivers (PGlite: the transaction object; pg: the
 * checked-out client, or the pool for the root handle). The enqueue tests pin this down.
 */
export function bossDbOver(dbOrTx: DbOrTx): BossDb {
  const client = (dbOrTx as unknown as { session?: { client?: Partial<Queryable> } }).session?.client;
  if (!client || typeof client.query !== 'function') {
    throw new Error('cannot reach the driver connection under this Drizzle handle (drizzle-orm internals changed?)');
  }
  const queryable = client as Queryable;
  return { executeSql: (text, values) => queryable.query(text, values) };
}

/**
 * A BossDb that remembers its in-flight statements: pg-boss completes jobs without awaiting, so
 * the worker drains them before the database closes, and once closed answers nothing (as
 * pg-boss's own closed pool does) instead of throwing into an unawaited promise.
 */
export class TrackedBossDb implements BossDb {
  readonly #inner: BossDb;
  readonly #inFlight = new Set<Promise<unknown>>();
  #closed = false;

  constructor(inner: BossDb) {
    this.#inner = inner;
  }

  executeSql(text: string, values?: unknown[]): Promise<{ rows: unknown[] }> {
    if (this.#closed) return Promise.resolve(undefined as unknown as { rows: unknown[] });
    const running = this.#inner.executeSql(text, values);
    this.#inFlight.add(running);
    const forget = () => this.#inFlight.delete(running);
    running.then(forget, forget);
    return running;
  }

  /** Refuses new statements and waits for the running ones. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([...this.#inFlight]);
  }
}

/** A pg-boss instance on our schema, without cron scheduling. */
export function newBoss(db: BossDb, options: Partial<PgBoss.ConstructorOptions> = {}): PgBoss {
  return new PgBoss({
    db: db as PgBoss.Db,
    schema: JOB_SCHEMA,
    // Cron schedules are not used; without them pg-boss runs no clock-skew or cron timers.
    schedule: false,
    ...options,
  });
}

/**
 * Never started: it only shapes `send`/`fetch`/`complete`/`fail` calls, and every call names the
 * connection to use (`{ db }`), so enqueueing works in any process, worker or not.
 */
export const sender = newBoss({
  executeSql: () => Promise.reject(new Error('pg-boss sender used without a connection')),
});

function queueOf({ name, options }: ReturnType<typeof jobDefinitions>[number]): PgBoss.Queue {
  return {
    name,
    policy: options.policy ?? 'standard',
    retryLimit: options.retryLimit,
    retryDelay: options.retryDelay,
    retryBackoff: options.retryBackoff,
    expireInSeconds: options.expireInSeconds,
  };
}

// Any fixed number, distinct from the migration lock: nodes install pg-boss one at a time.
const INSTALL_LOCK_KEY = 0x6a6f_6273;

/**
 * Creates or upgrades pg-boss's schema and one queue per registered handler, with the handler's
 * retry settings as the queue's defaults. Idempotent, and safe when several nodes start at once on
 * a fresh database: pg-boss's own advisory lock is taken inside the transaction that creates the
 * schema, whose `CREATE SCHEMA IF NOT EXISTS` then still reads the catalog as it was before the
 * wait and collides with the winner's schema. A session lock held on a separate connection around
 * the whole install makes a later node start fresh transactions that see the schema. Runs in
 * every process that enqueues, since pg-boss drops jobs sent to a queue that does not exist.
 */
export async function installJobs(database: Database): Promise<void> {
  const lock = database.pool ? await database.pool.connect() : undefined;
  try {
    await lock?.query('select pg_advisory_lock($1)', [INSTALL_LOCK_KEY]);
    const boss = newBoss(bossDbFor(database), { supervise: false, migrate: true });
    // Failures here reject the awaited calls below; the listener only keeps an 'error' event from throwing.
    boss.on('error', () => {});
    await boss.start();
    try {
      for (const definition of jobDefinitions()) {
        const options = queueOf(definition);
        await boss.createQueue(definition.name, options);
        // createQueue leaves an existing queue alone; settings changed in code still apply.
        await boss.updateQueue(definition.name, options);
      }
    } finally {
      await boss.stop({ graceful: false, close: false });
    }
  } finally {
    if (lock) {
      await lock.query('select pg_advisory_unlock($1)', [INSTALL_LOCK_KEY]).catch(() => {});
      lock.release();
    }
  }
}
