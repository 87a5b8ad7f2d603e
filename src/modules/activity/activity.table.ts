import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  boolean,
  doublePrecision,
  index,
  integer,
  jsonb,
  pgTable,
  primaryKey,
  smallint,
  text,
  timestamp,
  unique,
  uuid,
} from 'drizzle-orm/pg-core';

/**
 * Every trace the product leaves: audit events (written in the transaction of the change they
 * record, `kind = 'audit'`), request activity (batched, `kind = 'request'`) and application events
 * tracked with `track()` (`kind = 'event'`).
 *
 * Partitioned by month on `timestamp` (migration 0012 declares `PARTITION BY RANGE`; drizzle-kit
 * cannot), hence the composite primary key. No foreign keys: an event outlives the user, key or
 * organization it names, and erasure replaces the user by a pseudonymous reference.
 */
export const activities = pgTable(
  'activities',
  {
    timestamp: timestamp('timestamp', { withTimezone: true }).notNull().defaultNow(),
    id: uuid('id').notNull(),
    kind: text('kind').notNull(),
    activityType: text('activity_type').notNull(),
    category: text('category').notNull(),
    severity: text('severity').notNull().default('info'),
    success: boolean('success').notNull().default(true),
    organizationId: uuid('organization_id'),
    /** The user the event is about (for requests: the caller). */
    userId: uuid('user_id'),
    /** Who did it: 'user', 'api_key' or 'system'. */
    actorType: text('actor_type').notNull().default('system'),
    actorId: uuid('actor_id'),
    apiKeyId: uuid('api_key_id'),
    objectType: text('object_type'),
    objectId: text('object_id'),
    /** Set by erasure when the object is an erased user: the pseudonym in place of `object_id`. */
    objectRef: text('object_ref'),
    description: text('description').notNull().default(''),
    details: jsonb('details').$type<Record<string, unknown>>().notNull().default({}),
    tags: text('tags').array().notNull().default(sql`'{}'::text[]`),
    ipAddress: text('ip_address'),
    userAgent: text('user_agent'),
    /** Request activity only. */
    method: text('method'),
    path: text('path'),
    status: smallint('status'),
    durationMs: doublePrecision('duration_ms'),
    /** The writing transaction: sealing covers only transactions older than every running one. */
    xid: bigint('xid', { mode: 'number' }).notNull().default(sql`(pg_current_xact_id()::text)::bigint`),
    /** Set by erasure: pseudonyms of the erased subject / actor and the digest of the content removed. */
    subjectRef: text('subject_ref'),
    actorRef: text('actor_ref'),
    contentDigest: text('content_digest'),
    /**
     * Set by erasure for seals of line format 2: digests of the description, details and tags (when
     * the subject is erased) and of the IP address and user agent (either erasure), so the content
     * that remains is still hashed as it stands.
     */
    textDigest: text('text_digest'),
    originDigest: text('origin_digest'),
  },
  (t) => [
    primaryKey({ columns: [t.timestamp, t.id] }),
    index('activities_user_idx').on(t.userId, t.timestamp, t.id),
    index('activities_org_idx').on(t.organizationId, t.timestamp, t.id),
    // Partial: request rows (nearly all of them) name no object and cost this index nothing.
    index('activities_object_idx').on(t.objectType, t.objectId, t.timestamp).where(sql`object_type is not null`),
    // Erasure finds the audit events a user did (as actor) without scanning every partition. Only
    // rows that name a user as actor: those of API keys and the system (a bulk call's thousand) skip it.
    index('activities_audit_actor_idx').on(t.actorId).where(sql`kind = 'audit' and actor_id is not null`),
    index('activities_audit_xid_idx').on(t.xid, t.id).where(sql`kind = 'audit'`),
  ],
);

export type ActivityRow = typeof activities.$inferSelect;
export type NewActivity = typeof activities.$inferInsert;

/** Hourly and daily figures; `organization_id` null is the whole platform. */
export const activityStatistics = pgTable(
  'activity_statistics',
  {
    periodType: text('period_type').notNull(),
    periodStart: timestamp('period_start', { withTimezone: true }).notNull(),
    periodEnd: timestamp('period_end', { withTimezone: true }).notNull(),
    organizationId: uuid('organization_id'),
    totalActivities: integer('total_activities').notNull(),
    userActivities: integer('user_activities').notNull(),
    systemActivities: integer('system_activities').notNull(),
    successCount: integer('success_count').notNull(),
    failureCount: integer('failure_count').notNull(),
    requestCount: integer('request_count').notNull(),
    byCategory: jsonb('by_category').$type<Record<string, number>>().notNull().default({}),
    p50DurationMs: doublePrecision('p50_duration_ms'),
    p95DurationMs: doublePrecision('p95_duration_ms'),
    computedAt: timestamp('computed_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    unique('activity_statistics_period_key').on(t.periodType, t.periodStart, t.organizationId).nullsNotDistinct(),
  ],
);

/**
 * Tamper evidence: each seal hashes the audit events of the transactions in [from_xid, to_xid),
 * in (xid, id) order, chained to the previous seal's hash.
 */
export const auditSeals = pgTable('audit_seals', {
  id: bigserial('id', { mode: 'number' }).primaryKey(),
  fromXid: bigint('from_xid', { mode: 'number' }).notNull(),
  toXid: bigint('to_xid', { mode: 'number' }).notNull(),
  rowCount: integer('row_count').notNull(),
  firstTimestamp: timestamp('first_timestamp', { withTimezone: true }),
  lastTimestamp: timestamp('last_timestamp', { withTimezone: true }),
  prevHash: text('prev_hash').notNull(),
  hash: text('hash').notNull(),
  sealedAt: timestamp('sealed_at', { withTimezone: true }).notNull().defaultNow(),
  /**
   * How the seal was made (1: one content digest; 2: text and origin digests; 3: 2 and the request
   * columns; 4: 3's lines, and the hash also covers the seal's dates, its rows' digest and the format
   * of the seal before it).
   */
  lineFormat: smallint('line_format').notNull().default(1),
  /**
   * From format 4: the digest of the rows' lines, which the seal's hash covers with its range, count and
   * dates, so that a seal whose rows retention dropped can still be checked by its own columns.
   */
  rowsDigest: text('rows_digest'),
  /** Retention dropped the rows it covered: the seal stays, a link of the chain (verify checks this by the data). */
  rowsExpired: boolean('rows_expired').notNull().default(false),
});
