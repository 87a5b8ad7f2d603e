import { type SQL, sql } from 'drizzle-orm';
import { type Db, type DbOrTx, queryRows } from '../../platform/db/client.js';

const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** How far back a first run (or a run after a long downtime) backfills. */
const MAX_BACKFILL_HOURS = 24 * 31;

const FIGURES = sql.raw(`total_activities, user_activities, system_activities, success_count, failure_count,
  request_count, by_category, p50_duration_ms, p95_duration_ms`);

/**
 * The figures of the activities in [from, to) that `where` keeps, in one pass: one row per
 * organization and one for all of them (organization_id null; present even when there is nothing).
 */
function figuresOf(from: string, to: string, where: SQL = sql``): SQL {
  return sql`
    with base as (
      select organization_id, category, user_id is not null as has_user, success, kind, duration_ms
      from activities where timestamp >= ${from}::timestamptz and timestamp < ${to}::timestamptz ${where}
    ), cat as (
      select organization_id, grouping(organization_id) as g, category, count(*)::int as n
      from base group by grouping sets ((organization_id, category), (category))
    ), main as (
      select organization_id, grouping(organization_id) as g, count(*)::int as total,
        (count(*) filter (where has_user))::int as user_activities,
        (count(*) filter (where not has_user))::int as system_activities,
        (count(*) filter (where success))::int as success_count,
        (count(*) filter (where not success))::int as failure_count,
        (count(*) filter (where kind = 'request'))::int as request_count,
        percentile_cont(0.5) within group (order by duration_ms) filter (where kind = 'request') as p50,
        percentile_cont(0.95) within group (order by duration_ms) filter (where kind = 'request') as p95
      from base group by grouping sets ((organization_id), ())
    )
    select case when m.g = 1 then null else m.organization_id end as organization_id,
      m.total as total_activities, m.user_activities, m.system_activities, m.success_count, m.failure_count,
      m.request_count,
      coalesce((select jsonb_object_agg(c.category, c.n) from cat c
        where c.g = m.g and c.organization_id is not distinct from m.organization_id), '{}'::jsonb) as by_category,
      m.p50 as p50_duration_ms, m.p95 as p95_duration_ms
    from main m
    where m.g = 1 or m.organization_id is not null`;
}

/**
 * Replaces the figures of one hour [start, start + 1 h): one row per organization and one for the
 * whole platform (organization_id null). An hour without activity still gets its platform row
 * (zeros), which is how later runs know it was done.
 */
export async function aggregateHour(db: Db, start: Date): Promise<void> {
  const from = start.toISOString();
  const to = new Date(start.getTime() + HOUR).toISOString();
  await db.transaction(async (tx) => {
    await tx.execute(
      sql`delete from activity_statistics where period_type = 'hour' and period_start = ${from}::timestamptz`,
    );
    await tx.execute(sql`
      insert into activity_statistics (period_type, period_start, period_end, organization_id, ${FIGURES})
      select 'hour', ${from}::timestamptz, ${to}::timestamptz, f.organization_id, ${FIGURES}
      from (${figuresOf(from, to)}) f`);
  });
}

/** Where the period that contains `now` (this hour, or this UTC day) starts. */
export function runningPeriodStart(periodType: 'hour' | 'day', now = new Date()): Date {
  const length = periodType === 'hour' ? HOUR : DAY;
  return new Date(Math.floor(now.getTime() / length) * length);
}

/**
 * The figures of the running hour, or of today (its stored hours and the running one), computed
 * as the activities are now: the jobs store a period only once it is over. Only the running hour
 * is read from the activities, so a day costs what an hour does.
 */
export async function currentFigures(
  db: DbOrTx,
  periodType: 'hour' | 'day',
  organizationId: string | null,
  now = new Date(),
): Promise<StatisticsRow> {
  const hour = runningPeriodStart('hour', now);
  const start = runningPeriodStart(periodType, now);
  const hourFrom = hour.toISOString();
  const hourTo = new Date(hour.getTime() + HOUR).toISOString();
  const scope = organizationId === null ? sql`organization_id is null` : sql`organization_id = ${organizationId}`;
  const where = organizationId === null ? sql`` : sql`and organization_id = ${organizationId}`;
  // With `where`, the row for all the activities kept is the one organization's.
  const runningHour = sql`select ${FIGURES} from (${figuresOf(hourFrom, hourTo, where)}) f where f.organization_id is null`;
  const storedHours = sql`select ${FIGURES} from activity_statistics
    where period_type = 'hour' and ${scope}
      and period_start >= ${start.toISOString()}::timestamptz and period_start < ${hourFrom}::timestamptz`;
  const hours = periodType === 'hour' ? runningHour : sql`${storedHours} union all ${runningHour}`;
  const [row] = await queryRows<StatisticsRow>(
    db,
    sql`select ${periodType}::text as period_type, ${start.toISOString()}::timestamptz as period_start,
        ${new Date(start.getTime() + (periodType === 'hour' ? HOUR : DAY)).toISOString()}::timestamptz as period_end,
        ${organizationId}::uuid as organization_id,
        (select code from organizations where id = ${organizationId}::uuid) as organization, ${FIGURES}
      from (${sumOfHours(sql`select null::uuid as organization_id, ${FIGURES} from (${hours}) h`)}) r`,
  );
  return row as StatisticsRow;
}

/**
 * Hourly figures added up per organization: sums, categories merged, and the request-weighted
 * mean of the hourly percentiles (an approximation: percentiles do not add up).
 */
