import { and, eq, sql } from 'drizzle-orm';
import { type Envelope, EnvelopeError } from '../../platform/crypto/envelope.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { newId } from '../../platform/db/ids.js';
import { type Actor, organizationScopeOf, type PermissionCheck, requireUser } from '../../platform/http/auth.js';
import { commonErrors } from '../../platform/http/errors.js';
import { type AuditEvent, recordAudit } from '../activity/audit.js';
import { findOrganizationByCode, findOrganizationById } from '../organizations/organizations.queries.js';
import {
  type Credentials,
  checkApiKeyHeader,
  checkSendableCredentials,
  hintsOf,
  mergeCredentials,
  openCredentials,
  sealCredentials,
} from './credentials.js';
import { integrationErrors } from './integrations.errors.js';
import { findIntegration, findOrganizationIntegration, type IntegrationRow } from './integrations.queries.js';
import type {
  CreateIntegrationInput,
  CredentialsInputValue,
  HealthStatus,
  UpdateIntegrationInput,
} from './integrations.schemas.js';
import {
  type CredentialName,
  type Integration,
  integrationOAuth2States,
  integrationOAuth2Tokens,
  integrations,
  type OAuth2Settings,
} from './integrations.table.js';
import { checkIntegrationUrl, joinUrl } from './outbound-http.js';
import type { AddressRules } from './refused-addresses.js';
import { originChanges } from './secret-destinations.js';

/** Who manages integrations, and within which bounds. */
export interface IntegrationManager {
  /** Only this organization's integrations; undefined: every organization's (superusers). */
  organizationId: string | undefined;
  /** The organization a new integration belongs to when the input names none. */
  homeOrganizationId: string | undefined;
  userId: string | null;
}

/** A signed-in user: superusers everywhere, anyone else within their own organization. */
export function integrationManagerOf(actor: Actor): IntegrationManager {
  const user = requireUser(actor);
  return { organizationId: organizationScopeOf(user), homeOrganizationId: user.organizationId, userId: user.userId };
}

/** The service type of downstream systems that receive the organization's users (see downstream-sync). */
export const USER_PROVISIONING_TYPE = 'user_provisioning';

const USERS_VIEW = { permission: 'users.view' } as const;

/**
 * Sending users downstream hands the user directory (emails, names, keycloak_ids) to whatever
 * `base_url` names, so whoever runs a sync, or sets up, repoints or turns on the integration a
 * scheduled sync sends to, needs `users.view` besides their integration permission.
 */
export async function assertMaySendUsers(
  can: PermissionCheck,
  actor: Actor,
  detail = 'Sending users to a user_provisioning integration needs the users.view permission as well.',
): Promise<void> {
  const user = requireUser(actor);
  if (await can(user, USERS_VIEW)) return;
  throw commonErrors.forbidden(detail);
}

/** The health rule: no consecutive failure is HEALTHY, one or two DEGRADED, three or more DOWN. */
export const DOWN_AFTER_FAILURES = 3;
export function healthStatusFor(consecutiveFailures: number): Exclude<HealthStatus, 'UNKNOWN'> {
  if (consecutiveFailures === 0) return 'HEALTHY';
  return consecutiveFailures >= DOWN_AFTER_FAILURES ? 'DOWN' : 'DEGRADED';
}

/** The same rule in SQL, for updates that change the counter atomically. */
const healthStatusSql = (failures: ReturnType<typeof sql>) =>
  sql`case when ${failures} = 0 then 'HEALTHY' when ${failures} >= ${DOWN_AFTER_FAILURES} then 'DOWN' else 'DEGRADED' end`;

