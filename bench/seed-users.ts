// Puts N users (default 1,000,000) across 10 organizations into the database with set-based SQL:
// one INSERT … SELECT FROM generate_series per batch, UUIDv7-like ids built in SQL (48-bit
// millisecond timestamp, version 7, RFC 9562 variant) so ids and date_joined follow insertion order.
//
//   node --import tsx bench/seed-users.ts [--count 1000000] [--organizations 10]
//
// Targets DATABASE_URL (or BENCH_DATABASE_URL) when set, else the embedded database in DATA_DIR
// (default ./data; stop the server first, it holds that folder). Seeded users can log in with the
// password printed at the end. Running it again adds nothing that exists (same emails).
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import { uuidv7 } from 'uuidv7';
import { hashPassword } from '../src/platform/crypto/passwords.js';
import { type Db, openDatabase, queryRows } from '../src/platform/db/client.js';
import { migrate } from '../src/platform/db/migrate.js';

export const SEEDED_PASSWORD = 'bench-user-password-1';

export interface SeedResult {
  inserted: number;
  seconds: number;
  rowsPerSecond: number;
  organizations: string[];
  /** Up to 1,000 ids spread over the seeded users, for scenarios that read single users. */
  sampleUserIds: string[];
}

const FIRST = ['Ada', 'Alan', 'Grace', 'Edsger', 'Barbara', 'Donald', 'Frances', 'Ken', 'Margaret', 'Dennis'];
const LAST = [
  'Lovelace',
  'Turing',
  'Hopper',
  'Dijkstra',
  'Liskov',
  'Knuth',
  'Allen',
  'Thompson',
  'Hamilton',
  'Ritchie',
];

const literal = (value: string) => `'${value.replaceAll("'", "''")}'`;
const textArray = (values: string[]) => `array[${values.map(literal).join(',')}]::text[]`;

/** Inserts `count` users in batches; the organizations `bench-org-0…` are created when missing. */
export async function seedUsers(
  db: Db,
  options: { count: number; organizations?: number; batch?: number; log?: (line: string) => void },
): Promise<SeedResult> {
  const orgCount = options.organizations ?? 10;
  const batch = options.batch ?? 50_000;
  const log = options.log ?? (() => {});
  const codes = Array.from({ length: orgCount }, (_, i) => `bench-org-${i}`);
  for (const code of codes) {
    await db.execute(sql`insert into organizations (id, code, name)
      values (${uuidv7()}, ${code}, ${`Benchmark organization ${code.slice(10)}`})
      on conflict (code) do nothing`);
  }
  const orgRows = await queryRows<{ id: string; code: string }>(
    db,
    sql.raw(`select id::text, code from organizations where code = any(${textArray(codes)})`),
  );
  const orgIds = codes.map((code) => orgRows.find((r) => r.code === code)?.id as string);
  const hash = await hashPassword(SEEDED_PASSWORD);
  // One millisecond per user, ending now: ids sort in insertion order and stay in the past.
  const baseMs = Date.now() - options.count;
  const salt = uuidv7();

  const started = process.hrtime.bigint();
  let inserted = 0;
  for (let start = 0; start < options.count; start += batch) {
    const end = Math.min(options.count, start + batch) - 1;
    const rows = await queryRows<{ n: number | string }>(
      db,
      sql.raw(`with ins as (
        insert into users (organization_id, id, username, email, first_name, last_name, password_hash, date_joined, updated_at)
        select (${textArray(orgIds)})[g % ${orgCount} + 1]::uuid,
               (lpad(to_hex(${baseMs}::bigint + g), 12, '0') || '7' || substr(h, 1, 3)
                 || substr('89ab', g % 4 + 1, 1) || substr(h, 4, 15))::uuid,
               'user' || g,
               'user' || g || '@' || (${textArray(codes)})[g % ${orgCount} + 1] || '.example',
               (${textArray(FIRST)})[g % ${FIRST.length} + 1],
               (${textArray(LAST)})[(g / ${FIRST.length}) % ${LAST.length} + 1],
               ${literal(hash)},
               to_timestamp((${baseMs}::bigint + g) / 1000.0),
               now()
        from generate_series(${start}::int, ${end}::int) as g,
             lateral (select md5(g::text || ${literal(salt)}) as h) as r
        on conflict do nothing
        returning 1
      ) select count(*) as n from ins`),
    );
    inserted += Number(rows[0]?.n ?? 0);
    if ((start / batch) % 4 === 3 || end === options.count - 1) {
      log(`seeded ${(end + 1).toLocaleString('en-US')} / ${options.count.toLocaleString('en-US')} users`);
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  await db.execute(sql`analyze users`);
  const sample = await queryRows<{ id: string }>(
    db,
    sql.raw(`select id::text from users tablesample system (1) where email like 'user%' limit 1000`),
  );
  return {
    inserted,
    seconds,
    rowsPerSecond: inserted / seconds,
    organizations: codes,
    sampleUserIds: sample.map((r) => r.id),
  };
}

async function main() {
  const { values } = parseArgs({
    options: { count: { type: 'string', default: '1000000' }, organizations: { type: 'string', default: '10' } },
  });
  const count = Number(values.count);
  const organizations = Number(values.organizations);
  if (!Number.isInteger(count) || count < 1) throw new Error('--count must be a positive whole number');
  const databaseUrl = process.env.BENCH_DATABASE_URL || process.env.DATABASE_URL || undefined;
  const dataDir = resolve(process.env.DATA_DIR || './data');
  const database = await openDatabase({ databaseUrl, dataDir });
  try {
    await migrate(database.db);
    const result = await seedUsers(database.db, { count, organizations, log: (line) => console.error(line) });
    console.log(
      `inserted ${result.inserted.toLocaleString('en-US')} users into ${database.kind} in ${result.seconds.toFixed(1)} s ` +
        `(${Math.round(result.rowsPerSecond).toLocaleString('en-US')} rows/s); organizations ${result.organizations[0]}…; ` +
        `password ${SEEDED_PASSWORD}`,
    );
  } finally {
    await database.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((err) => {
    console.error(`seed-users: ${err instanceof Error ? err.message : err}`);
    process.exit(1);
  });
}
