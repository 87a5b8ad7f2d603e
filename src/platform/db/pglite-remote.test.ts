import type { Worker } from 'node:worker_threads';
import { types } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase, pgliteClientOf, queryRows, uniqueViolation } from './client.js';
import { type EmbeddedDatabase, openEmbeddedDatabase } from './pglite-remote.js';

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A transaction that runs `first`, then waits until released, then runs `after` if given. */
function heldTransaction(database: EmbeddedDatabase, first: string, after?: string) {
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const done = database.transaction(async (tx) => {
    await tx.query(first);
    await held;
    if (after !== undefined) await tx.query(after);
  });
  return { done, release };
}

describe('PGlite in its own thread', () => {
  let embedded: EmbeddedDatabase;

  beforeAll(async () => {
    embedded = await openEmbeddedDatabase(undefined);
    await embedded.exec(`
      create table items (id int primary key, name text not null unique, data jsonb, at timestamptz, raw bytea);
      create table log (n int not null)`);
  });

  afterAll(async () => {
    await embedded.close();
  });

  it('answers rows as PGlite does, in both row modes, with parameters serialized there', async () => {
    const at = new Date('2026-03-04T05:06:07.089Z');
    const inserted = await embedded.query('insert into items values ($1, $2, $3, $4, $5)', [
      1,
      'first',
      JSON.stringify({ k: ['v', 2] }),
      at,
      new Uint8Array([0, 255, 7]),
    ]);
    expect(inserted.affectedRows).toBe(1);
    for (let round = 0; round < 2; round++) {
      // The second round runs from the thread's named statement.
      const objects = await embedded.query<Record<string, unknown>>('select * from items where id = $1', [1]);
      expect(objects.rows).toEqual([
        { id: 1, name: 'first', data: { k: ['v', 2] }, at, raw: new Uint8Array([0, 255, 7]) },
      ]);
      const arrays = await embedded.query('select id, name from items where id = $1', [1], { rowMode: 'array' });
      expect(arrays.rows).toEqual([[1, 'first']]);
    }
  });

  it("applies the caller's parsers (functions stay on this side) to the columns they name", async () => {
    const result = await embedded.query<{ at: unknown; name: unknown }>('select at, name from items where id = 1', [], {
      parsers: { [types.TIMESTAMPTZ]: (value: string) => `parsed:${value}` },
    });
    expect(result.rows[0]?.at).toMatch(/^parsed:2026-03-04 05:06:07\.089/);
    expect(result.rows[0]?.name).toBe('first');
  });

  it('answers json and jsonb nested thousands of levels deep, at the root and in a transaction', async () => {
    const text = `${'{"a":'.repeat(3000)}"bottom"${'}'.repeat(3000)}`;
    // Parsed in the thread, such a value could not cross: the answer was lost and its caller waited
    // forever. Compared as text: a deep equality recurses further than the stack allows.
    const root = await embedded.query<{ j: unknown; b: unknown }>('select $1::json as j, $1::jsonb as b', [text]);
    expect(root.rows.map((row) => [JSON.stringify(row.j) === text, JSON.stringify(row.b) === text])).toEqual([
      [true, true],
    ]);
    const inTransaction = await embedded.transaction((tx) =>
      tx.query<unknown[]>('select $1::jsonb as b', [text], { rowMode: 'array' }),
    );
    expect(inTransaction.rows.map((row) => JSON.stringify(row[0]) === text)).toEqual([true]);
    // A caller's own parser for the type still wins.
    const own = await embedded.query<{ b: unknown }>('select $1::jsonb as b', ['{"x": 1}'], {
      parsers: { [types.JSONB]: (value: string) => `own:${value}` },
    });
    expect(own.rows).toEqual([{ b: 'own:{"x": 1}' }]);
    expect((await embedded.query('select null::jsonb as b')).rows).toEqual([{ b: null }]);
  });

  it('reports a database error with its fields, and the session goes on', async () => {
    const err = await embedded.query("insert into items (id, name) values (2, 'first')").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).toMatchObject({ code: '23505', constraint: 'items_name_key' });
    expect((err as Error).message).toMatch(/duplicate key/);
    expect(uniqueViolation(err)).toEqual({ constraint: 'items_name_key' });
    expect((await embedded.query('select count(*)::int as n from items')).rows).toEqual([{ n: 1 }]);
  });

  it('commits a transaction whose callback resolves and rolls back one that throws', async () => {
    const value = await embedded.transaction(async (tx) => {
      await tx.query('insert into log values ($1)', [1]);
      await tx.exec('insert into log values (2); insert into log values (3)');
      return 'done';
    });
    expect(value).toBe('done');
    // One that runs no statement never begins, and answers its callback's value all the same.
    expect(await embedded.transaction(async () => 7)).toBe(7);
    const failure = new Error('changed my mind');
    await expect(
      embedded.transaction(async (tx) => {
        await tx.query('insert into log values ($1)', [4]);
        throw failure;
      }),
    ).rejects.toBe(failure);
    expect((await embedded.query('select n from log order by n')).rows).toEqual([{ n: 1 }, { n: 2 }, { n: 3 }]);
    await embedded.exec('delete from log');
  });

  it('keeps a root query out of an open transaction until it ends', async () => {
    const transaction = heldTransaction(embedded, 'insert into log values (10)', 'insert into log values (11)');
    await pause(20);
    const root = embedded.query<{ n: number }>('select count(*)::int as n from log');
    await pause(20);
    transaction.release();
    await transaction.done;
    expect((await root).rows).toEqual([{ n: 2 }]);
    await embedded.exec('delete from log');
  });

  it('begins a second transaction while the first waits on this thread, without waiting for each other', async () => {
    // The first transaction's callback waits on a timer: a second BEGIN that held the event loop
    // until the database was free would never let that timer fire.
    const first = embedded.transaction(async (tx) => {
      await tx.query('insert into log values (20)');
      await pause(30);
      await tx.query('insert into log values (21)');
    });
    await pause(5);
    const second = embedded.transaction(async (tx) => {
      const seen = await tx.query<{ n: number }>('select count(*)::int as n from log');
      await tx.query('insert into log values (22)');
      return seen.rows[0]?.n;
    });
    await first;
    // The second began once the first had committed, and saw its rows.
    expect(await second).toBe(2);
    expect((await embedded.query('select count(*)::int as n from log')).rows).toEqual([{ n: 3 }]);
    await embedded.exec('delete from log');
  });

  it("gives each statement its own answer while several transactions' BEGINs wait for the database", async () => {
    const slow = embedded.query('select pg_sleep(0.2)');
    const run = (n: number) =>
      embedded.transaction(async (tx) => {
        const first = await tx.query<{ v: number }>('select $1::int as v', [n]);
        const second = await tx.query<{ v: number }>('select $1::int * 10 as v', [n]);
        return [first.rows[0]?.v, second.rows[0]?.v];
      });
    const results = await Promise.all([run(1), run(2), run(3)]);
    await slow;
    expect(results).toEqual([
      [1, 10],
      [2, 20],
      [3, 30],
    ]);
  });

  it('runs the statements of one transaction one after another under Promise.all', async () => {
    // Another transaction is open, so the first statement's BEGIN is answered asynchronously: the
    // second must not reach the thread before the transaction has begun.
    const holder = heldTransaction(embedded, 'select 1');
    await pause(10);
    const both = embedded.transaction((tx) =>
      Promise.all([
        tx.query('insert into log values (40) returning n'),
        tx.query('insert into log values (41) returning n'),
      ]),
    );
    await pause(10);
    holder.release();
    await holder.done;
    const [a, b] = await both;
    expect([a.rows, b.rows]).toEqual([[{ n: 40 }], [{ n: 41 }]]);
    await embedded.exec('delete from log');
  });

  it('COPYs from a blob, at the root and inside a transaction', async () => {
    await embedded.query("copy log from '/dev/blob'", [], { blob: new Blob(['30\n31\n']) });
    await embedded.transaction(async (tx) => {
      await tx.query("copy log from '/dev/blob'", [], { blob: new Blob(['32\n']) });
    });
    expect((await embedded.query('select n from log order by n')).rows).toEqual([{ n: 30 }, { n: 31 }, { n: 32 }]);
    await embedded.exec('delete from log');
  });

  it('refuses custom serializers, which cannot cross to the thread', async () => {
    await expect(embedded.query('select $1::int', [1], { serializers: { 23: String } })).rejects.toThrow(/serializers/);
  });

  it('answers a call after close with an error instead of hanging, and reports no loss', async () => {
    const other = await openEmbeddedDatabase(undefined);
    await other.close();
    await expect(other.query('select 1')).rejects.toThrow(/exited/);
    const quiet = new Promise((resolve) => setTimeout(() => resolve('quiet'), 50));
    expect(await Promise.race([other.lost.then(() => 'lost'), quiet])).toBe('quiet');
  });

  it('reports the loss of its thread, and every call fails instead of hanging', async () => {
    const other = await openEmbeddedDatabase(undefined);
    // Stands in for a crash (a WebAssembly abort, say): the thread ends without close.
    await (other as unknown as { worker: Worker }).worker.terminate();
    expect((await other.lost).message).toMatch(/exited/);
    await expect(other.query('select 1')).rejects.toThrow(/exited/);
    await expect(other.transaction((tx) => tx.query('select 1'))).rejects.toThrow(/exited/);
  });
});

describe('Drizzle over the thread', () => {
  let database: Database;

  beforeAll(async () => {
    database = await openDatabase({});
    await database.db.execute(sql`create table notes (id int primary key, body text not null)`);
  });

  afterAll(async () => {
    await database.close();
  });

  it('runs nested transactions as savepoints, and reaches the transaction for a COPY', async () => {
    await database.db.transaction(async (tx) => {
      await tx.execute(sql`insert into notes values (1, 'kept')`);
      await expect(
        tx.transaction(async (inner) => {
          await inner.execute(sql`insert into notes values (2, 'undone')`);
          throw new Error('inner fails');
        }),
      ).rejects.toThrow('inner fails');
      const client = pgliteClientOf(tx);
      expect(client).toBeDefined();
      await client?.query("copy notes from '/dev/blob'", [], { blob: new Blob(['3\tcopied\n']) });
    });
    expect(await queryRows(database.db, sql`select id, body from notes order by id`)).toEqual([
      { id: 1, body: 'kept' },
      { id: 3, body: 'copied' },
    ]);
    expect(pgliteClientOf(database.db)).toBeDefined();
  });
});