async function organizationOfNew(
  db: DbOrTx,
  manager: IntegrationManager,
  code: string | undefined,
): Promise<{ id: string; code: string }> {
  if (code === undefined) {
    const home =
      manager.homeOrganizationId === undefined ? undefined : await findOrganizationById(db, manager.homeOrganizationId);
    if (!home) throw integrationErrors.organizationRequired();
    return { id: home.id, code: home.code };
  }
  const org = await findOrganizationByCode(db, code);
  // A confined manager learns nothing about other organizations, not even whether the code exists.
  if (manager.organizationId !== undefined && org?.id !== manager.organizationId) {
    throw integrationErrors.otherOrganization();
  }
  if (!org) throw integrationErrors.organizationNotFound(code);
  return { id: org.id, code: org.code };
}

function checkedOAuth2(input: OAuth2Settings | undefined, rules: AddressRules): OAuth2Settings | undefined {
  if (!input) return undefined;
  const out: OAuth2Settings = { ...input };
  // Checked but kept as given: an issuer identifier is compared exactly (RFC 8414 §3.3), and has
  // no query component (RFC 8414 §2). The endpoints may have one (RFC 6749 §3.1, §3.2), kept on calls.
  if (input.issuer) checkIntegrationUrl(input.issuer, 'oauth2.issuer', rules, { query: false });
  if (input.authorization_url) {
    out.authorization_url = checkIntegrationUrl(input.authorization_url, 'oauth2.authorization_url', rules);
  }
  if (input.token_url) out.token_url = checkIntegrationUrl(input.token_url, 'oauth2.token_url', rules);
  return out;
}

/**
 * An OAuth2 integration names its client. Checked when `auth_type` or `oauth2` is given, against the
 * settings the integration ends up with (`oauth2` given replaces the stored object whole).
 */
function checkOAuth2Client(authType: string, oauth2: OAuth2Settings | undefined): void {
  if (authType !== 'oauth2') return;
  if (!oauth2?.client_id) throw integrationErrors.oauth2ClientIdRequired();
  // Both grants end at the token endpoint (RFC 6749 §4.1.3, §4.4.2): named, or discovered from the issuer.
  if (!oauth2.token_url && !oauth2.issuer) throw integrationErrors.oauth2TokenUrlRequired();
}

/** The credentials each auth type sends: given all, they make a whole set that needs nothing stored. */
const CREDENTIALS_OF_AUTH: Record<string, readonly CredentialName[]> = {
  none: [],
  api_key: ['api_key'],
  bearer: ['token'],
  basic: ['username', 'password'],
  oauth2: ['client_secret'],
};

/**
 * The stored credentials, or, when they cannot be opened (sealed under a master key this node does
 * not hold), null: an update that gives a whole set replaces them without reading them.
 */
function openStoredCredentials(envelope: Envelope, integration: Integration): Credentials | null {
  try {
    return openCredentials(envelope, integration.id, integration.credentialsSealed);
  } catch (err) {
    if (err instanceof EnvelopeError) return null;
    throw err;
  }
}

/**
 * The credentials an update really changes: set to a value, removed, or replaced by another value.
 * Removing one that is not stored, or restating the stored value, changes nothing and is not recorded.
 */
function changedCredentialNames(stored: Credentials, changes: CredentialsInputValue | undefined): string[] {
  return (Object.entries(changes ?? {}) as [CredentialName, string | null | undefined][])
    .filter(([name, value]) => value !== undefined && (value ?? undefined) !== stored[name])
    .map(([name]) => name)
    .sort();
}

function auditEvent(
  manager: IntegrationManager,
  integration: { id: string; organizationId: string; name: string },
  type: string,
  description: string,
  details: Record<string, unknown> = {},
): AuditEvent {
  return {
    type,
    category: 'integrations',
    organizationId: integration.organizationId,
    actorUserId: manager.userId,
    description: `Integration "${integration.name}" ${description}`,
    details: { name: integration.name, ...details },
    objectType: 'integration',
    objectId: integration.id,
  };
}

async function reread(db: DbOrTx, id: string): Promise<IntegrationRow> {
  const row = await findIntegration(db, id, undefined);
  if (!row) throw integrationErrors.notFound(id);
  return row;
}

