import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTcpProxy } from '../../test/tcp-proxy.js';
import { openTestDatabase } from '../../test/test-app.js';
import type { Database } from './db/client.js';
import {
  ALL_TOPICS,
  cachesAreCurrent,
  onInvalidation,
  publishInvalidation,
  startInvalidationListener,
} from './invalidation.js';

async function eventually(check: () => boolean, timeoutMs = 3_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('invalidation bus', () => {
  let database: Database;
  let drop: () => Promise<void>;
  let url: string | undefined;
  beforeAll(async () => {
    ({ database, drop, url } = await openTestDatabase());
  });
  afterAll(() => drop());

  it('tells in-process subscribers at once, per topic and on the catch-all, until they unsubscribe', async () => {
    const seen: string[] = [];
    const all: string[] = [];
    const off = onInvalidation('user', (id) => seen.push(id));
    const offAll = onInvalidation(ALL_TOPICS, (event) => all.push(event));
    const published = publishInvalidation(database.db, 'user', 'u1');
    // Synchronous, before the notification round trip completes.
    expect(seen).toEqual(['u1']);
    await published;
    await publishInvalidation(database.db, 'session', 's1');
    expect(all).toEqual(expect.arrayContaining(['user:u1', 'session:s1']));
    off();
    offAll();
    await publishInvalidation(database.db, 'user', 'u2');
    expect(seen).not.toContain('u2');
  });

  it('publishes inside a transaction without disturbing it', async () => {
    const seen: string[] = [];
    const off = onInvalidation('organization', (id) => seen.push(id));
    await database.db.transaction(async (tx) => {
      await publishInvalidation(tx, 'organization', 'o1');
    });
    off();
    expect(seen).toContain('o1');
  });

  it.runIf(process.env.TEST_DATABASE_URL)(
    'delivers a NOTIFY sent by another node to this node, and stops after close',
    async () => {
      const listener = await startInvalidationListener(database);
      const seen: string[] = [];
      const off = onInvalidation('session', (id) => seen.push(id));
      const pool = database.pool;
      if (!pool) throw new Error('PostgreSQL pool expected');
      // Raw SQL on another connection: only the LISTEN path can bring this to the subscriber.
      await pool.query(`select pg_notify('gatehouse_invalidation', 'session:remote-1')`);
      await eventually(() => seen.includes('remote-1'));
      await listener.close();
      await pool.query(`select pg_notify('gatehouse_invalidation', 'session:remote-2')`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(seen).not.toContain('remote-2');
      off();
    },
  );

  it.runIf(process.env.TEST_DATABASE_URL)(
    'takes a connection that stops answering as lost within seconds, and trusts caches again once subscribed',
    async () => {
      const target = new URL(url as string);
      const proxy = await startTcpProxy(target.hostname, Number(target.port));
      target.host = `127.0.0.1:${proxy.port}`;
      const pool = new pg.Pool({ connectionString: target.toString(), connectionTimeoutMillis: 1_000 });
      const reported: string[] = [];
      const listener = await startInvalidationListener({ kind: 'postgres', pool } as unknown as Database, {
        failed: (_err, reason) => reported.push(`failed: ${reason}`),
        succeeded: () => reported.push('succeeded'),
      });
      const resets: string[] = [];
      const off = onInvalidation(ALL_TOPICS, (event) => event === 'reset' && resets.push(event));
      try {
        expect(cachesAreCurrent()).toBe(true);
        reported.length = 0;
        // Silence: no error, no end, the socket stays open.
        proxy.pause();
        const pausedAt = Date.now();
        await eventually(() => !cachesAreCurrent(), 6_000);
        expect(Date.now() - pausedAt).toBeLessThan(4_500);
        expect(resets).toEqual(['reset']);
        expect(reported[0]).toMatch(/^failed: no answer to the heartbeat within 2 s$/);
        proxy.restore();
        await eventually(() => cachesAreCurrent(), 10_000);
        expect(resets).toEqual(['reset', 'reset']);
        expect(reported.at(-1)).toBe('succeeded');
        // Subscribed: notifications arrive again.
        const seen: string[] = [];
        const offSession = onInvalidation('session', (id) => seen.push(id));
        await database.pool?.query(`select pg_notify('gatehouse_invalidation', 'session:after-pause')`);
        await eventually(() => seen.includes('after-pause'));
        offSession();
      } finally {
        off();
        proxy.restore();
        await listener.close();
        await pool.end();
        await proxy.close();
      }
      expect(cachesAreCurrent()).toBe(true);
    },
    20_000,
  );
});
