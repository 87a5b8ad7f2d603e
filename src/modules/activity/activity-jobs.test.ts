import { randomUUID } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../../test/test-app.js';
import { queryRows } from '../../platform/db/client.js';
import {
  dropExpiredActivityPartitions,
  ensureActivityPartitions,
  listActivityPartitions,
} from './activity-partitions.js';
import { aggregateHour, aggregatePendingHours } from './activity-stats.js';
import { recordAudit } from './audit.js';
import { eraseUserActivity, sealAuditEvents, verifyAuditChain } from './audit-seal.js';

type TestDb = Awaited<ReturnType<typeof openTestDatabase>>;
const HOUR = 3_600_000;

async function insertRequest(
  t: TestDb,
  at: Date,
  o: { org?: string; user?: string | null; status?: number; ms?: number; category?: string } = {},
) {
  await t.database.db.execute(sql`insert into activities (timestamp, id, kind, activity_type, category, success,
      organization_id, user_id, duration_ms, status)
    values (${at.toISOString()}::timestamptz, ${randomUUID()}, 'request', 'api.request', ${o.category ?? 'api'},
      ${(o.status ?? 200) < 400}, ${o.org ?? null}, ${o.user ?? null}, ${o.ms ?? 10}, ${o.status ?? 200})`);
}

describe('hourly statistics', () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await openTestDatabase();
  });
  afterAll(() => t.drop());

  it('aggregates every finished hour since the first activity, replaces an hour when re-run, and rolls up days', async () => {
    const now = new Date(Date.UTC(2026, 10, 22, 3, 20));
    const h0 = new Date(Date.UTC(2026, 10, 21, 22)); // five finished hours before now's hour
    const org = randomUUID();
    const user = randomUUID();
    for (let i = 1; i <= 10; i++) await insertRequest(t, new Date(h0.getTime() + i * 1000), { org, user, ms: i * 10 });
    await insertRequest(t, new Date(h0.getTime() + 5000), { org, status: 500, ms: 1000 });
    await insertRequest(t, new Date(h0.getTime() + 2 * HOUR + 10), { category: 'system' });

    const first = await aggregatePendingHours(t.database.db, now);
    expect(first).toEqual({ hours: 5, days: 1 });
    const rows = await queryRows<Record<string, unknown>>(
      t.database.db,
      sql`select period_type, period_start, organization_id, total_activities, user_activities, system_activities,
          success_count, failure_count, request_count, by_category, p50_duration_ms, p95_duration_ms
        from activity_statistics where period_type = 'hour' order by period_start, organization_id nulls first`,
    );
    expect(rows).toHaveLength(6); // 5 platform rows (one per hour, zeros included) + 1 organization row
    const platform = rows[0] as Record<string, unknown>;
    expect(platform).toMatchObject({
      organization_id: null,
      total_activities: 11,
      user_activities: 10,
      system_activities: 1,
      success_count: 10,
      failure_count: 1,
      request_count: 11,
      by_category: { api: 11 },
    });
    expect(platform.p50_duration_ms).toBe(60);
    expect(Number(platform.p95_duration_ms)).toBeGreaterThan(100);
    expect(rows[1]).toMatchObject({ organization_id: org, total_activities: 11 });
    expect(rows[3]).toMatchObject({ organization_id: null, total_activities: 1, by_category: { system: 1 } });

    // Nothing pending: a second run does nothing; a re-run of one hour replaces it.
    expect(await aggregatePendingHours(t.database.db, now)).toEqual({ hours: 0, days: 0 });
    await insertRequest(t, new Date(h0.getTime() + 60_000), { org });
    await aggregateHour(t.database.db, h0);
    const [again] = await queryRows<{ n: number; total: number }>(
      t.database.db,
      sql`select count(*)::int as n, max(total_activities)::int as total from activity_statistics
        where period_type = 'hour' and period_start = ${h0.toISOString()}::timestamptz and organization_id is null`,
    );
    expect(again).toEqual({ n: 1, total: 12 });

    const [day] = await queryRows<{ total: number; requests: number }>(
      t.database.db,
      sql`select total_activities as total, request_count as requests from activity_statistics
        where period_type = 'day' and organization_id is null`,
    );
    expect(day).toEqual({ total: 11, requests: 11 }); // the roll-up of 21 November, before the re-run

    // Downtime: three hours later, the missed hours are backfilled.
    const later = await aggregatePendingHours(t.database.db, new Date(now.getTime() + 3 * HOUR));
    expect(later.hours).toBe(3);
  });
});

