import { createHash } from 'node:crypto';
import { type SQL, sql } from 'drizzle-orm';
import { type Db, type DbOrTx, queryRows } from '../../platform/db/client.js';
import { retentionCutoff } from './activity-partitions.js';

/**
 * Tamper evidence for audit events. A seal covers the audit rows written by the transactions with
 * ids in [from_xid, to_xid): `to_xid` is the commit watermark `pg_snapshot_xmin(pg_current_snapshot())`,
 * below which every transaction has ended, so no row can still appear in a sealed range (ids and
 * timestamps are not in commit order; transaction ids below the watermark are final). Its hash is
 * SHA-256 over the previous seal's hash, the range, and the rows' canonical lines in (xid, id) order.
 * The request path takes no lock: sealing only reads committed rows. The chain starts from a hash of
 * zeros; retention marks the seals of dropped rows expired instead of deleting them, so a chain
 * that starts anywhere else has lost its beginning.
 *
 * A line names users by pseudonym (SHA-256 of a fixed prefix and the id, which is 74 random bits of
 * UUIDv7 and cannot be enumerated) and the content by digests, so erasing a user (clearing the id
 * and the content, keeping the pseudonym and digests in columns) leaves every line unchanged.
 *
 * Line format 2 digests the text (description, details, tags) and the origin (IP address, user
 * agent) apart: erasing an actor removes only the origin, and the text that stays is hashed as it
 * stands, so rewriting it shows. Format 1 (earlier seals) had one digest of both, which an actor's
 * erasure stored in place of text that stayed. A stored digest is accepted only beside the emptied
 * content it stands for. Format 3 (seals made now) adds the request columns the API and exports
 * show (method, path, status, duration_ms). Each seal is verified under the format it was made
 * with, so what an existing seal covers never changes.
 *
 * `rows_expired` is covered by no hash, so verification does not take the flag's word: a seal's rows
 * count as expired only when its last event is older than the retention cut-off and none of its
 * rows remain. Seals of format 4 (made now) also hash their own dates, the digest of their rows'
 * lines (stored beside them) and the format of the seal before them, so each is checked by its own
 * columns even once its rows are gone: dates moved back to pass for expired show. Formats only
 * move forward along the chain, and each format-4 seal vouches for the format of the one before
 * it, so a seal cannot be passed off as an earlier format whose dates no hash covers; a seal noted
 * with `--expect` must be one whose columns can be checked, or one whose rows are still there.
 */
const GENESIS = '0'.repeat(64);
const SEAL_LOCK_KEY = 0x6175_6474;
const CHUNK = 5000;
const LINE_FORMAT = 4;
/** The first format whose hash covers the seal's own dates and rows' digest (see above). */
const SELF_CHECKED = 4;
const TIMESTAMP_TEXT = `'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'`;

const pseudonym = (column: string) =>
  `encode(sha256(convert_to('gatehouse-audit-subject:' || ${column}::text, 'UTF8')), 'hex')`;
const digestOf = (...columns: string[]) =>
  `encode(sha256(convert_to(jsonb_build_array(${columns.join(', ')})::text, 'UTF8')), 'hex')`;
const CONTENT_DIGEST = digestOf('description', 'details', 'tags', 'ip_address', 'user_agent');
const TEXT_DIGEST = digestOf('description', 'details', 'tags');
const ORIGIN_DIGEST = digestOf('ip_address', 'user_agent');
export const ERASED_DESCRIPTION = '[erased]';

const LINE_HEAD = `id::text,
    to_char(timestamp at time zone 'UTC', ${TIMESTAMP_TEXT}), xid::text, activity_type, category, severity,
    success::text, coalesce(organization_id::text, '-'),
    coalesce(subject_ref, case when user_id is null then '-' else ${pseudonym('user_id')} end), actor_type,
    coalesce(actor_ref, case when actor_id is null then '-' else ${pseudonym('actor_id')} end),
    coalesce(api_key_id::text, '-'), coalesce(object_type, '-')`;
/** Format 1 has the object's id as stored; format 2 a user object by pseudonym, so erasure may clear it. */
const OBJECT_V1 = `coalesce(object_id, '-')`;
const OBJECT_V2 = `coalesce(object_ref, case when object_type = 'user' and object_id is not null
    then ${pseudonym('object_id')} else coalesce(object_id, '-') end)`;
const ORIGIN_EMPTY = 'ip_address is null and user_agent is null';
const TEXT_EMPTY = `description = '${ERASED_DESCRIPTION}' and details = '{}'::jsonb and tags = '{}'::text[]`;