/** Registers an integration in the manager's organization (or a named one, for superusers), credentials sealed. */
export async function createIntegration(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  manager: IntegrationManager,
  input: CreateIntegrationInput,
): Promise<IntegrationRow> {
  const baseUrl = checkIntegrationUrl(input.base_url, 'base_url', rules, { query: false });
  joinUrl(baseUrl, input.health_check_path ?? '/', 'health_check_path');
  const oauth2 = checkedOAuth2(input.oauth2, rules);
  checkOAuth2Client(input.auth_type, oauth2);
  checkSendableCredentials(input.credentials);
  checkApiKeyHeader(input.api_key_header);
  const organization = await organizationOfNew(db, manager, input.organization);
  const id = newId();
  const credentials = mergeCredentials({}, input.credentials ?? {});
  return db.transaction(async (tx) => {
    await tx.insert(integrations).values({
      id,
      organizationId: organization.id,
      name: input.name,
      serviceType: input.service_type,
      providerName: input.provider_name ?? '',
      description: input.description ?? '',
      authType: input.auth_type,
      baseUrl,
      healthCheckPath: input.health_check_path ?? '/',
      apiKeyHeader: input.api_key_header ?? 'X-API-Key',
      timeoutMs: input.timeout_ms ?? 10_000,
      isActive: input.is_active ?? true,
      isTestMode: input.is_test_mode ?? false,
      settings: input.settings ?? {},
      oauth2: oauth2 ?? {},
      credentialsSealed: sealCredentials(envelope, id, credentials),
      credentialHints: hintsOf(credentials),
      createdBy: manager.userId,
    });
    await recordAudit(
      tx,
      auditEvent(manager, { id, organizationId: organization.id, name: input.name }, 'integration.created', 'created', {
        service_type: input.service_type,
        auth_type: input.auth_type,
        base_url: baseUrl,
        // Which secrets were given, by name (a key named like "credentials" would be redacted whole).
        stored: Object.keys(credentials).sort(),
      }),
    );
    return reread(tx, id);
  });
}

const FIELD_COLUMNS = {
  name: 'name',
  service_type: 'serviceType',
  provider_name: 'providerName',
  description: 'description',
  auth_type: 'authType',
  base_url: 'baseUrl',
  health_check_path: 'healthCheckPath',
  api_key_header: 'apiKeyHeader',
  timeout_ms: 'timeoutMs',
  is_test_mode: 'isTestMode',
  settings: 'settings',
  oauth2: 'oauth2',
} as const satisfies Record<string, keyof Integration>;

/**
 * Changes an integration; credentials merge (a value replaces, null removes, omitted keeps).
 * A change of the origin of `base_url` or of an OAuth2 endpoint needs `credentials` in the same
 * input when any are stored, replaces the stored set with them, and drops the OAuth2 tokens and
 * pending authorizations. One transaction writes the change and its audit events:
 * `integration.updated` for settings (with the origin changes and what was dropped),
 * `integration.credentials_changed` naming (never showing) the changed secrets, and
 * `integration.activated`/`deactivated` when `is_active` flips.
 */
