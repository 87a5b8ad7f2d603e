import { EventEmitter } from 'node:events';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { type Database, type DbOrTx, unreachableDatabaseReason } from './db/client.js';
import type { OutageLog } from './outage-log.js';

/**
 * Cache invalidation across nodes. Every node keeps short-lived in-memory state (session
 * revocation, signing keys); a change must reach all of them at once.
 *
 * - In-process, subscribers are told synchronously when `publishInvalidation` is called.
 * - Across nodes, the same call runs `pg_notify` on the caller's handle. Inside a transaction
 *   PostgreSQL delivers the notification only at commit, so other nodes never reload the state
 *   before it is visible. Each PostgreSQL node holds one dedicated connection that LISTENs.
 * - PGlite is one process: the in-process delivery is the whole story.
 */

const CHANNEL = 'gatehouse_invalidation';
/**
 * Delivered when a node may have missed notifications: the moment its listening connection is lost,
 * and again once it listens again. Drop everything.
 */
export const ALL_TOPICS = '*';

const local = new EventEmitter();
local.setMaxListeners(0);

/** Subscribes to one topic (`session`, `user`, …); `ALL_TOPICS` subscribers hear every event and resets. */
export function onInvalidation(topic: string, handler: (id: string) => void): () => void {
  local.on(topic, handler);
  return () => local.off(topic, handler);
}

function deliver(topic: string, id: string): void {
  local.emit(topic, id);
  if (topic !== ALL_TOPICS) local.emit(ALL_TOPICS, `${topic}:${id}`);
}

/** Tells this process now and every other node (at commit, when `db` is a transaction). */
export async function publishInvalidation(db: DbOrTx, topic: string, id: string): Promise<void> {
  deliver(topic, id);
  await db.execute(sql`select pg_notify(${CHANNEL}, ${`${topic}:${id}`})`);
}

export interface InvalidationListener {
  close(): Promise<void>;
}

/**
 * Listeners of this process that are not subscribed right now (connection lost, reconnecting).
 * While one is, a change made on another node reaches nobody here.
 */
let listenersDown = 0;

/**
 * Whether the caches this bus guards may be read and filled: false from the moment a listener's
 * connection is lost until it is subscribed again, since an invalidation sent meanwhile is gone.
 * Callers then read the database (and answer 503 while it cannot be reached). A counter read, so
 * cheap enough for every request.
 */
export function cachesAreCurrent(): boolean {
  return listenersDown === 0;
}

/** The listening connection's `application_name`. */
export const LISTENER_APPLICATION_NAME = 'gatehouse invalidation listener';
const RECONNECT_DELAY_MS = 1_000;
/**
 * A connection whose network went silent reports nothing (no error, no end) for as long as the
 * kernel keeps retrying, minutes; meanwhile every notification is lost. A `select 1` this often
 * must answer within `ANSWER_TIMEOUT_MS`, else the connection is taken as lost and closed.
 */
const HEARTBEAT_INTERVAL_MS = 1_000;
const ANSWER_TIMEOUT_MS = 2_000;

class NoAnswerError extends Error {
  constructor(what: string) {
    super(`no answer to ${what} within ${ANSWER_TIMEOUT_MS / 1000} s`);
    this.name = 'NoAnswerError';
  }
}

/** `work`, or a `NoAnswerError` once the answer timeout has passed. */
function answered<T>(work: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NoAnswerError(what)), ANSWER_TIMEOUT_MS);
    timer.unref();
  });
  work.catch(() => {}); // settled later than the timeout: nobody waits for it any more
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

/** Closes the socket at once: `end()` would wait for a server that may never answer. */
function destroy(c: pg.Client): void {
  c.removeAllListeners('notification');
  (c as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

const quiet: OutageLog = { failed: () => {}, succeeded: () => {} };

/**
 * On PostgreSQL, keeps one dedicated connection (outside the pool, so it never takes a query slot
 * and never holds up closing the pool) LISTENing and re-delivers notifications locally
 * (this node's own notifications come back too; invalidating twice is harmless). The moment that
 * connection is lost (an error, its end, or a heartbeat without answer) it announces `ALL_TOPICS`
 * and `cachesAreCurrent()` turns false; it reconnects every second, and once subscribed again turns
 * it true and announces `ALL_TOPICS` once more (what was read meanwhile may predate the LISTEN).
 */
export async function startInvalidationListener(
  database: Database,
  log: OutageLog = quiet,
): Promise<InvalidationListener> {
  const pool = database.pool;
  if (database.kind !== 'postgres' || !pool) return { close: async () => {} };

  let client: pg.Client | undefined;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let heartbeat: NodeJS.Timeout | undefined;
  /** Counted in `listenersDown` while true. */
  let down = false;

  const setDown = (value: boolean) => {
    if (down === value) return;
    down = value;
    listenersDown += value ? 1 : -1;
    deliver(ALL_TOPICS, 'reset');
  };

  const onNotification = (msg: pg.Notification) => {
    if (msg.channel !== CHANNEL || !msg.payload) return;
    const at = msg.payload.indexOf(':');
    if (at > 0) deliver(msg.payload.slice(0, at), msg.payload.slice(at + 1));
  };

  // Whatever fails on this connection fails on the database's.
  const reasonOf = (err: unknown) =>
    err instanceof NoAnswerError ? err.message : unreachableDatabaseReason(err, true);

  /** Gives up the current connection; later reports about it (its end after an error) change nothing. */
  const lose = (c: pg.Client, err: unknown) => {
    if (client !== c) return;
    client = undefined;
    clearInterval(heartbeat);
    destroy(c);
    if (closed) return;
    setDown(true);
    log.failed(err, reasonOf(err));
    scheduleReconnect();
  };

  const startHeartbeat = (c: pg.Client) => {
    let waiting = false;
    heartbeat = setInterval(() => {
      if (waiting) return;
      waiting = true;
      answered(c.query('select 1'), 'the heartbeat').then(
        () => {
          waiting = false;
        },
        (err) => lose(c, err),
      );
    }, HEARTBEAT_INTERVAL_MS);
    heartbeat.unref();
  };

  const connect = async (): Promise<void> => {
    // Named, so an operator can tell it in pg_stat_activity (its last query is the heartbeat's).
    const c = new pg.Client({ ...pool.options, application_name: LISTENER_APPLICATION_NAME });
    c.on('notification', onNotification);
    c.on('error', (err) => lose(c, err));
    c.on('end', () => lose(c, new Error('Connection terminated unexpectedly')));
    try {
      // Bounded by the pool's connectionTimeoutMillis.
      await c.connect();
      await answered(c.query(`LISTEN ${CHANNEL}`), 'LISTEN');
    } catch (err) {
      destroy(c);
      throw err;
    }
    if (closed) {
      destroy(c);
      return;
    }
    client = c;
    startHeartbeat(c);
    setDown(false);
    log.succeeded();
  };

  const scheduleReconnect = () => {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      connect().catch((err) => {
        log.failed(err, reasonOf(err));
        scheduleReconnect();
      });
    }, RECONNECT_DELAY_MS);
    retry.unref();
  };

  await connect();

  return {
    close: async () => {
      closed = true;
      if (retry) clearTimeout(retry);
      clearInterval(heartbeat);
      if (down) {
        down = false;
        listenersDown--;
      }
      const c = client;
      client = undefined;
      if (!c) return;
      c.removeListener('notification', onNotification);
      await answered(c.end(), 'closing').catch(() => destroy(c));
    },
  };
}
