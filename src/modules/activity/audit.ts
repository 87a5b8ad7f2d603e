import { uuidv7 } from 'uuidv7';
import type { DbOrTx } from '../../platform/db/client.js';
import type { Actor } from '../../platform/http/auth.js';
import { activities, type NewActivity } from './activity.table.js';
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
  /** Who did it (request.actor); omitted = the system. */
  actor?: Actor;
  /** Who did it when only their user id is at hand (and `actor` is omitted). */
  actorUserId?: string | null;
  description: string;
  /** Redacted before storage. */
  details?: Record<string, unknown>;
  severity?: 'info' | 'warning' | 'critical';
  /** Default true. */
  success?: boolean;
  ip?: string | null;
  userAgent?: string | null;
  tags?: string[];
  /** The object the event is about when it is not a user ('role', 'api_key', 'organization', …). */
  objectType?: string;
  objectId?: string;
}

function auditRow(event: AuditEvent): NewActivity {
  const actor = event.actor;
  return {
    id: uuidv7(),
    kind: 'audit',
    activityType: event.type,
    category: event.category,
    severity: event.severity ?? 'info',
    success: event.success ?? true,
    organizationId: event.organizationId,
    userId: event.userId ?? null,
    actorType: actor ? actor.kind : event.actorUserId ? 'user' : 'system',
    actorId: actor?.kind === 'user' ? actor.userId : actor ? null : (event.actorUserId ?? null),
    apiKeyId: actor?.kind === 'api_key' ? actor.apiKeyId : null,
    objectType: event.objectType ?? null,
    objectId: event.objectId ?? null,
    description: event.description,
    details: redactDetails(event.details),
    tags: event.tags ?? [],
    ipAddress: event.ip ?? null,
    userAgent: event.userAgent ?? null,
  };
}

/**
 * Records one audit event through `db`, normally the transaction of the change it records, so
 * the change and its record commit (or roll back) together.
 */
export async function recordAudit(db: DbOrTx, event: AuditEvent): Promise<void> {
  await db.insert(activities).values(auditRow(event));
}

/** Records several audit events in one multi-row INSERT (bulk paths). */
export async function recordAudits(db: DbOrTx, events: AuditEvent[]): Promise<void> {
  if (events.length === 0) return;
  // PostgreSQL takes at most 65535 bind parameters per statement; 20 columns a row.
  for (let i = 0; i < events.length; i += 2000) {
    await db.insert(activities).values(events.slice(i, i + 2000).map(auditRow));
  }
}