describe('monthly partitions and retention', () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await openTestDatabase();
  });
  afterAll(() => t.drop());

  it('creates partitions ahead, moving rows that fell into the default partition, and drops expired ones', async () => {
    const future = new Date(Date.UTC(2031, 0, 15));
    await insertRequest(t, new Date(Date.UTC(2031, 0, 2)));
    const [inDefault] = await queryRows<{ n: number }>(
      t.database.db,
      sql`select count(*)::int as n from activities_default`,
    );
    expect(inDefault?.n).toBe(1);
    const created = await ensureActivityPartitions(t.database.db, future, 2);
    expect(created).toEqual(['activities_p203101', 'activities_p203102', 'activities_p203103']);
    const [moved] = await queryRows<{ n: number }>(
      t.database.db,
      sql`select count(*)::int as n from activities_p203101`,
    );
    expect(moved?.n).toBe(1);
    expect(await ensureActivityPartitions(t.database.db, future, 2)).toEqual([]);

    // Retention of 12 months as seen from April 2032: every partition before April 2031 goes.
    const before = (await listActivityPartitions(t.database.db)).map((p) => p.name);
    const dropped = await dropExpiredActivityPartitions(t.database.db, 12, new Date(Date.UTC(2032, 3, 10)));
    expect(dropped).toEqual(before.filter((n) => n < 'activities_p203104'));
    const after = (await listActivityPartitions(t.database.db)).map((p) => p.name);
    expect(after).toEqual(before.filter((n) => n >= 'activities_p203104'));
    expect(await dropExpiredActivityPartitions(t.database.db, 0, new Date(Date.UTC(2040, 0, 1)))).toEqual([]);
  });
});

