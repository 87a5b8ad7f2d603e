import { sql } from 'drizzle-orm';
import { type Db, queryRows } from '../../platform/db/client.js';

/**
 * Monthly partitions of `activities` (UTC months, named activities_pYYYYMM) beside a default
 * partition that catches anything outside them, so an insert never fails.
 */
const PARTITION = /^activities_p(\d{4})(\d{2})$/;

function monthStart(year: number, monthIndex: number): Date {
  return new Date(Date.UTC(year, monthIndex, 1));
}

function partitionName(month: Date): string {
  return `activities_p${month.getUTCFullYear()}${String(month.getUTCMonth() + 1).padStart(2, '0')}`;
}

/** The monthly partitions that exist, oldest first. */
export async function listActivityPartitions(db: Db): Promise<{ name: string; from: Date }[]> {
  const rows = await queryRows<{ name: string }>(
    db,
    sql`select c.relname as name from pg_inherits i
      join pg_class c on c.oid = i.inhrelid join pg_class p on p.oid = i.inhparent
      where p.relname = 'activities'`,
  );
  return rows
    .map((r) => {
      const m = PARTITION.exec(r.name);
      return m ? { name: r.name, from: monthStart(Number(m[1]), Number(m[2]) - 1) } : undefined;
    })
    .filter((p): p is { name: string; from: Date } => p !== undefined)
    .sort((a, b) => a.from.getTime() - b.from.getTime());
}

/**
 * Creates the partitions of this month and the next `monthsAhead`. Rows that already fell into the
 * default partition for such a month are moved into the new partition in the same transaction.
 */
export async function ensureActivityPartitions(db: Db, now = new Date(), monthsAhead = 2): Promise<string[]> {
  const existing = new Set((await listActivityPartitions(db)).map((p) => p.name));
  const created: string[] = [];
  for (let i = 0; i <= monthsAhead; i++) {
    const from = monthStart(now.getUTCFullYear(), now.getUTCMonth() + i);
    const to = monthStart(now.getUTCFullYear(), now.getUTCMonth() + i + 1);
    const name = partitionName(from);
    if (existing.has(name)) continue;
    await db.transaction(async (tx) => {
      const range = sql`timestamp >= ${from.toISOString()}::timestamptz and timestamp < ${to.toISOString()}::timestamptz`;
      await tx.execute(sql`create temporary table activity_partition_move on commit drop as
        select * from activities_default where ${range}`);
      await tx.execute(sql`delete from activities_default where ${range}`);
      await tx.execute(
        sql.raw(
          `create table if not exists ${name} partition of activities for values from ('${from.toISOString()}') to ('${to.toISOString()}')`,
        ),
      );
      await tx.execute(sql`insert into activities select * from activity_partition_move`);
    });
    created.push(name);
  }
  return created;
}

/** The start of the oldest month kept with `months` of retention (null: 0 keeps everything). */
export function retentionCutoff(months: number, now: Date): Date | null {
  return months > 0 ? monthStart(now.getUTCFullYear(), now.getUTCMonth() - months) : null;
}

/**
 * Drops whole monthly partitions that ended before the retention period (`months` full months
 * before the current one), and deletes default-partition rows as old. Seals whose events all
 * precede the cut-off are marked expired (statistics stay).
 */
export async function dropExpiredActivityPartitions(db: Db, months: number, now = new Date()): Promise<string[]> {
  const cutoff = retentionCutoff(months, now);
  if (!cutoff) return [];
  const at = cutoff.toISOString();
  // A seal is verified whole or not at all: the audit rows of a seal that also covers events within
  // retention are kept (in the default partition) until all of its events have expired.
  const sealStraddles = sql`kind = 'audit' and exists (select 1 from audit_seals s
    where s.last_timestamp >= ${at}::timestamptz and xid >= s.from_xid and xid < s.to_xid)`;
  const dropped: string[] = [];
  for (const partition of await listActivityPartitions(db)) {
    if (partition.from.getTime() >= cutoff.getTime()) break;
    await db.transaction(async (tx) => {
      await tx.execute(sql.raw(`alter table activities detach partition ${partition.name}`));
      await tx.execute(
        sql`insert into activities select * from ${sql.identifier(partition.name)} where ${sealStraddles}`,
      );
      await tx.execute(sql.raw(`drop table ${partition.name}`));
    });
    dropped.push(partition.name);
  }
  await db.execute(sql`delete from activities_default where timestamp < ${at}::timestamptz and not (${sealStraddles})`);
  // The seals stay as links of the chain (a chain that does not start from its first seal has lost
  // its beginning); verification checks by itself that their rows are old and gone.
  await db.execute(sql`update audit_seals set rows_expired = true
    where not rows_expired and row_count > 0 and last_timestamp < ${at}::timestamptz`);
  return dropped;
}