function sumOfHours(hours: SQL): SQL {
  return sql`
    with hours as (${hours}), cat as (
      select h.organization_id, e.key, sum(e.value::int)::int as n
      from hours h, jsonb_each_text(h.by_category) e group by h.organization_id, e.key
    )
    select h.organization_id, sum(total_activities)::int as total_activities,
      sum(user_activities)::int as user_activities, sum(system_activities)::int as system_activities,
      sum(success_count)::int as success_count, sum(failure_count)::int as failure_count,
      sum(request_count)::int as request_count,
      coalesce((select jsonb_object_agg(c.key, c.n) from cat c
        where c.organization_id is not distinct from h.organization_id), '{}'::jsonb) as by_category,
      sum(p50_duration_ms * request_count) / nullif(sum(request_count) filter (where p50_duration_ms is not null), 0)
        as p50_duration_ms,
      sum(p95_duration_ms * request_count) / nullif(sum(request_count) filter (where p95_duration_ms is not null), 0)
        as p95_duration_ms
    from hours h group by h.organization_id`;
}

/** Replaces one UTC day's figures from its hourly rows (see `sumOfHours`). */
export async function rollUpDay(db: Db, day: Date): Promise<void> {
  const from = day.toISOString();
  const to = new Date(day.getTime() + DAY).toISOString();
  await db.transaction(async (tx) => {
    await tx.execute(
      sql`delete from activity_statistics where period_type = 'day' and period_start = ${from}::timestamptz`,
    );
    const hours = sql`select organization_id, ${FIGURES} from activity_statistics
      where period_type = 'hour' and period_start >= ${from}::timestamptz and period_start < ${to}::timestamptz`;
    await tx.execute(sql`
      insert into activity_statistics (period_type, period_start, period_end, organization_id, ${FIGURES})
      select 'day', ${from}::timestamptz, ${to}::timestamptz, r.organization_id, ${FIGURES}
      from (${sumOfHours(hours)}) r`);
  });
}

/**
 * Aggregates every finished hour not yet aggregated (the previous hour on a normal run; all the
 * missed ones after downtime, up to a month back), then rolls up each finished day it touched.
 * Re-running changes nothing; `aggregateHour` alone recomputes one hour.
 */
export async function aggregatePendingHours(
  db: Db,
  now = new Date(),
  shouldStop: () => boolean = () => false,
): Promise<{ hours: number; days: number }> {
  const currentHour = Math.floor(now.getTime() / HOUR) * HOUR;
  const [state] = await queryRows<{ last: Date | string | null; first: Date | string | null }>(
    db,
    sql`select (select max(period_start) from activity_statistics where period_type = 'hour') as last,
      (select min(timestamp) from activities where timestamp >= ${new Date(currentHour - MAX_BACKFILL_HOURS * HOUR).toISOString()}::timestamptz) as first`,
  );
  let start: number;
  if (state?.last) start = new Date(state.last).getTime() + HOUR;
  else if (state?.first) start = Math.floor(new Date(state.first).getTime() / HOUR) * HOUR;
  else start = currentHour - HOUR;
  start = Math.max(start, currentHour - MAX_BACKFILL_HOURS * HOUR);
  const days = new Set<number>();
  let hours = 0;
  for (let h = start; h < currentHour && !shouldStop(); h += HOUR) {
    await aggregateHour(db, new Date(h));
    hours++;
    const day = Math.floor(h / DAY) * DAY;
    if (day + DAY <= currentHour) days.add(day);
  }
  for (const day of days) await rollUpDay(db, new Date(day));
  return { hours, days: days.size };
}

export interface StatisticsRow {
  period_type: string;
  period_start: Date | string;
  period_end: Date | string;
  organization_id: string | null;
  /** The organization's code; null for the platform's figures. */
  organization: string | null;
  total_activities: number;
  user_activities: number;
  system_activities: number;
  success_count: number;
  failure_count: number;
  request_count: number;
  by_category: Record<string, number>;
  p50_duration_ms: number | null;
  p95_duration_ms: number | null;
}

/** Figures of one scope (an organization, or null for the platform), newest period first. */
export async function listStatistics(
  db: DbOrTx,
  options: {
    organizationId: string | null;
    periodType: 'hour' | 'day';
    since?: Date;
    until?: Date;
    before?: Date;
    limit: number;
  },
): Promise<StatisticsRow[]> {
  const scope =
    options.organizationId === null
      ? sql`s.organization_id is null`
      : sql`s.organization_id = ${options.organizationId}`;
  const since = options.since ? sql`and s.period_start >= ${options.since.toISOString()}::timestamptz` : sql``;
  const until = options.until ? sql`and s.period_start < ${options.until.toISOString()}::timestamptz` : sql``;
  const before = options.before ? sql`and s.period_start < ${options.before.toISOString()}::timestamptz` : sql``;
  return queryRows<StatisticsRow>(
    db,
    sql`select s.period_type, s.period_start, s.period_end, s.organization_id, o.code as organization,
        s.total_activities, s.user_activities, s.system_activities, s.success_count, s.failure_count, s.request_count,
        s.by_category, s.p50_duration_ms, s.p95_duration_ms
      from activity_statistics s left join organizations o on o.id = s.organization_id
      where s.period_type = ${options.periodType} and ${scope} ${since} ${until} ${before}
      order by s.period_start desc limit ${options.limit + 1}`,
  );
}
