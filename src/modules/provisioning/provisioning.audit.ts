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

/**
 * How an event's description names the path a write came by: every path shares this core, so
 * "by provisioning" alone would not tell an administrator's edit from a SCIM push.
 */
function pathOf(source: string | undefined): string {
  switch (source) {
    case 'admin':
      return 'through the admin API';
    case 'profile':
      return 'by the user on their profile';
    case 'scim':
      return 'through SCIM';
    case 'provisioning_api':
      return 'through the provisioning API';
    default:
      // An import names itself: `import`, or the command line's `import from <origin>`.
      return source?.startsWith('import') ? `by ${source}` : 'by provisioning';
  }
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
    description: `${type.slice(5).replace(/^./, (c) => c.toUpperCase())} ${pathOf(context?.source)}`,
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
    description: `Organization ${org.code} created ${pathOf(context?.source)}`,
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
