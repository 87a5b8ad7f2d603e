import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'drizzle-orm';
import { type Db, queryRows } from './client.js';

const MIGRATIONS_DIR = join(dirname(fileURLToPath(import.meta.url)), '../../../drizzle');
// Any fixed number: every node takes the same advisory lock, so only one applies migrations at a time.
const MIGRATION_LOCK_KEY = 0x6761_7465;

interface JournalEntry {
  idx: number;
  tag: string;
}

/** Migration files committed under drizzle/, in the order drizzle-kit's journal gives. */
export function listMigrations(dir = MIGRATIONS_DIR): { tag: string; statements: string[] }[] {
  const journal = JSON.parse(readFileSync(join(dir, 'meta/_journal.json'), 'utf8')) as { entries: JournalEntry[] };
  return journal.entries
    .sort((a, b) => a.idx - b.idx)
    .map((entry) => ({
      tag: entry.tag,
      statements: readFileSync(join(dir, `${entry.tag}.sql`), 'utf8')
        .split('--> statement-breakpoint')
        .map((s) => s.trim())
        .filter(Boolean),
    }));
}

/**
 * Applies pending migrations in one transaction under a transaction-scoped advisory lock: nodes
 * starting together queue on the lock, and the later ones find nothing left to do.
 * Returns the tags it applied.
 */
export async function migrate(db: Db, dir = MIGRATIONS_DIR): Promise<string[]> {
  const migrations = listMigrations(dir);
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${MIGRATION_LOCK_KEY})`);
    await tx.execute(sql`create table if not exists gatehouse_migrations (
      tag text primary key,
      applied_at timestamptz not null default now()
    )`);
    const done = await queryRows<{ tag: string }>(tx, sql`select tag from gatehouse_migrations`);
    const applied = new Set(done.map((r) => r.tag));
    const pending = migrations.filter((m) => !applied.has(m.tag));
    for (const migration of pending) {
      for (const statement of migration.statements) await tx.execute(sql.raw(statement));
      await tx.execute(sql`insert into gatehouse_migrations (tag) values (${migration.tag})`);
    }
    return pending.map((m) => m.tag);
  });
}
