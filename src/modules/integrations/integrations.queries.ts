import { and, desc, eq, getTableColumns, ilike, isNull, lt, or, type SQL, sql } from 'drizzle-orm';
import type { DbOrTx } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { escapeLike } from '../../platform/db/like.js';
import { cursorId } from '../../platform/http/pagination.js';
import { organizations } from '../organizations/organizations.table.js';
import type { ListIntegrationsFilter } from './integrations.schemas.js';
import {
  type Integration,
  type IntegrationHealthCheck,
  type IntegrationLog,
  type IntegrationOAuth2Token,
  integrationHealthChecks,
  integrationLogs,
  integrationOAuth2Tokens,
  integrations,
} from './integrations.table.js';

/** An integration with its organization's code and the public facts of its OAuth2 token. */
export type IntegrationRow = Integration & {
  organizationCode: string;
  tokenScope: string | null;
  tokenExpiresAt: Date | null;
  /** Null when the integration holds no token at all. */
  tokenHasRefresh: boolean | null;
};

const withOrganization = {
  ...getTableColumns(integrations),
  organizationCode: organizations.code,
  tokenScope: integrationOAuth2Tokens.scope,
  tokenExpiresAt: integrationOAuth2Tokens.expiresAt,
  tokenHasRefresh: sql<boolean | null>`case when ${integrationOAuth2Tokens.integrationId} is null then null
    else ${integrationOAuth2Tokens.refreshTokenSealed} is not null end`,
};

function selectIntegrations(db: DbOrTx) {
  return db
    .select(withOrganization)
    .from(integrations)
    .innerJoin(organizations, eq(organizations.id, integrations.organizationId))
    .leftJoin(
      integrationOAuth2Tokens,
      and(
        eq(integrationOAuth2Tokens.organizationId, integrations.organizationId),
        eq(integrationOAuth2Tokens.integrationId, integrations.id),
      ),
    );
}

/** An integration by id; with `organizationId`, only one of that organization (others are simply not found). */
export async function findIntegration(
  db: DbOrTx,
  id: string,
  organizationId: string | undefined,
): Promise<IntegrationRow | undefined> {
  if (!isUuid(id)) return undefined;
  const conditions: SQL[] = [eq(integrations.id, id)];
  if (organizationId !== undefined) conditions.push(eq(integrations.organizationId, organizationId));
  const [row] = await selectIntegrations(db)
    .where(and(...conditions))
    .limit(1);
  return row;
}

/**
 * The bare row of an organization's integration; with `lock`, locked until the transaction ends,
 * for writes that read credentials or tokens before replacing them. `lock: 'key share'` only keeps
 * the row from being deleted meanwhile (history written about it), without holding back updates.
 */
export async function findOrganizationIntegration(
  db: DbOrTx,
  organizationId: string,
  id: string,
  options: { lock?: boolean | 'key share' } = {},
): Promise<Integration | undefined> {
  if (!isUuid(id)) return undefined;
  const query = db
    .select()
    .from(integrations)
    .where(and(eq(integrations.organizationId, organizationId), eq(integrations.id, id)))
    .limit(1);
  const [row] = options.lock ? await query.for(options.lock === 'key share' ? 'key share' : 'update') : await query;
  return row;
}

/** Keyset page of integrations, newest first, within one organization or (undefined) across all. */
export async function listIntegrations(
  db: DbOrTx,
  organizationId: string | undefined,
  filter: ListIntegrationsFilter & { limit: number },
): Promise<IntegrationRow[]> {
  const conditions: (SQL | undefined)[] = [];
  if (organizationId !== undefined) conditions.push(eq(integrations.organizationId, organizationId));
  if (filter.service_type) conditions.push(eq(integrations.serviceType, filter.service_type));
  if (filter.auth_type) conditions.push(eq(integrations.authType, filter.auth_type));
  if (filter.health_status) conditions.push(eq(integrations.healthStatus, filter.health_status));
  if (filter.is_active !== undefined) conditions.push(eq(integrations.isActive, filter.is_active));
  if (filter.is_test_mode !== undefined) conditions.push(eq(integrations.isTestMode, filter.is_test_mode));
  if (filter.search) {
    const pattern = `%${escapeLike(filter.search)}%`;
    conditions.push(or(ilike(integrations.name, pattern), ilike(integrations.providerName, pattern)));
  }
  if (filter.cursor) conditions.push(lt(integrations.id, cursorId(filter.cursor)));
  return selectIntegrations(db)
    .where(and(...conditions))
    .orderBy(desc(integrations.id))
    .limit(filter.limit + 1);
}

/** Active integrations whose last health check is older than `before` (or that never had one), oldest first. */
export async function listIntegrationsDueForCheck(
  db: DbOrTx,
  before: Date,
  limit: number,
): Promise<{ id: string; organizationId: string }[]> {
  return db
    .select({ id: integrations.id, organizationId: integrations.organizationId })
    .from(integrations)
    .where(
      and(
        eq(integrations.isActive, true),
        or(isNull(integrations.lastHealthCheckAt), lt(integrations.lastHealthCheckAt, before)),
      ),
    )
    .orderBy(sql`${integrations.lastHealthCheckAt} asc nulls first`)
    .limit(limit);
}

/** Keyset page of an integration's health checks, newest first. */
export async function listHealthChecks(
  db: DbOrTx,
  organizationId: string,
  integrationId: string,
  page: { limit: number; cursor?: string | undefined },
): Promise<IntegrationHealthCheck[]> {
  const conditions: SQL[] = [
    eq(integrationHealthChecks.organizationId, organizationId),
    eq(integrationHealthChecks.integrationId, integrationId),
  ];
  if (page.cursor) conditions.push(lt(integrationHealthChecks.id, cursorId(page.cursor)));
  return db
    .select()
    .from(integrationHealthChecks)
    .where(and(...conditions))
    .orderBy(desc(integrationHealthChecks.id))
    .limit(page.limit + 1);
}

/** Keyset page of an integration's request logs, newest first. */
export async function listIntegrationLogs(
  db: DbOrTx,
  organizationId: string,
  integrationId: string,
  page: { limit: number; cursor?: string | undefined; success?: boolean | undefined },
): Promise<IntegrationLog[]> {
  const conditions: SQL[] = [
    eq(integrationLogs.organizationId, organizationId),
    eq(integrationLogs.integrationId, integrationId),
  ];
  if (page.success !== undefined) conditions.push(eq(integrationLogs.success, page.success));
  if (page.cursor) conditions.push(lt(integrationLogs.id, cursorId(page.cursor)));
  return db
    .select()
    .from(integrationLogs)
    .where(and(...conditions))
    .orderBy(desc(integrationLogs.id))
    .limit(page.limit + 1);
}

/** The OAuth2 token row of an integration, if it holds one. */
export async function findOAuth2Token(
  db: DbOrTx,
  organizationId: string,
  integrationId: string,
): Promise<IntegrationOAuth2Token | undefined> {
  const [row] = await db
    .select()
    .from(integrationOAuth2Tokens)
    .where(
      and(
        eq(integrationOAuth2Tokens.organizationId, organizationId),
        eq(integrationOAuth2Tokens.integrationId, integrationId),
      ),
    )
    .limit(1);
  return row;
}
