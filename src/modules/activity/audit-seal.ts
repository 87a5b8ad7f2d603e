import { createHash } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { type Db, type DbOrTx, queryRows } from '../../platform/db/client.js';

/**
 * Tamper evidence for audit events. A seal covers the audit rows written by the transactions with
 * ids in [from_xid, to_xid): `to_xid` is the commit watermark `pg_snapshot_xmin(pg_current_snapshot())`,
 * below which every transaction has ended, so no row can still appear in a sealed range (ids and
 * timestamps are not in commit order; transaction ids below the watermark are final). Its hash is
 * SHA-256 over the previous seal's hash, the range, and the rows' canonical lines in (xid, id) order.
 * The request path takes no lock: sealing only reads committed rows.
 *
 * A line names users by pseudonym (SHA-256 of a fixed prefix and the id, which is 74 random bits of
 * UUIDv7 and cannot be enumerated) and the content by its digest, so erasing a user (clearing the
 * id and the content, keeping the pseudonym and digest in columns) leaves every line unchanged.
 */
const GENESIS = '0'.repeat(64);
const SEAL_LOCK_KEY = 0x6175_6474;
const CHUNK = 5000;

const pseudonym = (column: string) =>
  `encode(sha256(convert_to('gatehouse-audit-subject:' || ${column}::text, 'UTF8')), 'hex')`;
const CONTENT_DIGEST = `encode(sha256(convert_to(jsonb_build_array(description, details, tags, ip_address, user_agent)::text, 'UTF8')), 'hex')`;
export const ERASED_DESCRIPTION = '[erased]';

/** The canonical line of each row, and whether an erasure marker contradicts the row. */
const LINE = sql.raw(`concat_ws('|', id::text,
    to_char(timestamp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), xid::text, activity_type, category, severity,
    success::text, coalesce(organization_id::text, '-'),
    coalesce(subject_ref, case when user_id is null then '-' else ${pseudonym('user_id')} end), actor_type,
    coalesce(actor_ref, case when actor_id is null then '-' else ${pseudonym('actor_id')} end),
    coalesce(api_key_id::text, '-'), coalesce(object_type, '-'), coalesce(object_id, '-'),
    coalesce(content_digest, ${CONTENT_DIGEST})) as line,
  (subject_ref is not null and (user_id is not null or description <> '${ERASED_DESCRIPTION}' or details <> '{}'::jsonb))
    or (actor_ref is not null and actor_id is not null)
    or (content_digest is not null and (ip_address is not null or user_agent is not null)) as inconsistent`);

interface LineRow {
  xid: number | string;
  id: string;
  ts: string;
  line: string;
  inconsistent: boolean;
}

/** Hashes the audit rows of [fromXid, toXid) in order, chunk by chunk. */
async function digestRange(
  db: DbOrTx,
  fromXid: number,
  toXid: number,
): Promise<{ digest: string; count: number; first: string | null; last: string | null; inconsistent: boolean }> {
  const hash = createHash('sha256');
  let count = 0;
  let first: string | null = null;
  let last: string | null = null;
  let inconsistent = false;
  let after: { xid: number; id: string } | undefined;
  for (;;) {
    const keyset = after ? sql`and (xid, id) > (${after.xid}::bigint, ${after.id}::uuid)` : sql``;
    const rows = await queryRows<LineRow>(
      db,
      sql`select xid, id, to_char(timestamp at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as ts, ${LINE}
        from activities
        where kind = 'audit' and xid >= ${fromXid}::bigint and xid < ${toXid}::bigint ${keyset}
        order by xid, id limit ${CHUNK}`,
    );
    for (const row of rows) {
      hash.update(row.line);
      hash.update('\n');
      if (row.inconsistent) inconsistent = true;
      if (first === null || row.ts < first) first = row.ts;
      if (last === null || row.ts > last) last = row.ts;
    }
    count += rows.length;
    if (rows.length < CHUNK) break;
    const tail = rows[rows.length - 1] as LineRow;
    after = { xid: Number(tail.xid), id: tail.id };
  }
  return { digest: hash.digest('hex'), count, first, last, inconsistent };
}

function chainHash(prevHash: string, fromXid: number, toXid: number, count: number, digest: string): string {
  return createHash('sha256').update(`${prevHash}|${fromXid}|${toXid}|${count}|${digest}`).digest('hex');
}

interface SealRow {
  id: number | string;
  from_xid: number | string;
  to_xid: number | string;
  row_count: number;
  first_timestamp: Date | string | null;
  last_timestamp: Date | string | null;
  prev_hash: string;
  hash: string;
}

export interface Seal {
  id: number;
  fromXid: number;
  toXid: number;
  rowCount: number;
  hash: string;
}

/**
 * Seals the audit events committed since the last seal. One sealer at a time (advisory lock held
 * by the sealing transaction only). Returns the new seal, or null when the watermark has not moved.
 */
