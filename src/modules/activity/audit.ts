import { sql } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { Chunk, copyBinary, fields } from '../../platform/db/copy-binary.js';
import { newId } from '../../platform/db/ids.js';
import type { Actor } from '../../platform/http/auth.js';
import { currentRequest } from '../../platform/http/request-context.js';
import { apiKeyRowId } from '../api-keys/env-key.js';
import { activities } from './activity.table.js';
import { redactDetails } from './redact.js';

export type AuditCategory =
  | 'authentication'
  | 'authorization'
  | 'user_management'
  | 'provisioning'
  | 'api_keys'
  | 'organization'
  | 'integrations'
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
    // A uuid in one case only, so that an object's history is one lookup (the streams lower-case theirs).
    object_id:
      event.objectId === undefined ? null : isUuid(event.objectId) ? event.objectId.toLowerCase() : event.objectId,
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

const AUDIT_FIELDS = 18;
const AUDIT_KIND = fields('audit');
/** A row's bytes besides its text: the field count, 18 lengths, five uuids, a boolean, the kind and jsonb/array headers. */
const ROW_FIXED_BYTES = 2 + AUDIT_FIELDS * 4 + 5 * 16 + 1 + 5 + 1 + 20;

/**
 * The records as one COPY binary stream in AUDIT_COLUMNS order (platform/db/copy-binary.ts), or undefined if one
 * of their ids is not a canonical uuid: the INSERT then reports it as PostgreSQL does.
 */
function auditRows(records: AuditRecord[]): Buffer | undefined {
  const c = Chunk.stream(records.length * 512);
  let at = c.end;
  for (const r of records) {
    const details = JSON.stringify(r.details);
    let chars =
      details.length +
      r.type.length +
      r.category.length +
      r.severity.length +
      r.actor_type.length +
      r.description.length +
      (r.object_type?.length ?? 0) +
      (r.object_id?.length ?? 0) +
      (r.ip_address?.length ?? 0) +
      (r.user_agent?.length ?? 0);
    for (const tag of r.tags) chars += tag.length + 4;
    // UTF-8 takes at most three bytes per UTF-16 unit.
    c.room(at, ROW_FIXED_BYTES + 3 * chars);
    c.view.setInt16(at, AUDIT_FIELDS);
    at = c.uuid(at + 2, r.id, false);
    if (at < 0) return undefined;
    at = c.bytesField(at, AUDIT_KIND);
    at = c.text(at, r.type);
    at = c.text(at, r.category);
    at = c.text(at, r.severity);
    at = c.bool(at, r.success);
    at = c.uuid(at, r.organization_id);
    if (at >= 0) at = c.uuid(at, r.user_id, false);
    if (at < 0) return undefined;
    at = c.text(at, r.actor_type);
    at = c.uuid(at, r.actor_id);
    if (at >= 0) at = c.uuid(at, r.api_key_id);
    if (at < 0) return undefined;
    at = c.text(at, r.object_type);
    at = c.text(at, r.object_id);
    at = c.text(at, r.description);
    at = c.jsonb(at, details);
    at = c.textArray(at, r.tags);
    at = c.text(at, r.ip_address);
    at = c.text(at, r.user_agent);
  }
  return c.close(at);
}

/**
 * Large batches (a provisioning call's thousand events) are COPYed in binary on the connection of
 * the caller's transaction, so they still commit or roll back with the change: on PostgreSQL 1,000
 * events cost its server about half the CPU of `json_to_recordset` (~8 ms instead of ~17 ms), and
 * PGlite reads them from a blob in 14 ms instead of 23. Below 100 the single INSERT is as cheap.
 */
const COPY_FROM = 100;
const COPY_AUDITS = `activities (${AUDIT_COLUMNS})`;

// Rows per statement: the JSON parameter of 5,000 events stays a few megabytes.
const AUDIT_CHUNK = 5_000;

/**
 * Records several audit events through `db`, normally the transaction of the change: one binary COPY
 * for a batch of 100 or more, else one set-based INSERT per 5,000 (the rows travel as one JSON
 * parameter read by `json_to_recordset`; building a multi-row insert with Drizzle cost ~150 ms of
 * CPU for 1,000 rows).
 */
export async function recordAudits(db: DbOrTx, events: AuditEvent[]): Promise<void> {
  if (events.length >= COPY_FROM && (await copyBinary(db, COPY_AUDITS, () => auditRows(events.map(auditRecord))))) {
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
