import { and, desc, eq, getTableColumns, isNull, lt, type SQL, sql } from 'drizzle-orm';
import { alias } from 'drizzle-orm/pg-core';
import { type DbOrTx, preparedPerHandle } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { cursorId } from '../../platform/http/pagination.js';
import { organizations } from '../organizations/organizations.table.js';
import { users } from '../users/users.table.js';
import { type ApiKey, apiKeys } from './api-keys.table.js';

/** A key with its organization's code (null for a platform-wide key). */
export type ApiKeyWithOrganization = ApiKey & { organizationCode: string | null };

const withOrganization = { ...getTableColumns(apiKeys), organizationCode: organizations.code };

/** A key as the resolver needs it: its organization's state decides whether it still works. */
export interface ApiKeyCredential {
  id: string;
  organizationId: string | null;
  keyHash: string;
  scopes: string[];
  expiresAt: Date | null;
  revokedAt: Date | null;
  /** True for a platform-wide key. */
  organizationActive: boolean;
  createdBy: string | null;
  /** True for a key without a creator (the operator's). */
  creatorActive: boolean;
  creatorIsSuperuser: boolean;
  /** The creator's organization; null for a key without a creator. */
  creatorOrganizationId: string | null;
  /** True for a key without a creator. */
  creatorOrganizationActive: boolean;
}

const creatorOrganizations = alias(organizations, 'creator_organizations');

// Runs on every request carrying a key whose state is not cached.
const byHashQuery = preparedPerHandle((db) =>
  db
    .select({
      id: apiKeys.id,
      organizationId: apiKeys.organizationId,
      keyHash: apiKeys.keyHash,
      scopes: apiKeys.scopes,
      expiresAt: apiKeys.expiresAt,
      revokedAt: apiKeys.revokedAt,
      organizationActive: sql<boolean>`coalesce(${organizations.isActive}, true)`,
      createdBy: apiKeys.createdBy,
      creatorActive: sql<boolean>`coalesce(${users.status} = 'active', true)`,
      creatorIsSuperuser: sql<boolean>`coalesce(${users.isSuperuser}, false)`,
      creatorOrganizationId: users.organizationId,
      creatorOrganizationActive: sql<boolean>`coalesce(${creatorOrganizations.isActive}, true)`,
    })
    .from(apiKeys)
    .leftJoin(organizations, eq(organizations.id, apiKeys.organizationId))
    .leftJoin(users, eq(users.id, apiKeys.createdBy))
    .leftJoin(creatorOrganizations, eq(creatorOrganizations.id, users.organizationId))
    .where(eq(apiKeys.keyHash, sql.placeholder('hash')))
    .limit(1)
    .prepare('find_api_key_by_hash'),
);

/** The key whose SHA-256 hash (hex) is `hash`. */
export async function findApiKeyByHash(db: DbOrTx, hash: string): Promise<ApiKeyCredential | undefined> {
  const [row] = await byHashQuery(db).execute({ hash });
  return row;
}

/**
 * A key by id; with `organizationId`, only a key of that organization (platform-wide keys and
 * other organizations' keys are simply not found).
 */
export async function findApiKey(
  db: DbOrTx,
  id: string,
  organizationId: string | undefined,
): Promise<ApiKeyWithOrganization | undefined> {
  if (!isUuid(id)) return undefined;
  const conditions: SQL[] = [eq(apiKeys.id, id)];
  if (organizationId !== undefined) conditions.push(eq(apiKeys.organizationId, organizationId));
  const [row] = await db
    .select(withOrganization)
    .from(apiKeys)
    .leftJoin(organizations, eq(organizations.id, apiKeys.organizationId))
    .where(and(...conditions))
    .limit(1);
  return row;
}

/**
 * Keyset page of keys, newest first. `organizationId` confines it to one organization; `null`
 * lists platform-wide keys only; undefined lists every key.
 */
export async function listApiKeys(
  db: DbOrTx,
  input: { organizationId: string | null | undefined; limit: number; cursor?: string | undefined },
): Promise<ApiKeyWithOrganization[]> {
  const conditions: SQL[] = [];
  if (input.organizationId === null) conditions.push(isNull(apiKeys.organizationId));
  else if (input.organizationId !== undefined) conditions.push(eq(apiKeys.organizationId, input.organizationId));
  if (input.cursor) conditions.push(lt(apiKeys.id, cursorId(input.cursor)));
  return db
    .select(withOrganization)
    .from(apiKeys)
    .leftJoin(organizations, eq(organizations.id, apiKeys.organizationId))
    .where(and(...conditions))
    .orderBy(desc(apiKeys.id))
    .limit(input.limit + 1);
}

/** Marks a key used, at most once a minute across every node (the condition makes racing writes no-ops). */
export async function touchApiKey(db: DbOrTx, id: string, now: Date): Promise<void> {
  await db
    .update(apiKeys)
    .set({ lastUsedAt: now })
    .where(
      and(
        eq(apiKeys.id, id),
        sql`(${apiKeys.lastUsedAt} is null or ${apiKeys.lastUsedAt} < ${new Date(now.getTime() - 60_000)})`,
      ),
    );
}
