import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../../test/test-app.js';
import { type Database, openDatabase, queryRows } from './client.js';
import { listMigrations, migrate } from './migrate.js';

/**
 * Empties the test database and applies the committed migrations before `tag`: the state an
 * installation was in when `tag` arrived, to seed the data that migration must carry over.
 */
async function migrateUpTo(database: Database, tag: string): Promise<void> {
  await database.db.execute(sql`drop schema public cascade`);
  await database.db.execute(sql`create schema public`);
  const before = mkdtempSync(join(tmpdir(), 'migrations-'));
  try {
    cpSync(join(import.meta.dirname, '../../../drizzle'), before, { recursive: true });
    const journalPath = join(before, 'meta/_journal.json');
    const journal = JSON.parse(readFileSync(journalPath, 'utf8')) as { entries: { tag: string }[] };
    const at = journal.entries.findIndex((e) => e.tag === tag);
    writeFileSync(journalPath, JSON.stringify({ ...journal, entries: journal.entries.slice(0, at) }));
    await migrate(database.db, before);
  } finally {
    rmSync(before, { recursive: true, force: true });
  }
}

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

  it('keys the downstream sync states by the keycloak_id their users had (0022)', async () => {
    const { database, drop } = await openTestDatabase();
    try {
      await migrateUpTo(database, '0022_sync_state_by_keycloak_id');

      await database.db.execute(sql`
        with org as (insert into organizations (id, code, name) values (gen_random_uuid(), 'm22', 'M22') returning id),
        target as (
          insert into integrations (id, organization_id, name, service_type, auth_type, base_url)
          select gen_random_uuid(), id, 'downstream', 'user_provisioning', 'none', 'https://d.example.com' from org
          returning id, organization_id
        ),
        people as (
          insert into users (id, organization_id, email, external_id)
          select gen_random_uuid(), org.id, v.email, v.kc from org, (values ('a@m22.test', 'kc-a'), ('b@m22.test', null)) v(email, kc)
          returning id, organization_id
        )
        insert into user_sync_states (organization_id, integration_id, user_id, synced_active, attempted_at)
        select people.organization_id, target.id, people.id, true, now() from people, target`);
      // 0022 and whatever came after it.
      expect((await migrate(database.db))[0]).toBe('0022_sync_state_by_keycloak_id');
      // The user who has no keycloak_id any more names nothing the downstream could be told about.
      expect(
        await queryRows(
          database.db,
          sql`select s.keycloak_id, u.email from user_sync_states s join users u on u.id = s.user_id`,
        ),
      ).toEqual([{ keycloak_id: 'kc-a', email: 'a@m22.test' }]);
      // The state outlives its user: that is how the next sync learns to deactivate it.
      await database.db.execute(sql`delete from users where external_id = 'kc-a'`);
      expect(await queryRows(database.db, sql`select keycloak_id from user_sync_states`)).toEqual([
        { keycloak_id: 'kc-a' },
      ]);
    } finally {
      await drop();
    }
  });

  it('gives every user left without a primary role their most powerful one (0027)', async () => {
    const { database, drop } = await openTestDatabase();
    try {
      await migrateUpTo(database, '0027_primary_role_repair');

      await database.db.execute(sql`
        with org as (insert into organizations (id, code, name) values (gen_random_uuid(), 'm27', 'M27') returning id),
        r as (
          insert into roles (id, organization_id, code, name, level)
          select gen_random_uuid(), org.id, v.code, v.code, v.level from org, (values ('low', 9), ('high', 2), ('tie', 2)) v(code, level)
          returning id, code
        ),
        people as (
          insert into users (id, organization_id, email)
          select gen_random_uuid(), org.id, v.email from org, (values ('none@m27.test'), ('kept@m27.test')) v(email)
          returning id, email
        )
        insert into user_roles (user_id, role_id, is_primary)
        select people.id, r.id, people.email = 'kept@m27.test' and r.code = 'low' from people, r`);
      expect((await migrate(database.db))[0]).toBe('0027_primary_role_repair');
      // The one without a primary role gets the lowest level, then the first code; the other keeps theirs.
      expect(
        await queryRows(
          database.db,
          sql`select u.email, r.code from user_roles ur join users u on u.id = ur.user_id join roles r on r.id = ur.role_id
            where ur.is_primary order by u.email`,
        ),
      ).toEqual([
        { email: 'kept@m27.test', code: 'low' },
        { email: 'none@m27.test', code: 'high' },
      ]);
    } finally {
      await drop();
    }
  });
});
