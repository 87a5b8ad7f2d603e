/**
 * The audit events of a provisioning call, and how they are recorded: in the caller's transaction,
 * set-based for bulk calls.
 */
import { sql } from 'drizzle-orm';
import { uuidv7 } from 'uuidv7';
import type { DbOrTx } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import type { Actor } from '../../platform/http/auth.js';
import { activities } from '../activity/activity.table.js';
import { type AuditEvent, recordAudits } from '../activity/audit.js';
import { redactDetails } from '../activity/redact.js';
import type { Organization } from '../organizations/organizations.table.js';
import type { RequestContext } from './provisioning.service.js';

function contextFields(context: RequestContext | undefined) {
  return {
    ip: context?.ip ?? null,
    userAgent: context?.userAgent ?? null,
    tags: ['provisioning', ...(context?.source ? [context.source] : [])],
  };
}

export function userEvent(
  actor: Actor,
  context: RequestContext | undefined,
  type: 'user.created' | 'user.updated' | 'user.deactivated',
  organizationId: string | null,
  userId: string,
  details: Record<string, unknown>,
): AuditEvent {
  return {
    type,
    category: 'user_management',
    organizationId,
    userId,
    actor,
    description: `${type.slice(5).replace(/^./, (c) => c.toUpperCase())} by provisioning`,
    details,
    ...contextFields(context),
  };
}

export function callEvent(
  actor: Actor,
  context: RequestContext | undefined,
  type: string,
  organizationId: string | null,
  details: Record<string, unknown>,
): AuditEvent {
  return {
    type,
    category: 'provisioning',
    organizationId,
    actor,
    description: `Provisioning call ${type}`,
    details,
    ...contextFields(context),
  };
}

export function organizationEvent(actor: Actor, context: RequestContext | undefined, org: Organization): AuditEvent {
  return {
    type: 'organization.created',
    category: 'organization',
    organizationId: org.id,
    actor,
    description: `Organization ${org.code} created by provisioning`,
    details: { code: org.code },
    objectType: 'organization',
    objectId: org.id,
    ...contextFields(context),
  };
}

/**
 * The actor as the activities table can hold it: the key configured as PROVISIONING_API_KEY has no
 * row (its id is not a uuid), so it is named in the details instead.
 */
function storableActor(event: AuditEvent): AuditEvent {
  const actor = event.actor;
  if (actor?.kind !== 'api_key' || isUuid(actor.apiKeyId)) return event;
  return {
    ...event,
    actor: { ...actor, apiKeyId: null as unknown as string },
    details: { ...event.details, api_key: actor.apiKeyId },
  };
}

/** Past this many events a call's audit rows go in through one set-based insert. */
const SET_BASED_AUDIT_FROM = 20;

/**
 * Records the call's events in the caller's transaction. Small calls go through `recordAudits`;
 * bulk calls write the very same rows (same columns, same redaction) with one
 * `INSERT … SELECT FROM json_to_recordset(…)`: building a 1,000-row multi-values insert in Drizzle cost
 * ~150 ms on PGlite, several times the user writes themselves; this takes ~20 ms.
 */
export async function audit(tx: DbOrTx, events: AuditEvent[]): Promise<void> {
  const first = events[0];
  // The set-based path carries what every event of a call shares (actor, origin, tags) once.
  const shared = (e: AuditEvent) =>
    e.actor === first?.actor &&
    e.ip === first?.ip &&
    e.userAgent === first?.userAgent &&
    (e.tags ?? []).join(',') === (first?.tags ?? []).join(',') &&
    e.severity === undefined &&
    e.success === undefined;
  if (!first || events.length < SET_BASED_AUDIT_FROM || !events.every(shared)) {
    await recordAudits(tx, events.map(storableActor));
    return;
  }
  // As storableActor, once for the call: a key without a row is named in each event's details.
  const stored = storableActor({ ...first, details: {} });
  const actor = stored.actor;
  const namedKey = (stored.details as { api_key?: string }).api_key ?? null;
  const records = events.map((e) => ({
    i: uuidv7(),
    t: e.type,
    c: e.category,
    o: e.organizationId,
    u: e.userId ?? null,
    ot: e.objectType ?? null,
    oi: e.objectId ?? null,
    d: e.description,
    x: redactDetails(e.details),
  }));
  await tx.execute(sql`
    insert into ${activities} (id, kind, activity_type, category, severity, success, organization_id, user_id,
      actor_type, actor_id, api_key_id, object_type, object_id, description, details, tags, ip_address, user_agent)
    select v.i, 'audit', v.t, v.c, 'info', true, v.o, v.u,
      ${actor?.kind ?? 'system'}, ${actor?.kind === 'user' ? actor.userId : null}::uuid,
      ${actor?.kind === 'api_key' ? actor.apiKeyId : null}::uuid, v.ot, v.oi, v.d,
      case when ${namedKey}::text is null then v.x else v.x || jsonb_build_object('api_key', ${namedKey}::text) end,
      ${sql.param(first.tags ?? [])}::text[], ${first.ip ?? null}::text, ${first.userAgent ?? null}::text
    from json_to_recordset(${JSON.stringify(records)}::json)
      as v(i uuid, t text, c text, o uuid, u uuid, ot text, oi text, d text, x jsonb)`);
}
