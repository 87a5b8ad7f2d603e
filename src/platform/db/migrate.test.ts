import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../../test/test-app.js';
import { openDatabase, queryRows } from './client.js';
import { listMigrations, migrate } from './migrate.js';

describe('migrate', () => {
  it('applies every committed migration once, and nothing on a second run', async () => {
    const { database, drop } = await openTestDatabase();
    try {
      expect(await migrate(database.db)).toEqual([]);
      const rows = await queryRows<{ tag: string }>(
        database.db,
        sql`select tag from gatehouse_migrations order by tag`,
      );
      expect(rows.map((r) => r.tag)).toEqual(listMigrations().map((m) => m.tag));
    } finally {
      await drop();
    }
  });

  it('lets nodes starting together migrate at the same time without colliding', async () => {
    const { database, url, drop } = await openTestDatabase();
    // On PostgreSQL, separate pools stand in for separate nodes; PGlite has one connection.
    const nodes = url
      ? await Promise.all([0, 1, 2].map(() => openDatabase({ databaseUrl: url, poolSize: 2 })))
      : [database, database, database];
    try {
      await database.db.execute(sql`drop schema public cascade`);
      await database.db.execute(sql`create schema public`);
      const results = await Promise.all(nodes.map((node) => migrate(node.db)));
      const applied = results.flat();
      expect(applied).toEqual(listMigrations().map((m) => m.tag));
    } finally {
      if (url) await Promise.all(nodes.map((n) => n.close()));
      await drop();
    }
  });
});