export async function updateIntegration(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  manager: IntegrationManager,
  id: string,
  input: UpdateIntegrationInput,
): Promise<IntegrationRow> {
  const changes: Partial<Integration> = {};
  if (input.base_url !== undefined)
    changes.baseUrl = checkIntegrationUrl(input.base_url, 'base_url', rules, { query: false });
  const oauth2 = checkedOAuth2(input.oauth2, rules);
  checkSendableCredentials(input.credentials);
  checkApiKeyHeader(input.api_key_header);
  return db.transaction(async (tx) => {
    const scoped = await findIntegration(tx, id, manager.organizationId);
    if (!scoped) throw integrationErrors.notFound(id);
    const current = await findOrganizationIntegration(tx, scoped.organizationId, scoped.id, { lock: true });
    if (!current) throw integrationErrors.notFound(id);
    if (input.auth_type !== undefined || oauth2 !== undefined) {
      checkOAuth2Client(input.auth_type ?? current.authType, oauth2 ?? current.oauth2);
    }
    // The health check's path must stay below the base URL, whichever of the two changes.
    if (changes.baseUrl !== undefined || input.health_check_path !== undefined) {
      joinUrl(
        changes.baseUrl ?? current.baseUrl,
        input.health_check_path ?? current.healthCheckPath,
        'health_check_path',
      );
    }

    const changedFields: string[] = [];
    for (const [field, column] of Object.entries(FIELD_COLUMNS) as [keyof typeof FIELD_COLUMNS, keyof Integration][]) {
      const value = field === 'oauth2' ? oauth2 : field === 'base_url' ? changes.baseUrl : input[field];
      if (value === undefined) continue;
      if (JSON.stringify(value) === JSON.stringify(current[column])) continue;
      (changes as Record<string, unknown>)[column] = value;
      changedFields.push(field);
    }
    if (changes.baseUrl === current.baseUrl) delete changes.baseUrl;

    // Secrets follow the host: a manager may repoint an integration, but not send the stored
    // secrets to a host they choose. Moving needs the credentials restated, and drops the tokens.
    const moves = originChanges(current, {
      baseUrl: changes.baseUrl ?? current.baseUrl,
      oauth2: changes.oauth2 ?? current.oauth2,
    });
    if (moves.length > 0 && current.credentialsSealed !== null && input.credentials === undefined) {
      throw integrationErrors.credentialsRequiredForNewOrigin(moves);
    }
    const givesAny = Object.values(input.credentials ?? {}).some((value) => value !== undefined);
    const readable = moves.length > 0 || givesAny ? openStoredCredentials(envelope, current) : {};
    // Unreadable, the stored set can only be replaced whole: after a move, or by every credential the
    // auth type sends, given as values (README "Rotating the master key", step 4).
    const replacesWhole =
      readable === null &&
      (moves.length > 0 ||
        (CREDENTIALS_OF_AUTH[changes.authType ?? current.authType] ?? []).every(
          (name) => typeof input.credentials?.[name] === 'string',
        ));
    if (readable === null && !replacesWhole) {
      throw integrationErrors.credentialsUnreadable(
        current.id,
        CREDENTIALS_OF_AUTH[changes.authType ?? current.authType] ?? [],
      );
    }
    const stored = readable ?? {};
    const given = changedCredentialNames(stored, input.credentials);
    // After a move, the credentials given are the whole set: a name left out would otherwise be kept and sent on.
    const credentialNames = moves.length > 0 ? [...new Set([...Object.keys(stored), ...given])].sort() : given;
    if (credentialNames.length > 0) {
      const merged = mergeCredentials(moves.length > 0 || replacesWhole ? {} : stored, input.credentials ?? {});
      changes.credentialsSealed = sealCredentials(envelope, current.id, merged);
      changes.credentialHints = hintsOf(merged);
    }
    const dropped: string[] = [];
    if (moves.length > 0) {
      const tokens = await tx
        .delete(integrationOAuth2Tokens)
        .where(
          and(
            eq(integrationOAuth2Tokens.organizationId, current.organizationId),
            eq(integrationOAuth2Tokens.integrationId, current.id),
          ),
        )
        .returning({ id: integrationOAuth2Tokens.integrationId });
      if (tokens.length > 0) dropped.push('oauth2_tokens');
      const pending = await tx
        .delete(integrationOAuth2States)
        .where(
          and(
            eq(integrationOAuth2States.organizationId, current.organizationId),
            eq(integrationOAuth2States.integrationId, current.id),
          ),
        )
        .returning({ id: integrationOAuth2States.integrationId });
      if (pending.length > 0) dropped.push('pending_oauth2_authorizations');
    }
    const activeChange = input.is_active !== undefined && input.is_active !== current.isActive;
    if (activeChange) changes.isActive = input.is_active as boolean;

    // A move always changes base_url or oauth2, so nothing dropped goes unrecorded here.
    if (Object.keys(changes).length === 0) return scoped;
    await tx
      .update(integrations)
      .set(changes)
      .where(and(eq(integrations.organizationId, current.organizationId), eq(integrations.id, current.id)));

    const subject = { id: current.id, organizationId: current.organizationId, name: changes.name ?? current.name };
    const events: AuditEvent[] = [];
    if (changedFields.length > 0) {
      events.push(
        auditEvent(manager, subject, 'integration.updated', 'updated', {
          fields: changedFields,
          ...(moves.length > 0 ? { origin_changes: moves, dropped } : {}),
        }),
      );
    }
    if (credentialNames.length > 0) {
      events.push(
        auditEvent(manager, subject, 'integration.credentials_changed', 'credentials changed', {
          changed: credentialNames,
          ...(moves.length > 0 ? { reason: 'origin_changed' } : {}),
        }),
      );
    }
    if (activeChange) {
      events.push(
        input.is_active
          ? auditEvent(manager, subject, 'integration.activated', 'activated')
          : auditEvent(manager, subject, 'integration.deactivated', 'deactivated'),
      );
    }
    for (const event of events) await recordAudit(tx, event);
    return reread(tx, current.id);
  });
}