/** Format 3's request columns; the duration as its 8 bytes, which no float output setting changes. */
const REQUEST_V3 = `coalesce(method, '-'), coalesce(path, '-'), coalesce(status::text, '-'),
    coalesce(encode(float8send(duration_ms), 'hex'), '-')`;
const INCONSISTENT_V2 = `(subject_ref is not null and (user_id is not null or text_digest is null or origin_digest is null))
    or (object_ref is not null and (object_id is not null or object_type is distinct from 'user'))
    or (actor_ref is not null and (actor_id is not null or origin_digest is null))
    or (text_digest is not null and not (${TEXT_EMPTY}))
    or (origin_digest is not null and not (${ORIGIN_EMPTY})) as inconsistent`;

const LINE_V3 = sql.raw(`concat_ws('|', ${LINE_HEAD}, ${OBJECT_V2}, coalesce(text_digest, ${TEXT_DIGEST}),
    coalesce(origin_digest, ${ORIGIN_DIGEST}), ${REQUEST_V3}) as line, ${INCONSISTENT_V2}`);

/** The canonical line of each row, and whether an erasure marker contradicts the row, by format. */
const LINES: Record<number, SQL> = {
  1: sql.raw(`concat_ws('|', ${LINE_HEAD}, ${OBJECT_V1}, coalesce(content_digest, ${CONTENT_DIGEST})) as line,
  (subject_ref is not null and (user_id is not null or not (${TEXT_EMPTY})))
    or (actor_ref is not null and actor_id is not null)
    or (content_digest is not null and not (${ORIGIN_EMPTY})) as inconsistent`),
  2: sql.raw(`concat_ws('|', ${LINE_HEAD}, ${OBJECT_V2}, coalesce(text_digest, ${TEXT_DIGEST}),
    coalesce(origin_digest, ${ORIGIN_DIGEST})) as line, ${INCONSISTENT_V2}`),
  3: LINE_V3,
  // Format 4 changes what the seal's hash covers, not the lines.
  4: LINE_V3,
};

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
  format: number,
): Promise<{ digest: string; count: number; first: string | null; last: string | null; inconsistent: boolean }> {
  const hash = createHash('sha256');
  let count = 0;
  let first: string | null = null;
  let last: string | null = null;
  let inconsistent = false;
  let after: { xid: number; id: string } | undefined;
  const line = LINES[format];
  if (line === undefined) throw new Error(`unknown audit line format ${format}`);
  for (;;) {
    const keyset = after ? sql`and (xid, id) > (${after.xid}::bigint, ${after.id}::uuid)` : sql``;
    const rows = await queryRows<LineRow>(
      db,
      sql`select xid, id, to_char(timestamp at time zone 'UTC', ${sql.raw(TIMESTAMP_TEXT)}) as ts, ${line}
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

interface SealColumns {
  prevHash: string;
  /** The format of the seal before (0 before the first). */
  prevFormat: number;
  fromXid: number;
  toXid: number;
  count: number;
  digest: string;
  /** The first and last event's time as TIMESTAMP_TEXT writes it (null: no events). */
  first: string | null;
  last: string | null;
}

/** The hash of a seal of format 4 on: everything the seal states about itself, chained. */
function selfCheckedHash(c: SealColumns): string {
  return createHash('sha256')
    .update(
      `${SELF_CHECKED}|${c.prevHash}|${c.prevFormat}|${c.fromXid}|${c.toXid}|${c.count}|${c.digest}|${c.first ?? '-'}|${c.last ?? '-'}`,
    )
    .digest('hex');
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
  line_format: number;
  rows_expired: boolean;
  rows_digest: string | null;
  /** The dates as TIMESTAMP_TEXT writes them: a Date would lose the microseconds the hash covers. */
  first_text: string | null;
  last_text: string | null;
}

const SEAL_COLUMNS = sql.raw(`*, to_char(first_timestamp at time zone 'UTC', ${TIMESTAMP_TEXT}) as first_text,
  to_char(last_timestamp at time zone 'UTC', ${TIMESTAMP_TEXT}) as last_text`);

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
 * `lineFormat` makes a seal of an earlier format, as older versions did (the chain keeps them).
 */
export async function sealAuditEvents(db: Db, lineFormat = LINE_FORMAT): Promise<Seal | null> {
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
    const range = await digestRange(tx, fromXid, toXid, lineFormat);
    const prevHash = previous?.hash ?? GENESIS;
    const selfChecked = lineFormat >= SELF_CHECKED;
    const hash = selfChecked
      ? selfCheckedHash({
          prevHash,
          prevFormat: previous?.line_format ?? 0,
          fromXid,
          toXid,
          count: range.count,
          digest: range.digest,
          first: range.first,
          last: range.last,
        })
      : chainHash(prevHash, fromXid, toXid, range.count, range.digest);
    const [row] = await queryRows<{ id: number | string }>(
      tx,
      sql`insert into audit_seals (from_xid, to_xid, row_count, first_timestamp, last_timestamp, prev_hash, hash,
          line_format, rows_digest)
        values (${fromXid}, ${toXid}, ${range.count}, ${range.first}::timestamptz, ${range.last}::timestamptz, ${prevHash},
          ${hash}, ${lineFormat}, ${selfChecked ? range.digest : null})
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
  /** What changed after sealing, as far as the counts tell; `seal_altered`: a seal's own columns. */
  kind: 'edited' | 'inserted' | 'deleted' | 'chain_broken' | 'seal_altered';
  detail: string;
}

export interface VerifyResult {
  ok: boolean;
  seals: number;
  /** Seals whose rows retention dropped (all older than the cut-off, none left): links checked, not rows. */
  expired: number;
  rows: number;
  /** The newest seal: kept elsewhere, it shows later whether seals were removed from the end. */
  latest: { sealId: number; hash: string } | null;
  problem: VerifyProblem | null;
}

export interface VerifyOptions {
  /** A seal id and hash noted earlier, which must still be there. */
  expect?: { sealId: number; hash: string } | undefined;
  /** ACTIVITY_RETENTION_MONTHS in force (0 or unset: everything is kept, so no seal may have expired). */
  retentionMonths?: number;
  now?: Date;
}

/**
 * Recomputes every seal from the rows it covers and checks the chain from its start; stops at the
 * first range where a row was edited, inserted or deleted after sealing (or a seal itself was
 * altered or removed). Only a seal whose events all precede the retention cut-off and whose rows
 * are all gone counts as expired; one marked expired within the retention period is named.
 */
export async function verifyAuditChain(db: Db, options: VerifyOptions = {}): Promise<VerifyResult> {
  const { expect } = options;
  const cutoff = retentionCutoff(options.retentionMonths ?? 0, options.now ?? new Date());
  const seals = await queryRows<SealRow>(db, sql`select ${SEAL_COLUMNS} from audit_seals order by id`);
  let rows = 0;
  let expired = 0;
  let prevHash = GENESIS;
  let prevFormat = 0;
  // Seals counted expired whose dates no hash covers: they cannot vouch for a noted hash.
  const unchecked = new Set<number>();
  const last = seals[seals.length - 1];
  const latest = last ? { sealId: Number(last.id), hash: last.hash } : null;
  const result = (problem: VerifyProblem | null): VerifyResult => ({
    ok: problem === null,
    seals: seals.length,
    expired,
    rows,
    latest,
    problem,
  });
  for (const seal of seals) {
    const fromXid = Number(seal.from_xid);
    const toXid = Number(seal.to_xid);
    const fail = (kind: VerifyProblem['kind'], detail: string): VerifyResult =>
      result({
        sealId: Number(seal.id),
        fromXid,
        toXid,
        firstTimestamp: seal.first_timestamp ? new Date(seal.first_timestamp).toISOString() : null,
        lastTimestamp: seal.last_timestamp ? new Date(seal.last_timestamp).toISOString() : null,
        kind,
        detail,
      });
    if (seal.prev_hash !== prevHash) {
      return fail(
        'chain_broken',
        prevHash === GENESIS
          ? `seal ${seal.id} is the first one left but does not start the chain: earlier seals were removed`
          : `seal ${seal.id} does not follow the seal before it`,
      );
    }
    const format = seal.line_format;
    if (LINES[format] === undefined)
      return fail('seal_altered', `seal ${seal.id} names format ${format}, which no version made`);
    if (format < prevFormat) {
      return fail(
        'seal_altered',
        `seal ${seal.id} is of format ${format}, earlier than the seal before it (${prevFormat}): formats only move forward`,
      );
    }
    if (format >= SELF_CHECKED && !selfCheckHolds(seal, prevFormat)) {
      return fail(
        'seal_altered',
        `seal ${seal.id}'s own columns (range, count, dates, rows digest) or the format of the seal before it no longer hash to its hash`,
      );
    }
    prevHash = seal.hash;
    prevFormat = format;
    const range = await digestRange(db, fromXid, toXid, format);
    // The flag and the timestamps are outside the hash: expiry must also hold by the rows themselves.
    const before = (at: Date | string | null) => cutoff !== null && at !== null && new Date(at) < cutoff;
    if (seal.row_count > 0 && range.count === 0 && before(seal.last_timestamp)) {
      expired++;
      if (format < SELF_CHECKED) unchecked.add(Number(seal.id));
      continue;
    }
    if (seal.rows_expired && seal.row_count > 0 && !before(seal.first_timestamp)) {
      const kept = cutoff ? `kept from ${cutoff.toISOString()}` : 'all kept: no retention';
      return fail('seal_altered', `seal ${seal.id} is marked expired, but its events are within retention (${kept})`);
    }
    if (range.count > seal.row_count)
      return fail('inserted', `${range.count - seal.row_count} row(s) more than were sealed`);
    if (range.count < seal.row_count)
      return fail('deleted', `${seal.row_count - range.count} row(s) fewer than were sealed`);
    if (range.inconsistent) return fail('edited', 'an erasure marker does not match its row');
    const sealed =
      format >= SELF_CHECKED
        ? range.digest === seal.rows_digest
        : chainHash(seal.prev_hash, fromXid, toXid, range.count, range.digest) === seal.hash;
    if (!sealed) return fail('edited', 'the rows no longer hash to the sealed value');
    rows += range.count;
  }
  if (expect) {
    const noted = (kind: VerifyProblem['kind'], detail: string) =>
      result({ sealId: expect.sealId, fromXid: 0, toXid: 0, firstTimestamp: null, lastTimestamp: null, kind, detail });
    if (!seals.some((seal) => Number(seal.id) === expect.sealId && seal.hash === expect.hash)) {
      return noted(
        'chain_broken',
        `seal ${expect.sealId} with hash ${expect.hash} is not in the chain: seals were removed or rewritten`,
      );
    }
    // Its rows are gone and no hash covers its dates or its format: it could have been made to look
    // like that, so it vouches for nothing.
    if (unchecked.has(expect.sealId)) {
      return noted(
        'seal_altered',
        `seal ${expect.sealId} stands as an expired seal of a format that does not cover its dates: it cannot be checked; note a newer seal`,
      );
    }
  }
  return result(null);
}

/** Whether a format-4 seal's stored columns, and the format of the seal before it, give its hash. */
function selfCheckHolds(seal: SealRow, prevFormat: number): boolean {
  if (seal.rows_digest === null) return false;
  return (
    selfCheckedHash({
      prevHash: seal.prev_hash,
      prevFormat,
      fromXid: Number(seal.from_xid),
      toXid: Number(seal.to_xid),
      count: seal.row_count,
      digest: seal.rows_digest,
      first: seal.first_text,
      last: seal.last_text,
    }) === seal.hash
  );
}

/**
 * Erases a user from the activity records in the caller's transaction: their audit events keep a
 * pseudonym and the digests of the content removed (so seals of either line format still verify);
 * their request activity and tracked events lose the id, IP and user agent; events about them as
 * an object name them by pseudonym. Every SET reads the row
 * as it was, so the digests are of the content before it is emptied.
 */
export async function eraseUserActivity(tx: DbOrTx, userId: string): Promise<void> {
  const digests = sql.raw(`content_digest = coalesce(content_digest, ${CONTENT_DIGEST}),
      origin_digest = coalesce(origin_digest, ${ORIGIN_DIGEST})`);
  await tx.execute(sql`update activities set ${digests}, text_digest = coalesce(text_digest, ${sql.raw(TEXT_DIGEST)}),
      subject_ref = ${sql.raw(pseudonym('user_id'))}, user_id = null, description = ${ERASED_DESCRIPTION},
      details = '{}'::jsonb, tags = '{}'::text[], ip_address = null, user_agent = null
    where kind = 'audit' and user_id = ${userId}`);
  await tx.execute(sql`update activities set ${digests},
      actor_ref = ${sql.raw(pseudonym('actor_id'))}, actor_id = null, ip_address = null, user_agent = null
    where kind = 'audit' and actor_id = ${userId}`);
  // Request activity and tracked events are found by user (indexed); their actor is that user.
  await tx.execute(sql`update activities set subject_ref = ${sql.raw(pseudonym('user_id'))}, user_id = null,
      actor_id = case when actor_id = ${userId} then null else actor_id end, ip_address = null, user_agent = null
    where kind <> 'audit' and user_id = ${userId}`);
  // Events about the user as their object (found by the object index). Lines of format 1 hold the id
  // itself: rows its seals cover keep it.
  await tx.execute(sql`update activities set object_ref = ${sql.raw(pseudonym('object_id'))}, object_id = null
    where object_type = 'user' and object_id = ${userId}
      and (kind <> 'audit' or xid >= (select coalesce(max(to_xid), 0) from audit_seals where line_format = 1))`);
}
