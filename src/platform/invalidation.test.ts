import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../test/test-app.js';
import type { Database } from './db/client.js';
import { ALL_TOPICS, onInvalidation, publishInvalidation, startInvalidationListener } from './invalidation.js';

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
  beforeAll(async () => {
    ({ database, drop } = await openTestDatabase());
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
});