/** Turns an integration on or off; setting the state it already has changes nothing and records nothing. */
export async function setIntegrationActive(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  manager: IntegrationManager,
  id: string,
  active: boolean,
): Promise<IntegrationRow> {
  return updateIntegration(db, envelope, rules, manager, id, { is_active: active });
}

/** Deletes an integration with its history, logs and tokens; the audit event outlives them. */
export async function deleteIntegration(db: Db, manager: IntegrationManager, id: string): Promise<void> {
  await db.transaction(async (tx) => {
    const current = await findIntegration(tx, id, manager.organizationId);
    if (!current) throw integrationErrors.notFound(id);
    const [deleted] = await tx
      .delete(integrations)
      .where(and(eq(integrations.organizationId, current.organizationId), eq(integrations.id, current.id)))
      .returning({ id: integrations.id });
    // Deleted by a concurrent request since the read: answered as a repeat is, recorded once.
    if (!deleted) throw integrationErrors.notFound(id);
    await recordAudit(
      tx,
      auditEvent(manager, current, 'integration.deleted', 'deleted', { service_type: current.serviceType }),
    );
  });
}

/**
 * Counts one outcome against an integration in a single statement, so concurrent calls and checks
 * never lose an increment: a success resets the consecutive failures, a failure adds one, and the
 * health status follows the rule of `healthStatusFor`. `asRequest` also counts it in the usage totals.
 */
export async function recordOutcome(
  db: DbOrTx,
  integration: { organizationId: string; id: string },
  outcome: { success: boolean; asRequest: boolean; at: Date },
): Promise<void> {
  const failures = outcome.success ? sql`0` : sql`${integrations.consecutiveFailures} + 1`;
  await db
    .update(integrations)
    .set({
      consecutiveFailures: sql`${failures}`,
      healthStatus: healthStatusSql(failures),
      ...(outcome.asRequest
        ? {
            totalRequests: sql`${integrations.totalRequests} + 1`,
            failedRequests: outcome.success
              ? sql`${integrations.failedRequests}`
              : sql`${integrations.failedRequests} + 1`,
            lastUsedAt: outcome.at,
          }
        : { lastHealthCheckAt: outcome.at }),
      // Counters are not an edit of the integration.
      updatedAt: sql`${integrations.updatedAt}`,
    })
    .where(and(eq(integrations.organizationId, integration.organizationId), eq(integrations.id, integration.id)));
}
