import { sql } from 'drizzle-orm';
import type pg from 'pg';
import { type DbOrTx, pgClientOf } from '../../platform/db/client.js';
import { newId } from '../../platform/db/ids.js';
import type { Actor } from '../../platform/http/auth.js';
import { currentRequest } from '../../platform/http/request-context.js';
import { apiKeyRowId } from '../api-keys/env-key.js';
import { activities } from './activity.table.js';
import { copyIn, copyText, textArrayLiteral } from './copy-text.js';
import { redactDetails } from './redact.js';

export type AuditCategory =
  | 'authentication'
  | 'authorization'
  | 'user_management'
  | 'provisioning'
  | 'api_keys'
  | 'organization'
  | 'system';

export interface AuditEvent {
  /** Dotted, e.g. 'user.created', 'auth.login_failed', 'provisioning.bulk'. */
  type: string;
  category: AuditCategory;
  organizationId: string | null;
  /** The user the event is about. */
  userId?: string | null;
  /** Who did it (request.actor); omitted with `actorUserId`: the caller of the request being served, else the system. */
  actor?: Actor;
  /** Who did it when only their user id is at hand (and `actor` is omitted). */
  actorUserId?: string | null;
  description: string;
  /** Redacted before storage. */
  details?: Record<string, unknown>;
  severity?: 'info' | 'warning' | 'critical';
  /** Default true. */
  success?: boolean;
  /** Omitted: those of the request being served, if any. */
  ip?: string | null;
  userAgent?: string | null;
  tags?: string[];
  /** The object the event is about when it is not a user ('role', 'api_key', 'organization', …). */
  objectType?: string;
  objectId?: string;
}

const MAX_USER_AGENT = 512;

/**
 * One event as the row values `recordAudits` sends. A key without a row of its own (the
 * `PROVISIONING_API_KEY` of the environment) has no id to reference: the event names it instead.
 */
function auditRecord(event: AuditEvent) {
  // During an HTTP request every event records where the call came from, and who made it when the
  // event names nobody (neither `actor` nor `actorUserId`).
  const request =
    !event.ip || !event.userAgent || (!event.actor && event.actorUserId === undefined) ? currentRequest() : undefined;
  const caller = request?.actor && request.actor.kind !== 'anonymous' ? request.actor : undefined;
  const actor = event.actor ?? (event.actorUserId === undefined ? caller : undefined);
  const userAgent = event.userAgent || request?.headers['user-agent']?.slice(0, MAX_USER_AGENT) || null;
  const keyId = actor?.kind === 'api_key' ? actor.apiKeyId : null;
  const keyWithoutRow = keyId !== null && apiKeyRowId(keyId) === null;
  // A fresh copy: naming the key below adds to it, never to the caller's object.
  const details = redactDetails(event.details);
  if (keyWithoutRow) details.via = keyId;
  return {
    id: newId(),
    type: event.type,
    category: event.category,
    severity: event.severity ?? 'info',
    success: event.success ?? true,
    organization_id: event.organizationId,
    user_id: event.userId ?? null,
    actor_type: actor ? actor.kind : event.actorUserId ? 'user' : 'system',
    actor_id: actor?.kind === 'user' ? actor.userId : actor ? null : (event.actorUserId ?? null),
    api_key_id: keyWithoutRow ? null : keyId,
    object_type: event.objectType ?? null,
    object_id: event.objectId ?? null,
    description: event.description,
    details,
    tags: event.tags ?? [],
    ip_address: event.ip || request?.ip || null,
    user_agent: userAgent,
  };
}

/**
 * Records one audit event through `db`, normally the transaction of the change it records, so
 * the change and its record commit (or roll back) together.
 */
export async function recordAudit(db: DbOrTx, event: AuditEvent): Promise<void> {
  await recordAudits(db, [event]);
}

type AuditRecord = ReturnType<typeof auditRecord>;

const AUDIT_COLUMNS =
  'id, kind, activity_type, category, severity, success, organization_id, user_id, actor_type, actor_id, ' +
  'api_key_id, object_type, object_id, description, details, tags, ip_address, user_agent';

/** One record as a line of `COPY activities (AUDIT_COLUMNS) FROM STDIN` text. */
function auditCopyLine(r: AuditRecord): string {
  return (
    `${r.id}\taudit\t${copyText(r.type)}\t${copyText(r.category)}\t${copyText(r.severity)}\t${r.success ? 't' : 'f'}\t` +
    `${r.organization_id ?? '\\N'}\t${r.user_id ?? '\\N'}\t${copyText(r.actor_type)}\t${r.actor_id ?? '\\N'}\t` +
    `${r.api_key_id ?? '\\N'}\t${copyText(r.object_type)}\t${copyText(r.object_id)}\t${copyText(r.description)}\t` +
    `${copyText(JSON.stringify(r.details))}\t${copyText(textArrayLiteral(r.tags))}\t${copyText(r.ip_address)}\t` +
    `${copyText(r.user_agent)}\n`
  );
}

/**
 * On PostgreSQL, large batches (a provisioning call's thousand events) go through `COPY … FROM
 * STDIN` on the connection of the caller's transaction, so they still commit or roll back with the
 * change: 1,000 events cost the server about half the CPU of `json_to_recordset` (~8 ms instead of
 * ~17 ms, bench/activity-writes.ts). Below 100 the single INSERT's round trip is as cheap.
 */
const COPY_FROM = 100;

async function copyAudits(connection: pg.ClientBase, records: AuditRecord[]): Promise<void> {
  let text = '';
  for (const record of records) text += auditCopyLine(record);
  await copyIn(connection, `activities (${AUDIT_COLUMNS})`, text);
}

// Rows per statement: the JSON parameter of 5,000 events stays a few megabytes.
const AUDIT_CHUNK = 5_000;

/**
 * Records several audit events through `db`, normally the transaction of the change: one
 * set-based INSERT per 5,000 (the rows travel as one JSON parameter read by `json_to_recordset`;
 * building a multi-row insert with Drizzle cost ~150 ms of CPU for 1,000 rows), or one COPY for
 * a batch of 100 or more written in a PostgreSQL transaction.
 */
export async function recordAudits(db: DbOrTx, events: AuditEvent[]): Promise<void> {
  // Not on PGlite, which reads a text COPY only from a blob and then takes twice the CPU of the INSERT.
  const connection = events.length >= COPY_FROM ? pgClientOf(db) : undefined;
  if (connection) {
    await copyAudits(connection, events.map(auditRecord));
    return;
  }
  for (let i = 0; i < events.length; i += AUDIT_CHUNK) {
    const records = events.slice(i, i + AUDIT_CHUNK).map(auditRecord);
    await db.execute(sql`
      insert into ${activities} (${sql.raw(AUDIT_COLUMNS)})
      select v.id, 'audit', v.type, v.category, v.severity, v.success, v.organization_id, v.user_id,
        v.actor_type, v.actor_id, v.api_key_id, v.object_type, v.object_id, v.description, v.details, v.tags,
        v.ip_address, v.user_agent
      from json_to_recordset(${JSON.stringify(records)}::json) as v(id uuid, type text, category text, severity text,
        success boolean, organization_id uuid, user_id uuid, actor_type text, actor_id uuid, api_key_id uuid,
        object_type text, object_id text, description text, details jsonb, tags text[], ip_address text,
        user_agent text)`);
  }
}