describe('audit seals', () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await openTestDatabase();
  });
  afterAll(() => t.drop());

  const audit = (userId: string, n: number, actorUserId?: string) =>
    t.database.db.transaction((tx) =>
      recordAudit(tx, {
        type: 'user.updated',
        category: 'user_management',
        organizationId: null,
        userId,
        ...(actorUserId ? { actorUserId } : {}),
        description: `change ${n} of ${userId}`,
        details: { n },
        ip: '203.0.113.9',
      }),
    );

  /**
   * Seals once the commit watermark has passed every audit row written so far. On a shared server
   * the watermark is cluster-wide: another database's open transaction (a parallel test file) holds
   * it back, and a seal made meanwhile rightly covers none of our rows yet.
   */
  async function sealWritten(lineFormat?: number) {
    const db = t.database.db;
    const [last] = await queryRows<{ xid: string }>(
      db,
      sql`select coalesce(max(xid), 0)::text as xid from activities where kind = 'audit'`,
    );
    const deadline = Date.now() + 30_000;
    for (;;) {
      const [mark] = await queryRows<{ w: string }>(db, sql`select pg_snapshot_xmin(pg_current_snapshot())::text as w`);
      if (Number(mark?.w) > Number(last?.xid)) break;
      if (Date.now() > deadline) throw new Error('the commit watermark did not pass the audit rows within 30 s');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    return sealAuditEvents(db, lineFormat);
  }

  it('chains seals over committed events and names the range where a sealed row was edited, inserted or deleted', async () => {
    const db = t.database.db;
    const alice = randomUUID();
    for (let i = 0; i < 3; i++) await audit(alice, i);
    const s1 = await sealWritten();
    expect(s1?.rowCount).toBe(3);
    for (let i = 3; i < 5; i++) await audit(randomUUID(), i);
    const s2 = await sealWritten();
    expect(s2?.rowCount).toBe(2);
    expect(await verifyAuditChain(db)).toMatchObject({ ok: true, seals: 2, rows: 5 });

    // Erasure keeps the events under a pseudonym, and the chain still verifies.
    await db.transaction((tx) => eraseUserActivity(tx, alice));
    const erased = await queryRows<{
      user_id: string | null;
      subject_ref: string;
      description: string;
      ip: string | null;
    }>(
      db,
      sql`select user_id, subject_ref, description, ip_address as ip from activities where subject_ref is not null`,
    );
    expect(erased).toHaveLength(3);
    expect(erased.every((r) => r.user_id === null && r.ip === null && r.description === '[erased]')).toBe(true);
    expect(new Set(erased.map((r) => r.subject_ref)).size).toBe(1);
    expect(JSON.stringify(erased)).not.toContain(alice);
    expect(await verifyAuditChain(db)).toMatchObject({ ok: true });

    // Edited: a row of the second seal changes its description.
    const [victim] = await queryRows<{ id: string; description: string }>(
      db,
      sql`select id, description from activities where description = 'change 4' or description like 'change 4 %'`,
    );
    await db.execute(sql`update activities set description = 'nothing happened' where id = ${victim?.id}`);
    const edited = await verifyAuditChain(db);
    expect(edited).toMatchObject({ ok: false, problem: { sealId: s2?.id, kind: 'edited' } });
    await db.execute(sql`update activities set description = ${victim?.description} where id = ${victim?.id}`);
    expect((await verifyAuditChain(db)).ok).toBe(true);

    // An erasure marker set by hand on a live row is an edit too.
    await db.execute(sql`update activities set subject_ref = 'x' where id = ${victim?.id}`);
    expect((await verifyAuditChain(db)).problem?.kind).toBe('edited');
    await db.execute(sql`update activities set subject_ref = null where id = ${victim?.id}`);

    // Inserted: a row slipped into the first seal's range.
    const fake = randomUUID();
    await db.execute(sql`insert into activities (id, kind, activity_type, category, description, xid)
      values (${fake}, 'audit', 'user.created', 'user_management', 'backdated', ${s1?.fromXid ?? 0})`);
    expect(await verifyAuditChain(db)).toMatchObject({ ok: false, problem: { sealId: s1?.id, kind: 'inserted' } });
    await db.execute(sql`delete from activities where id = ${fake}`);

    // Deleted: a sealed row removed.
    await db.execute(sql`delete from activities where id = ${victim?.id}`);
    expect(await verifyAuditChain(db)).toMatchObject({ ok: false, problem: { sealId: s2?.id, kind: 'deleted' } });
  });

  /** The earlier tests leave a broken chain behind: each of the next starts a new one. */
  async function freshChain() {
    await t.database.db.execute(sql`delete from audit_seals`);
    await t.database.db.execute(sql`delete from activities where kind = 'audit'`);
  }

  it('sees rewritten text behind a stored digest, on rows of erased users and actors and on live rows', async () => {
    const db = t.database.db;
    await freshChain();
    const [carol, admin] = [randomUUID(), randomUUID()];
    await audit(carol, 1);
    await audit(randomUUID(), 2, admin);
    await audit(randomUUID(), 3);
    const seal = await sealWritten();
    expect(seal?.rowCount).toBe(3);
    await db.transaction((tx) => eraseUserActivity(tx, carol));
    await db.transaction((tx) => eraseUserActivity(tx, admin));
    expect((await verifyAuditChain(db)).ok).toBe(true);
    const rowOf = async (where: ReturnType<typeof sql>) =>
      (await queryRows<{ id: string }>(db, sql`select id from activities where kind = 'audit' and ${where}`))[0]?.id;
    const erasedSubject = await rowOf(sql`subject_ref is not null and activity_type = 'user.updated'
      and content_digest is not null and description = '[erased]' and xid >= ${seal?.fromXid ?? 0}`);
    const erasedActor = await rowOf(sql`actor_ref is not null and description like 'change 2 %'`);
    const live = await rowOf(sql`description like 'change 3 %'`);

    const tampered = async (id: string | undefined, change: ReturnType<typeof sql>) => {
      const [before] = await queryRows<Record<string, unknown>>(db, sql`select * from activities where id = ${id}`);
      await db.execute(sql`update activities set ${change} where id = ${id}`);
      const result = await verifyAuditChain(db);
      await db.execute(sql`update activities set description = ${before?.description as string},
        details = ${JSON.stringify(before?.details)}::jsonb, tags = array(select jsonb_array_elements_text(${JSON.stringify(before?.tags)}::jsonb)),
        ip_address = ${before?.ip_address as string | null}, user_agent = ${before?.user_agent as string | null},
        content_digest = ${before?.content_digest as string | null}, text_digest = ${before?.text_digest as string | null},
        origin_digest = ${before?.origin_digest as string | null} where id = ${id}`);
      expect((await verifyAuditChain(db)).ok).toBe(true);
      return result.problem?.kind;
    };
    // The text that stays after an actor's erasure is still hashed as it stands.
    expect(await tampered(erasedActor, sql`description = 'nothing to see'`)).toBe('edited');
    // An erased subject's row must stay empty; its digests stand for the text only then.
    expect(await tampered(erasedSubject, sql`tags = '{forged}'`)).toBe('edited');
    expect(await tampered(erasedSubject, sql`description = 'forged', details = '{"code":"forged"}'`)).toBe('edited');
    // A live row given the digests of its own content and rewritten in one go.
    const digestsOfLive = sql`text_digest = encode(sha256(convert_to(jsonb_build_array(description, details, tags)::text,
        'UTF8')), 'hex'), origin_digest = encode(sha256(convert_to(jsonb_build_array(ip_address, user_agent)::text,
        'UTF8')), 'hex'), content_digest = encode(sha256(convert_to(jsonb_build_array(description, details, tags,
        ip_address, user_agent)::text, 'UTF8')), 'hex')`;
    expect(
      await tampered(live, sql`${digestsOfLive}, description = 'forged', ip_address = null, user_agent = null`),
    ).toBe('edited');
  });

  it('names an erased user as an object by pseudonym, and the chain still verifies', async () => {
    const db = t.database.db;
    await freshChain();
    const dana = randomUUID();
    const about = (type: string) =>
      db.transaction((tx) =>
        recordAudit(tx, {
          type,
          category: 'user_management',
          organizationId: null,
          userId: null,
          description: `${type} of someone`,
          objectType: 'user',
          objectId: dana,
        }),
      );
    await about('user.updated');
    await sealWritten();
    await about('user.deactivated');
    await db.transaction((tx) => eraseUserActivity(tx, dana));
    const rows = await queryRows<{ object_id: string | null; object_ref: string | null }>(
      db,
      sql`select object_id, object_ref from activities where kind = 'audit' and description like '% of someone'`,
    );
    expect(rows).toHaveLength(2);
    expect(rows.every((r) => r.object_id === null && r.object_ref?.length === 64)).toBe(true);
    await sealWritten();
    expect(await verifyAuditChain(db)).toMatchObject({ ok: true, rows: 2 });
    // A pseudonym swapped, or set on an object that is no user, is an edit.
    await db.execute(sql`update activities set object_ref = ${'f'.repeat(64)} where activity_type = 'user.updated'
      and description like '% of someone'`);
    expect((await verifyAuditChain(db)).problem?.kind).toBe('edited');
  });

  it('keeps the seals of expired rows as links, and sees seals removed from the start or the end', async () => {
    const db = t.database.db;
    await freshChain();
    await audit(randomUUID(), 1);
    const seal = await sealWritten();
    const before = await verifyAuditChain(db);
    expect(before).toMatchObject({ ok: true, latest: { sealId: seal?.id, hash: seal?.hash } });

    // Retention as seen from far ahead: every partition and seal expires; the chain still holds.
    const farAhead = { retentionMonths: 1, now: new Date(Date.UTC(2045, 0, 1)) };
    await dropExpiredActivityPartitions(db, 1, farAhead.now);
    const [{ n: expiredSeals } = { n: 0 }] = await queryRows<{ n: number }>(
      db,
      sql`select count(*)::int as n from audit_seals where rows_expired`,
    );
    expect(expiredSeals).toBe(before.seals);
    expect(await verifyAuditChain(db, farAhead)).toMatchObject({
      ok: true,
      seals: before.seals,
      expired: before.seals,
      rows: 0,
    });
    // Under today's retention those rows should still be there: their seal is named.
    expect(await verifyAuditChain(db, { retentionMonths: 12 })).toMatchObject({
      ok: false,
      problem: { sealId: seal?.id, kind: 'seal_altered' },
    });

    // A seal noted earlier must still be there (removing the newest seals leaves a sound chain).
    const noted = { sealId: Number(seal?.id), hash: String(seal?.hash) };
    expect((await verifyAuditChain(db, { ...farAhead, expect: noted })).ok).toBe(true);
    const [first] = await queryRows<Record<string, unknown>>(db, sql`select * from audit_seals order by id limit 1`);
    await db.execute(sql`delete from audit_seals where id = ${noted.sealId}`);
    expect(await verifyAuditChain(db, { ...farAhead, expect: noted })).toMatchObject({
      ok: false,
      problem: { kind: 'chain_broken' },
    });

    // Removing the first seal breaks the chain's start.
    await db.execute(sql`delete from audit_seals where id = ${first?.id as number}`);
    if (Number(first?.id) !== noted.sealId) {
      const broken = await verifyAuditChain(db, farAhead);
      expect(broken).toMatchObject({ ok: false, problem: { kind: 'chain_broken' } });
      expect(broken.problem?.detail).toMatch(/earlier seals were removed/);
    }
  });

  it('names a seal marked expired within retention, whose rows were then edited or deleted', async () => {
    const db = t.database.db;
    await freshChain();
    for (let i = 0; i < 3; i++) await audit(randomUUID(), i);
    const seal = await sealWritten();
    const retention = { retentionMonths: 12, expect: { sealId: Number(seal?.id), hash: String(seal?.hash) } };
    expect((await verifyAuditChain(db, retention)).ok).toBe(true);
    await db.execute(sql`update audit_seals set rows_expired = true where id = ${seal?.id}`);

    await db.execute(sql`update activities set description = 'nothing happened' where description like 'change 1 %'`);
    expect(await verifyAuditChain(db, retention)).toMatchObject({
      ok: false,
      problem: { sealId: seal?.id, kind: 'seal_altered' },
    });
    await db.execute(sql`delete from activities where kind = 'audit'`);
    expect(await verifyAuditChain(db, retention)).toMatchObject({
      ok: false,
      problem: { sealId: seal?.id, kind: 'seal_altered' },
    });
    // Dates moved back to look expired do not hide rows that are still there: the range is checked
    // (a seal of format 3, whose hash does not cover its dates; format 4 is below).
    await freshChain();
    for (let i = 0; i < 3; i++) await audit(randomUUID(), i);
    const again = await sealWritten(3);
    await db.execute(sql`update audit_seals set rows_expired = true, first_timestamp = '2001-01-01',
      last_timestamp = '2001-01-02' where id = ${again?.id}`);
    await db.execute(sql`delete from activities where description like 'change 2 %'`);
    expect(await verifyAuditChain(db, { retentionMonths: 12 })).toMatchObject({
      ok: false,
      problem: { sealId: again?.id, kind: 'deleted' },
    });
  });

  it('keeps the rows of a seal that spans the retention cut-off until all of them expire', async () => {
    const db = t.database.db;
    await freshChain();
    await ensureActivityPartitions(db, new Date(Date.UTC(2030, 0, 15)));
    const at = async (iso: string, description: string) =>
      db.execute(sql`insert into activities (timestamp, id, kind, activity_type, category, description)
        values (${iso}::timestamptz, ${randomUUID()}, 'audit', 'user.updated', 'user_management', ${description})`);
    await at('2030-01-31T23:59:00Z', 'january');
    await at('2030-02-01T00:01:00Z', 'february');
    const seal = await sealWritten();
    expect(seal?.rowCount).toBe(2);

    const inFebruary2031 = { retentionMonths: 12, now: new Date(Date.UTC(2031, 1, 15)) };
    expect(await dropExpiredActivityPartitions(db, 12, inFebruary2031.now)).toContain('activities_p203001');
    expect(await verifyAuditChain(db, inFebruary2031)).toMatchObject({ ok: true, expired: 0, rows: 2 });

    const inMarch2031 = { retentionMonths: 12, now: new Date(Date.UTC(2031, 2, 15)) };
    await dropExpiredActivityPartitions(db, 12, inMarch2031.now);
    expect(await verifyAuditChain(db, inMarch2031)).toMatchObject({ ok: true, seals: 1, expired: 1, rows: 0 });
    // The same chain read under a longer retention: those events should still be there.
    expect(await verifyAuditChain(db, { ...inMarch2031, retentionMonths: 24 })).toMatchObject({
      ok: false,
      problem: { sealId: seal?.id, kind: 'seal_altered' },
    });
  });

  it('checks a seal of format 4 by its own columns, even once its rows are gone, and the format of the seal before it', async () => {
    const db = t.database.db;
    const chain = async () => {
      await freshChain();
      for (let i = 0; i < 2; i++) await audit(randomUUID(), i);
      const first = await sealWritten();
      await audit(randomUUID(), 2);
      const second = await sealWritten();
      return { first: Number(first?.id), second: { sealId: Number(second?.id), hash: String(second?.hash) } };
    };
    const retention = { retentionMonths: 12 };
    const goneLongAgo = (id: number) =>
      db.execute(sql`update audit_seals set rows_expired = true, first_timestamp = '2001-01-01',
        last_timestamp = '2001-01-02' where id = ${id}`);
    const rowsOf = (id: number) =>
      db.execute(sql`delete from activities where kind = 'audit' and xid >= (select from_xid from audit_seals where id = ${id})
        and xid < (select to_xid from audit_seals where id = ${id})`);

    let seals = await chain();
    expect(await verifyAuditChain(db, { ...retention, expect: seals.second })).toMatchObject({ ok: true, rows: 3 });
    // Its rows deleted and its dates moved back past retention: the seal's own hash shows it.
    await goneLongAgo(seals.first);
    await rowsOf(seals.first);
    expect(await verifyAuditChain(db, retention)).toMatchObject({
      ok: false,
      problem: { sealId: seals.first, kind: 'seal_altered' },
    });

    // Passed off as format 3, whose hash covers no dates: the next seal vouches for its format.
    seals = await chain();
    await goneLongAgo(seals.first);
    await rowsOf(seals.first);
    await db.execute(sql`update audit_seals set line_format = 3, rows_digest = null where id = ${seals.first}`);
    expect(await verifyAuditChain(db, retention)).toMatchObject({
      ok: false,
      problem: { sealId: seals.second.sealId, kind: 'seal_altered' },
    });

    // The newest one passed off as format 3: nothing after it vouches, but formats only move forward.
    seals = await chain();
    await goneLongAgo(seals.second.sealId);
    await rowsOf(seals.second.sealId);
    await db.execute(sql`update audit_seals set line_format = 3, rows_digest = null where id = ${seals.second.sealId}`);
    expect(await verifyAuditChain(db, retention)).toMatchObject({
      ok: false,
      problem: { sealId: seals.second.sealId, kind: 'seal_altered' },
    });

    // Every seal passed off as format 3: the noted seal then stands unchecked and is named.
    await db.execute(sql`update audit_seals set line_format = 3, rows_digest = null`);
    await goneLongAgo(seals.first);
    await rowsOf(seals.first);
    const passedOff = await verifyAuditChain(db, { ...retention, expect: seals.second });
    expect(passedOff).toMatchObject({ ok: false, problem: { sealId: seals.second.sealId, kind: 'seal_altered' } });
    expect(passedOff.problem?.detail).toMatch(/cannot be checked; note a newer seal/);
  });

  it('covers the request columns in seals of the current line format, and still verifies earlier formats', async () => {
    const db = t.database.db;
    await freshChain();
    await audit(randomUUID(), 1);
    const older = await sealWritten(2);
    await audit(randomUUID(), 2);
    const current = await sealWritten();
    const formats = await queryRows<{ id: string; line_format: number }>(
      db,
      sql`select id, line_format from audit_seals order by id`,
    );
    expect(formats.map((f) => f.line_format)).toEqual([2, 4]);
    expect(await verifyAuditChain(db)).toMatchObject({ ok: true, seals: 2, rows: 2 });

    // Format 2 never covered these columns: its seal stands as it was made.
    await db.execute(sql`update activities set path = '/elsewhere', status = 500 where description like 'change 1 %'`);
    expect((await verifyAuditChain(db)).ok).toBe(true);

    const edit = async (change: ReturnType<typeof sql>) => {
      await db.execute(sql`update activities set ${change} where description like 'change 2 %'`);
      const result = await verifyAuditChain(db);
      await db.execute(sql`update activities set method = null, path = null, status = null, duration_ms = null
        where description like 'change 2 %'`);
      expect((await verifyAuditChain(db)).ok).toBe(true);
      return result.problem;
    };
    for (const change of [
      sql`path = '/api/v1/elsewhere'`,
      sql`status = 204`,
      sql`method = 'DELETE'`,
      sql`duration_ms = 12.5`,
    ]) {
      expect(await edit(change)).toMatchObject({ sealId: current?.id, kind: 'edited' });
    }
    expect(older?.id).toBeLessThan(Number(current?.id));
  });

  it('seals nothing new when no transaction committed since the last seal', async () => {
    const seal = await sealAuditEvents(t.database.db);
    if (seal) expect(seal.rowCount).toBe(0);
  });
});
