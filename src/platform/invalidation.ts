import { EventEmitter } from 'node:events';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import type { Database, DbOrTx } from './db/client.js';

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
/** Delivered when a node may have missed notifications (its listening connection dropped): drop everything. */
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

const RECONNECT_DELAY_MS = 1_000;

/**
 * On PostgreSQL, keeps one dedicated connection (outside the pool, so it never takes a query slot
 * and never holds up closing the pool) LISTENing and re-delivers notifications locally
 * (this node's own notifications come back too; invalidating twice is harmless). After a lost
 * connection it reconnects and announces `ALL_TOPICS`, since notifications sent meanwhile are gone.
 */
export async function startInvalidationListener(
  database: Database,
  onError: (err: unknown) => void = () => {},
): Promise<InvalidationListener> {
  const pool = database.pool;
  if (database.kind !== 'postgres' || !pool) return { close: async () => {} };

  let client: pg.Client | undefined;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;

  const onNotification = (msg: pg.Notification) => {
    if (msg.channel !== CHANNEL || !msg.payload) return;
    const at = msg.payload.indexOf(':');
    if (at > 0) deliver(msg.payload.slice(0, at), msg.payload.slice(at + 1));
  };

  const connect = async (isReconnect: boolean): Promise<void> => {
    const c = new pg.Client(pool.options);
    c.on('notification', onNotification);
    c.on('error', (err) => {
      onError(err);
      c.removeListener('notification', onNotification);
      c.end().catch(() => {});
      if (client === c) client = undefined;
      scheduleReconnect();
    });
    try {
      await c.connect();
      await c.query(`LISTEN ${CHANNEL}`);
    } catch (err) {
      await c.end().catch(() => {});
      throw err;
    }
    client = c;
    if (isReconnect) deliver(ALL_TOPICS, 'reset');
  };

  const scheduleReconnect = () => {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      connect(true).catch((err) => {
        onError(err);
        scheduleReconnect();
      });
    }, RECONNECT_DELAY_MS);
    retry.unref();
  };

  await connect(false);

  return {
    close: async () => {
      closed = true;
      if (retry) clearTimeout(retry);
      const c = client;
      client = undefined;
      if (!c) return;
      c.removeListener('notification', onNotification);
      await c.end().catch(() => {});
    },
  };
}
