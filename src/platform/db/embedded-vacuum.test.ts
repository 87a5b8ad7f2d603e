import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Database, openDatabase } from './client.js';
import { startEmbeddedVacuum, vacuumEmbedded } from './embedded-vacuum.js';
import { migrate } from './migrate.js';
import type { EmbeddedDatabase } from './pglite-remote.js';

interface TableStats {
  name: string;
  kind: string;
  vacuumed: boolean;
  analyzed: boolean;
}

/** Every product table with whether it has been vacuumed and analyzed since the stats were reset. */
async function tableStats(pglite: EmbeddedDatabase): Promise<TableStats[]> {
  const { rows } = await pglite.query<TableStats>(`
    select s.schemaname || '.' || s.relname as name, c.relkind::text as kind,
      s.last_vacuum is not null as vacuumed, s.last_analyze is not null as analyzed
    from pg_stat_user_tables s join pg_class c on c.oid = s.relid
    order by 1`);
  return rows;
}

describe('vacuum and statistics on the embedded database', () => {
  let database: Database;
  let pglite: EmbeddedDatabase;
  const log = { debug: () => {}, warn: (..._args: unknown[]) => {} };

  beforeAll(async () => {
    database = await openDatabase({});
    await migrate(database.db);
    pglite = database.pglite as EmbeddedDatabase;
  });

  afterAll(async () => {
    await database.close();
  });

  it('vacuums and analyzes every table, partitions included, and analyzes partitioned parents', async () => {
    await pglite.exec(
      `insert into organizations (id, code, name) values ('0190a6c2-0000-7000-8000-00000000a001', 'vac', 'Vac')`,
    );
    const before = await tableStats(pglite);
    expect(before.filter((t) => t.analyzed)).toEqual([]);

    const { tables } = await vacuumEmbedded(pglite);

    const after = await tableStats(pglite);
    expect(tables).toBe(after.length);
    expect(after.map((t) => t.name)).toEqual(
      expect.arrayContaining(['public.users', 'public.activities', 'public.activities_default']),
    );
    expect(after.filter((t) => !t.analyzed)).toEqual([]);
    // A partitioned parent holds no rows of its own: it is analyzed, its partitions are vacuumed.
    expect(after.filter((t) => t.kind === 'r' && !t.vacuumed)).toEqual([]);
    expect(after.some((t) => t.kind === 'p')).toBe(true);
    const { rows } = await pglite.query<{ reltuples: number }>(
      `select reltuples from pg_class where relname = 'organizations'`,
    );
    expect(rows[0]?.reltuples).toBeGreaterThan(0);
  });

  it('stops between tables when asked', async () => {
    let asked = 0;
    const { tables } = await vacuumEmbedded(pglite, () => asked++ >= 2);
    expect(tables).toBe(2);
  });

  it('runs a first pass soon after start, and stop waits for a pass under way', async () => {
    const other = await openDatabase({});
    try {
      await migrate(other.db);
      const embedded = other.pglite as EmbeddedDatabase;
      const debug: unknown[] = [];
      const vacuum = startEmbeddedVacuum(
        embedded,
        { ...log, debug: (entry: unknown) => debug.push(entry) },
        { firstAfterMs: 10, intervalMs: 60_000 },
      );
      await expect.poll(() => debug.length, { timeout: 20_000 }).toBe(1);
      await vacuum.stop();
      expect(debug[0]).toMatchObject({ tables: expect.any(Number) });
      expect((await tableStats(embedded)).filter((t) => !t.analyzed)).toEqual([]);
    } finally {
      await other.close();
    }
  });
});