export async function sealAuditEvents(db: Db): Promise<Seal | null> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${SEAL_LOCK_KEY})`);
    const [previous] = await queryRows<SealRow>(tx, sql`select * from audit_seals order by id desc limit 1`);
    const [mark] = await queryRows<{ watermark: string }>(
      tx,
      sql`select pg_snapshot_xmin(pg_current_snapshot())::text as watermark`,
    );
    const fromXid = previous ? Number(previous.to_xid) : 0;
    const toXid = Number(mark?.watermark);
    if (!(toXid > fromXid)) return null;
    const range = await digestRange(tx, fromXid, toXid);
    const prevHash = previous?.hash ?? GENESIS;
    const hash = chainHash(prevHash, fromXid, toXid, range.count, range.digest);
    const [row] = await queryRows<{ id: number | string }>(
      tx,
      sql`insert into audit_seals (from_xid, to_xid, row_count, first_timestamp, last_timestamp, prev_hash, hash)
        values (${fromXid}, ${toXid}, ${range.count}, ${range.first}::timestamptz, ${range.last}::timestamptz, ${prevHash}, ${hash})
        returning id`,
    );
    return { id: Number(row?.id), fromXid, toXid, rowCount: range.count, hash };
  });
}

export interface VerifyProblem {
  sealId: number;
  fromXid: number;
  toXid: number;
  firstTimestamp: string | null;
  lastTimestamp: string | null;
  /** What changed after sealing, as far as the counts tell. */
  kind: 'edited' | 'inserted' | 'deleted' | 'chain_broken';
  detail: string;
}

export interface VerifyResult {
  ok: boolean;
  seals: number;
  rows: number;
  /** The first seal checked; earlier ones were removed with their partitions by retention. */
  anchor: { sealId: number; prevHash: string } | null;
  problem: VerifyProblem | null;
}

/**
 * Recomputes every seal from the rows it covers and checks the chain; stops at the first range
 * where a row was edited, inserted or deleted after sealing (or a seal itself was altered).
 */
export async function verifyAuditChain(db: Db): Promise<VerifyResult> {
  const seals = await queryRows<SealRow>(db, sql`select * from audit_seals order by id`);
  let rows = 0;
  let prevHash: string | undefined;
  const anchor = seals[0] ? { sealId: Number(seals[0].id), prevHash: seals[0].prev_hash } : null;
  for (const seal of seals) {
    const fromXid = Number(seal.from_xid);
    const toXid = Number(seal.to_xid);
    const at = {
      sealId: Number(seal.id),
      fromXid,
      toXid,
      firstTimestamp: seal.first_timestamp ? new Date(seal.first_timestamp).toISOString() : null,
      lastTimestamp: seal.last_timestamp ? new Date(seal.last_timestamp).toISOString() : null,
    };
    const fail = (kind: VerifyProblem['kind'], detail: string): VerifyResult => ({
      ok: false,
      seals: seals.length,
      rows,
      anchor,
      problem: { ...at, kind, detail },
    });
    if (prevHash !== undefined && seal.prev_hash !== prevHash)
      return fail('chain_broken', `seal ${seal.id} does not follow the seal before it`);
    const range = await digestRange(db, fromXid, toXid);
    if (range.count > seal.row_count)
      return fail('inserted', `${range.count - seal.row_count} row(s) more than were sealed`);
    if (range.count < seal.row_count)
      return fail('deleted', `${seal.row_count - range.count} row(s) fewer than were sealed`);
    if (range.inconsistent) return fail('edited', 'an erasure marker does not match its row');
    if (chainHash(seal.prev_hash, fromXid, toXid, range.count, range.digest) !== seal.hash)
      return fail('edited', 'the rows no longer hash to the sealed value');
    rows += range.count;
    prevHash = seal.hash;
  }
  return { ok: true, seals: seals.length, rows, anchor, problem: null };
}

/**
 * Erases a user from the activity records in the caller's transaction: their audit events keep a
 * pseudonym and the digest of the content removed (so seals still verify); their request activity
 * and tracked events lose the id, IP and user agent.
 */
export async function eraseUserActivity(tx: DbOrTx, userId: string): Promise<void> {
  const digest = sql.raw(CONTENT_DIGEST);
  await tx.execute(sql`update activities set content_digest = coalesce(content_digest, ${digest}),
      subject_ref = ${sql.raw(pseudonym('user_id'))}, user_id = null, description = ${ERASED_DESCRIPTION},
      details = '{}'::jsonb, tags = '{}'::text[], ip_address = null, user_agent = null
    where kind = 'audit' and user_id = ${userId}`);
  await tx.execute(sql`update activities set content_digest = coalesce(content_digest, ${digest}),
      actor_ref = ${sql.raw(pseudonym('actor_id'))}, actor_id = null, ip_address = null, user_agent = null
    where kind = 'audit' and actor_id = ${userId}`);
  // Request activity and tracked events are found by user (indexed); their actor is that user.
  await tx.execute(sql`update activities set subject_ref = ${sql.raw(pseudonym('user_id'))}, user_id = null,
      actor_id = case when actor_id = ${userId} then null else actor_id end, ip_address = null, user_agent = null
    where kind <> 'audit' and user_id = ${userId}`);
}
