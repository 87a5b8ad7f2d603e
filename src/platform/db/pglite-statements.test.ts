import { PGlite } from '@electric-sql/pglite';
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { withPreparedStatements } from './pglite-statements.js';

describe('named prepared statements on PGlite', () => {
  let pglite: PGlite;
  let db: ReturnType<typeof drizzle>;

  const prepared = async () =>
    (await pglite.query<{ name: string; statement: string }>('select name, statement from pg_prepared_statements'))
      .rows;

  beforeAll(async () => {
    pglite = await PGlite.create();
    await pglite.exec(`
      create table things (
        id uuid primary key,
        name text not null unique,
        size int,
        tags text[] not null default '{}',
        data jsonb not null default '{}',
        seen_at timestamptz,
        active boolean not null default true
      )`);
    db = drizzle(withPreparedStatements(pglite));
  });

  afterAll(async () => {
    await pglite.close();
  });

  it('answers the rows query() answers, from a named statement from the second call on', async () => {
    const id = '0190a6c2-0000-7000-8000-000000000001';
    const seenAt = new Date('2026-01-02T03:04:05.678Z');
    const insert = (name: string, n: string) =>
      db.execute(
        sql`insert into things (id, name, size, tags, data, seen_at) values (${n}, ${name}, ${7}, ${sql.param(['a', 'b,c'])}, ${JSON.stringify({ k: [1, 'x'] })}, ${seenAt}) returning id`,
      );
    await insert('first', id);
    await insert('second', '0190a6c2-0000-7000-8000-000000000002');
    expect((await prepared()).map((p) => p.statement)).toContainEqual(expect.stringContaining('insert into things'));

    const select = () => db.execute(sql`select * from things where id = ${id}`);
    const viaQuery = await pglite.query('select * from things where id = $1', [id]);
    for (let call = 0; call < 3; call++) {
      const result = await select();
      expect(result.rows).toEqual([
        {
          id,
          name: 'first',
          size: 7,
          tags: ['a', 'b,c'],
          data: { k: [1, 'x'] },
          // Drizzle keeps timestamps as text and maps them itself.
          seen_at: expect.stringMatching(/^2026-01-02 03:04:05\.678\+00/),
          active: true,
        },
      ]);
      expect(result.rows[0]?.data).toEqual(viaQuery.rows[0] && (viaQuery.rows[0] as { data: unknown }).data);
    }
    expect((await prepared()).filter((p) => p.statement.startsWith('select * from things'))).toHaveLength(1);
  });

  it('gives Drizzle the same rows in array mode, nulls included', async () => {
    const query = sql`select name, size, seen_at from things where name = ${'first'} or size is null order by name`;
    await db.execute(sql`insert into things (id, name) values (${'0190a6c2-0000-7000-8000-000000000003'}, ${'third'})`);
    const first = await db.execute(query);
    const second = await db.execute(query);
    expect(second.rows).toEqual(first.rows);
    expect(second.rows.map((r) => r.size)).toEqual([7, null]);
  });

  it('counts affected rows of writes run from a named statement', async () => {
    const update = () => db.execute(sql`update things set size = size + 1 where size is not null`);
    await update();
    const result = (await update()) as unknown as { affectedRows: number };
    expect(result.affectedRows).toBe(2);
  });

  it('reports a refused write with its code and constraint, and the database goes on', async () => {
    const insert = (id: string) => db.execute(sql`insert into things (id, name) values (${id}, ${'dup'})`);
    await insert('0190a6c2-0000-7000-8000-000000000010');
    await expect(insert('0190a6c2-0000-7000-8000-000000000011')).rejects.toMatchObject({
      cause: { code: '23505', constraint: 'things_name_key' },
    });
    await expect(insert('0190a6c2-0000-7000-8000-000000000012')).rejects.toMatchObject({ cause: { code: '23505' } });
    expect((await db.execute(sql`select count(*)::int as n from things where name = ${'dup'}`)).rows).toEqual([
      { n: 1 },
    ]);
  });

  it('runs a transaction’s statements inside it, and a root statement only after it ends', async () => {
    const count = () => db.execute(sql`select count(*)::int as n from things where name like ${'tx-%'}`);
    await count();
    await count();
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tx = db.transaction(async (t) => {
      for (const n of [1, 2]) {
        await t.execute(
          sql`insert into things (id, name) values (${`0190a6c2-0000-7000-8000-00000000002${n}`}, ${`tx-${n}`})`,
        );
      }
      expect((await t.execute(sql`select count(*)::int as n from things where name like ${'tx-%'}`)).rows).toEqual([
        { n: 2 },
      ]);
      await held;
    });
    // Issued while the transaction is open: it must neither join it nor run before it commits.
    const outside = count();
    await new Promise((resolve) => setTimeout(resolve, 50));
    release();
    await tx;
    expect((await outside).rows).toEqual([{ n: 2 }]);

    await expect(
      db.transaction(async (t) => {
        await t.execute(
          sql`insert into things (id, name) values (${'0190a6c2-0000-7000-8000-000000000031'}, ${'tx-3'})`,
        );
        await t.execute(
          sql`insert into things (id, name) values (${'0190a6c2-0000-7000-8000-000000000032'}, ${'tx-1'})`,
        );
      }),
    ).rejects.toMatchObject({ cause: { code: '23505' } });
    expect((await count()).rows).toEqual([{ n: 2 }]);
  });

  it('answers the new row shape after a schema change instead of failing on the old plan', async () => {
    const select = () => db.execute(sql`select * from things where name = ${'first'}`);
    await select();
    await select();
    await pglite.exec('alter table things add column note text');
    const after = await select();
    expect(after.rows[0]).toHaveProperty('note', null);
    expect((await select()).rows[0]).toHaveProperty('note', null);
  });

  it('keeps at most 500 statements, dropping the least recently used', async () => {
    const hot = () => db.execute(sql`select ${1}::int as hot`);
    await hot();
    await hot();
    for (let i = 0; i < 520; i++) {
      const query = sql.raw(`select ${i} as n`);
      await db.execute(query);
      await db.execute(query);
      if (i % 100 === 0) await hot();
    }
    const statements = await prepared();
    expect(statements.length).toBeLessThanOrEqual(500);
    expect(statements.map((s) => s.statement)).toContain('select $1::int as hot');
    expect(statements.map((s) => s.statement)).not.toContain('select 0 as n');
  });
});
