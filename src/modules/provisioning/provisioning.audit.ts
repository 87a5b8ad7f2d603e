import type { Actor } from '../../platform/http/auth.js';
import type { AuditEvent } from '../activity/audit.js';
import type { Organization } from '../organizations/organizations.table.js';
import type { RequestContext } from './provisioning.service.js';

type ContextFields = { ip: string | null; userAgent: string | null; tags: string[] };

// A bulk call's thousand events share one context: its fields (and tags array, never mutated) are built once.
const fieldsOf = new WeakMap<RequestContext, ContextFields>();
const NO_CONTEXT: ContextFields = { ip: null, userAgent: null, tags: ['provisioning'] };

function contextFields(context: RequestContext | undefined): ContextFields {
  if (context === undefined) return NO_CONTEXT;
  let fields = fieldsOf.get(context);
  if (fields === undefined) {
    fields = {
      ip: context.ip ?? null,
      userAgent: context.userAgent ?? null,
      tags: ['provisioning', ...(context.source ? [context.source] : [])],
    };
    fieldsOf.set(context, fields);
  }
  return fields;
}

export function userEvent(
  actor: Actor,
  context: RequestContext | undefined,
  type: 'user.created' | 'user.updated' | 'user.deactivated',
  organizationId: string | null,
  userId: string,
  details: Record<string, unknown>,
  severity: AuditEvent['severity'] = 'info',
): AuditEvent {
  return {
    type,
    category: 'user_management',
    organizationId,
    userId,
    actor,
    description: `${type.slice(5).replace(/^./, (c) => c.toUpperCase())} by provisioning`,
    details,
    severity,
    objectType: 'user',
    objectId: userId,
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
