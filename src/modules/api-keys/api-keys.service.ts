import { randomBytes, timingSafeEqual } from 'node:crypto';
import { and, eq, isNull } from 'drizzle-orm';
import type { FastifyBaseLogger, FastifyRequest } from 'fastify';
import type { Config } from '../../config.js';
import { secretsEqual, sha256Hex } from '../../platform/crypto/tokens.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import {
  type Actor,
  bearerToken,
  type CredentialResolver,
  organizationScopeOf,
  requireUser,
} from '../../platform/http/auth.js';
import { instantOf } from '../../platform/http/date-time.js';
import { commonErrors } from '../../platform/http/errors.js';
import type { FailureLimit } from '../../platform/http/rate-limits.js';
import { ALL_TOPICS, cachesAreCurrent, onInvalidation, publishInvalidation } from '../../platform/invalidation.js';
import { TtlCache } from '../../platform/ttl-cache.js';
import { recordAudit, recordAudits } from '../activity/audit.js';
import { findOrganizationByCode, findOrganizationById } from '../organizations/organizations.queries.js';
import { usersBeyondCeiling } from '../rbac/delegation.js';
import { accessOf, type EffectiveAccess } from '../rbac/effective-access.js';
import { apiKeyErrors } from './api-keys.errors.js';
import { type ApiKeyWithOrganization, findApiKey, findApiKeyByHash, touchApiKey } from './api-keys.queries.js';
import { type ApiKeyScope, isApiKeyScope, SCOPE_PERMISSIONS } from './api-keys.schemas.js';
import { apiKeys } from './api-keys.table.js';
import { ENV_KEY_ACTOR } from './env-key.js';

/** Every key starts with this, so a bearer value is told apart from a JWT without a lookup. */
export const API_KEY_PREFIX = 'gh_';
/** How much of a key is kept in clear: enough to recognise it, far too little to guess the rest. */
const VISIBLE_PREFIX_LENGTH = 12;

/** A fresh key: `gh_` and 256 random bits in base64url. */
export function generateApiKey(): { key: string; prefix: string; hash: string } {
  const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { key, prefix: key.slice(0, VISIBLE_PREFIX_LENGTH), hash: sha256Hex(key) };
}

// ---------------------------------------------------------------------------------------------
// Managing keys (HTTP and CLI)

/** Who manages keys, and within which bounds. */
export interface KeyManager {
  /** Only this organization's keys; undefined: every key, and platform-wide keys may be created. */
  organizationId: string | undefined;
  /** The organization a new key belongs to when the input names none; undefined: it must be named. */
  homeOrganizationId: string | undefined;
  userId: string | null;
  /** Who the audit events name when it is not the user `userId` (the command line). */
  actor?: Actor;
}

/** The actor fields of a manager's audit events. */
function auditActorOf(manager: KeyManager): { actor: Actor } | { actorUserId: string | null } {
  return manager.actor ? { actor: manager.actor } : { actorUserId: manager.userId };
}

/** A signed-in user managing keys: superusers everywhere, anyone else within their organization. */
export function keyManagerOf(actor: Actor): KeyManager {
  const user = requireUser(actor);
  return { organizationId: organizationScopeOf(user), homeOrganizationId: user.organizationId, userId: user.userId };
}

/** The operator on the command line: every organization, and the organization must be named. */
export const OPERATOR: KeyManager = { organizationId: undefined, homeOrganizationId: undefined, userId: null };

export interface NewApiKey {
  name: string;
  /** Organization code; null for a platform-wide key; omitted: the manager's own organization. */
  organization?: string | null | undefined;
  scopes: readonly string[];
  expires_at?: string | Date | undefined;
}

export interface CreatedApiKey {
  apiKey: ApiKeyWithOrganization;
  /** The key itself: shown once, never stored. */
  key: string;
}

async function organizationOfNewKey(
  db: DbOrTx,
  manager: KeyManager,
  organization: string | null | undefined,
): Promise<{ id: string; code: string } | null> {
  if (organization === null) {
    if (manager.organizationId !== undefined) throw apiKeyErrors.platformKeyForbidden();
    return null;
  }
  if (organization === undefined) {
    const home =
      manager.homeOrganizationId === undefined ? undefined : await findOrganizationById(db, manager.homeOrganizationId);
    if (!home) throw apiKeyErrors.organizationRequired();
    return { id: home.id, code: home.code };
  }
  const org = await findOrganizationByCode(db, organization);
  // A confined manager learns nothing about other organizations, not even whether the code exists.
  if (manager.organizationId !== undefined && org?.id !== manager.organizationId) {
    throw apiKeyErrors.otherOrganization();
  }
  if (!org) throw apiKeyErrors.organizationNotFound(organization);
  return { id: org.id, code: org.code };
}

function checkScopes(scopes: readonly string[]): string[] {
  const unknown = scopes.find((s) => !isApiKeyScope(s));
  if (unknown !== undefined) throw apiKeyErrors.unknownScope(unknown);
  if (scopes.length === 0) throw apiKeyErrors.noScopes();
  return [...new Set(scopes)];
}

/**
 * The scopes among `scopes` whose permissions (SCOPE_PERMISSIONS) `access` lacks, each with what is
 * missing; empty for a superuser. undefined access (no such user) holds nothing.
 */
export function scopesBeyond(
  access: EffectiveAccess | undefined,
  scopes: readonly string[],
): Map<string, readonly string[]> {
  const beyond = new Map<string, readonly string[]>();
  if (access?.isSuperuser) return beyond;
  for (const scope of scopes) {
    const needs = SCOPE_PERMISSIONS[scope as ApiKeyScope] ?? [];
    const missing = needs.filter((code) => !access?.permissions.has(code));
    if (missing.length > 0) beyond.set(scope, missing);
  }
  return beyond;
}

/** A signed-in manager's access (cached, read outside any transaction); null for the operator, who has no bound. */
async function accessOfManager(db: Db, manager: KeyManager): Promise<EffectiveAccess | null> {
  if (manager.userId === null) return null;
  const access = await accessOf(db, manager.userId);
  if (!access) throw commonErrors.unauthenticated();
  return access;
}

/** Refuses (403 delegation_ceiling) scopes the manager could not use themselves. */
function assertScopesWithin(manager: EffectiveAccess | null, scopes: readonly string[]): void {
  if (manager === null) return;
  const beyond = scopesBeyond(manager, scopes);
  if (beyond.size > 0) throw apiKeyErrors.scopesAboveCreator(beyond);
}

function checkExpiry(expiresAt: string | Date | undefined, now: Date): Date | null {
  if (expiresAt === undefined) return null;
  const at = expiresAt instanceof Date ? expiresAt : instantOf(expiresAt, 'expires_at');
  if (at.getTime() <= now.getTime()) throw apiKeyErrors.expiryInPast();
  return at;
}

async function insertKey(
  db: DbOrTx,
  values: {
    organization: { id: string; code: string } | null;
    name: string;
    scopes: string[];
    expiresAt: Date | null;
    createdBy: string | null;
  },
): Promise<CreatedApiKey> {
  const { key, prefix, hash } = generateApiKey();
  const [row] = await db
    .insert(apiKeys)
    .values({
      organizationId: values.organization?.id ?? null,
      name: values.name,
      prefix,
      keyHash: hash,
      scopes: values.scopes,
      expiresAt: values.expiresAt,
      createdBy: values.createdBy,
    })
    .returning();
  if (!row) throw new Error('API key not created');
  return { apiKey: { ...row, organizationCode: values.organization?.code ?? null }, key };
}

/**
 * Creates a key for an organization (default: the manager's own) or, for unconfined managers, a
 * platform-wide one. The key is returned once; only its hash and prefix are stored.
 */
export async function createApiKey(db: Db, manager: KeyManager, input: NewApiKey): Promise<CreatedApiKey> {
  const scopes = checkScopes(input.scopes);
  const expiresAt = checkExpiry(input.expires_at, new Date());
  assertScopesWithin(await accessOfManager(db, manager), scopes);
  const organization = await organizationOfNewKey(db, manager, input.organization);
  if (organization === null && scopes.includes('scim')) throw apiKeyErrors.scimNeedsOrganization();
  return db.transaction(async (tx) => {
    const created = await insertKey(tx, {
      organization,
      name: input.name,
      scopes,
      expiresAt,
      createdBy: manager.userId,
    });
    await recordAudit(tx, {
      type: 'api_key.created',
      category: 'api_keys',
      organizationId: organization?.id ?? null,
      ...auditActorOf(manager),
      description: `API key ${created.apiKey.prefix}… created`,
      details: {
        name: input.name,
        prefix: created.apiKey.prefix,
        scopes,
        expires_at: expiresAt?.toISOString() ?? null,
      },
      severity: organization === null ? 'warning' : 'info',
      objectType: 'api_key',
      objectId: created.apiKey.id,
    });
    return created;
  });
}

/** The audit event of a revocation (also of the old key in a rotation). */
function keyRevokedEvent(
  manager: KeyManager,
  key: { id: string; organizationId: string | null; prefix: string },
  rotated: boolean,
) {
  return {
    type: rotated ? 'api_key.rotated' : 'api_key.revoked',
    category: 'api_keys' as const,
    organizationId: key.organizationId,
    ...auditActorOf(manager),
    description: `API key ${key.prefix}… ${rotated ? 'rotated' : 'revoked'}`,
    details: { prefix: key.prefix },
    objectType: 'api_key',
    objectId: key.id,
  };
}

/**
 * Whether `manager` may revoke or rotate a key `createdBy` made: superusers and the operator any key;
 * anyone else their own keys and those of a creator within their delegation ceiling (a level number
 * at least theirs, grants they hold), never a superuser's or the operator's key (null creator, also
 * left by a deleted one). Read in `tx`, the caller's transaction.
 */
async function assertKeyWithinReach(tx: DbOrTx, manager: EffectiveAccess | null, createdBy: string | null) {
  if (manager === null || manager.isSuperuser || createdBy === manager.userId) return;
  const why = 'only a superuser may revoke or rotate it.';
  if (createdBy === null) {
    throw apiKeyErrors.creatorBeyondReach(`This key was made on the command line or by a deleted user; ${why}`);
  }
  const [beyond] = await usersBeyondCeiling(tx, manager, [createdBy]);
  if (beyond?.isSuperuser) throw apiKeyErrors.creatorBeyondReach(`This key was made by a superuser; ${why}`);
  if (beyond) {
    throw apiKeyErrors.creatorBeyondReach(
      "This key's creator holds a more powerful role than yours, or grants you lack; you may not revoke or rotate it.",
    );
  }
}

/** Revokes a key; it stops working at once on every node. Revoking a revoked key changes nothing. */
export async function revokeApiKey(db: Db, manager: KeyManager, id: string): Promise<void> {
  const revoker = await accessOfManager(db, manager);
  await db.transaction(async (tx) => {
    const current = await findApiKey(tx, id, manager.organizationId);
    if (!current) throw apiKeyErrors.notFound(id);
    await assertKeyWithinReach(tx, revoker, current.createdBy);
    if (current.revokedAt) return;
    const [revoked] = await tx
      .update(apiKeys)
      .set({ revokedAt: new Date() })
      .where(and(eq(apiKeys.id, current.id), isNull(apiKeys.revokedAt)))
      .returning({ id: apiKeys.id });
    // Revoked by a concurrent request since the read: that one recorded it, as for a repeat.
    if (!revoked) return;
    await publishInvalidation(tx, 'api-key', current.id);
    await recordAudit(tx, keyRevokedEvent(manager, current, false));
  });
  forgetApiKey(id);
}

/**
 * Revokes the keys a user created, in the transaction deleting the user: the reference to them goes
 * with the row, and a key without a creator would act as the operator's, without a ceiling.
 */
export async function revokeKeysOfCreator(tx: DbOrTx, userId: string, actor: Actor | undefined): Promise<void> {
  const revoked = await tx
    .update(apiKeys)
    .set({ revokedAt: new Date() })
    .where(and(eq(apiKeys.createdBy, userId), isNull(apiKeys.revokedAt)))
    .returning({ id: apiKeys.id, organizationId: apiKeys.organizationId, prefix: apiKeys.prefix });
  for (const key of revoked) await publishInvalidation(tx, 'api-key', key.id);
  await recordAudits(
    tx,
    revoked.map((key) => ({
      type: 'api_key.revoked',
      category: 'api_keys' as const,
      organizationId: key.organizationId,
      ...(actor ? { actor } : {}),
      description: `API key ${key.prefix}… revoked: its creator was deleted`,
      details: { prefix: key.prefix, reason: 'creator_deleted' },
      objectType: 'api_key',
      objectId: key.id,
    })),
  );
}

/**
 * Replaces a key by a new one with the same name, organization, scopes and expiry, revoking the
 * old one in the same transaction: there is never a moment with both or neither.
 */
export async function rotateApiKey(db: Db, manager: KeyManager, id: string): Promise<CreatedApiKey> {
  const rotator = await accessOfManager(db, manager);
  const created = await db.transaction(async (tx) => {
    const current = await findApiKey(tx, id, manager.organizationId);
    if (!current) throw apiKeyErrors.notFound(id);
    await assertKeyWithinReach(tx, rotator, current.createdBy);
    const now = new Date();
    if (current.revokedAt) throw apiKeyErrors.revoked(id);
    if (current.expiresAt && current.expiresAt <= now) throw apiKeyErrors.expired(id);
    // The successor is the rotator's key: it may carry only scopes they could create it with.
    assertScopesWithin(rotator, current.scopes);
    const [revoked] = await tx
      .update(apiKeys)
      .set({ revokedAt: now })
      .where(and(eq(apiKeys.id, current.id), isNull(apiKeys.revokedAt)))
      .returning({ id: apiKeys.id });
    // Revoked by a concurrent request between the read and the update.
    if (!revoked) throw apiKeyErrors.revoked(id);
    await publishInvalidation(tx, 'api-key', current.id);
    const successor = await insertKey(tx, {
      organization:
        current.organizationId === null
          ? null
          : { id: current.organizationId, code: current.organizationCode as string },
      name: current.name,
      scopes: current.scopes,
      expiresAt: current.expiresAt,
      createdBy: manager.userId,
    });
    await recordAudit(tx, {
      ...keyRevokedEvent(manager, current, true),
      details: { prefix: current.prefix, successor_id: successor.apiKey.id, successor_prefix: successor.apiKey.prefix },
    });
    return successor;
  });
  forgetApiKey(id);
  return created;
}

// ---------------------------------------------------------------------------------------------
// Resolving a presented key to an actor. Key state is cached by hash for 30 s and dropped at once
// when the key is revoked, or its organization, its creator or their organization changes
// (in-process, and on other nodes through the invalidation bus).

const KEY_STATE_TTL_MS = 30_000;
const KEY_STATE_MAX = 10_000;
const LAST_USED_INTERVAL_MS = 60_000;

interface KeyState {
  apiKeyId: string;
  organizationId: string | null;
  scopes: string[];
  expiresAtMs: number | null;
  createdBy: string | null;
  creatorOrganizationId: string | null;
  /** The creator unless a superuser (whose keys have no ceiling). */
  ceilingUserId: string | null;
  /** Not revoked, its organization (if any) active, and its creator (if any) active in an active organization. */
  usable: boolean;
  /**
   * A creator who is no longer a superuser, of a key reaching past their organization (platform-wide
   * or another organization's): only a superuser could make it, so it works only while they are one.
   * The ceiling alone would not confine it: their permissions are their organization's, the key's
   * reach is not.
   */
  outgrown: boolean;
}

const keyStates = new TtlCache<string, KeyState>(KEY_STATE_MAX);
const lastUseRecorded = new TtlCache<string, true>(KEY_STATE_MAX);
/**
 * Bumped by every invalidation. A load that saw it move may have read the state from before the
 * change (for instance before the revoking transaction committed), so its answer is used once
 * but not cached.
 */
let generation = 0;

function invalidate(drop: () => void): void {
  generation++;
  drop();
}

/** Drops this process's cached state of one key. */
function forgetApiKey(id: string): void {
  invalidate(() => keyStates.deleteWhere((s) => s.apiKeyId === id));
}

onInvalidation('api-key', forgetApiKey);
onInvalidation('organization', (id) =>
  invalidate(() => keyStates.deleteWhere((s) => s.organizationId === id || s.creatorOrganizationId === id)),
);
// A creator's deactivation (or return) and loss (or regain) of superuser reach their keys at once.
onInvalidation('user', (id) => invalidate(() => keyStates.deleteWhere((s) => s.createdBy === id)));
onInvalidation(ALL_TOPICS, (event) => {
  if (event === 'reset') invalidate(() => keyStates.clear());
});

async function loadKeyState(db: Db, key: string, now: number): Promise<KeyState | undefined> {
  const hash = sha256Hex(key);
  // Not from memory, nor kept, while this node may be missing invalidations.
  const cached = cachesAreCurrent() ? keyStates.get(hash, now) : undefined;
  if (cached) return cached;
  const seen = generation;
  const row = await findApiKeyByHash(db, hash);
  // The index lookup is not constant-time; the final comparison of the hashes is.
  if (!row || !timingSafeEqual(Buffer.from(row.keyHash, 'hex'), Buffer.from(hash, 'hex'))) return undefined;
  const state: KeyState = {
    apiKeyId: row.id,
    organizationId: row.organizationId,
    scopes: row.scopes,
    expiresAtMs: row.expiresAt?.getTime() ?? null,
    createdBy: row.createdBy,
    creatorOrganizationId: row.creatorOrganizationId,
    ceilingUserId: row.creatorIsSuperuser ? null : row.createdBy,
    usable: row.revokedAt === null && row.organizationActive && row.creatorActive && row.creatorOrganizationActive,
    outgrown: row.createdBy !== null && !row.creatorIsSuperuser && row.organizationId !== row.creatorOrganizationId,
  };
  if (seen === generation && cachesAreCurrent()) keyStates.set(hash, state, now + KEY_STATE_TTL_MS);
  return state;
}

/** Records use at most once a minute per key, off the request path; a failure is only logged. */
function recordUse(db: Db, apiKeyId: string, now: number, log: FastifyBaseLogger): void {
  if (lastUseRecorded.get(apiKeyId, now)) return;
  lastUseRecorded.set(apiKeyId, true, now + LAST_USED_INTERVAL_MS);
  touchApiKey(db, apiKeyId, new Date(now)).catch((err: unknown) =>
    log.warn({ err, apiKeyId }, 'recording API key use'),
  );
}

/**
 * The key a request presents: `X-API-Key: <key>`, `Authorization: ApiKey <key>`, or
 * `Authorization: Bearer <key>` (then `fromBearer`, since most bearer values are JWTs).
 */
function presentedKey(request: FastifyRequest): { key: string; fromBearer: boolean } | undefined {
  const header = request.headers['x-api-key'];
  if (header !== undefined) return { key: typeof header === 'string' ? header.trim() : '', fromBearer: false };
  const authorization = request.headers.authorization;
  if (!authorization) return undefined;
  const apiKey = /^ApiKey\s+(\S+)\s*$/i.exec(authorization);
  if (apiKey) return { key: apiKey[1] as string, fromBearer: false };
  const bearer = bearerToken(request);
  return bearer === undefined ? undefined : { key: bearer, fromBearer: true };
}

/**
 * Resolves API keys (and PROVISIONING_API_KEY, a platform-wide key for the provisioning API alone:
 * seed 000's services share it, so it carries no scope they do not use) to an actor.
 * Goes first among the resolvers: a bearer value without the key prefix is left to the JWT
 * resolver; any other presented key that is unknown, revoked or expired is refused with 401,
 * never treated as anonymous. Public routes do not consult it: there a key is ignored.
 */
export function createApiKeyResolver(
  db: Db,
  config: Pick<Config, 'provisioningApiKey'>,
  failureLimit?: FailureLimit,
): CredentialResolver {
  const envKey = config.provisioningApiKey;
  // Counted only once the key is known not to work: a working key is never counted nor held back.
  const refuse = async (request: FastifyRequest): Promise<never> => {
    await failureLimit?.(request);
    throw invalidKey();
  };
  return async (request) => {
    const presented = presentedKey(request);
    if (!presented) return undefined;
    const { key, fromBearer } = presented;
    if (envKey !== undefined && secretsEqual(key, envKey)) {
      return ENV_KEY_ACTOR;
    }
    if (!key.startsWith(API_KEY_PREFIX)) {
      if (fromBearer) return undefined;
      return refuse(request);
    }
    const now = Date.now();
    const state = await loadKeyState(db, key, now);
    if (!state?.usable || (state.expiresAtMs !== null && state.expiresAtMs <= now)) return refuse(request);
    if (state.outgrown) throw apiKeyErrors.creatorNoLongerSuperuser();
    recordUse(db, state.apiKeyId, now, request.log);
    const actor: Actor = {
      kind: 'api_key',
      apiKeyId: state.apiKeyId,
      organizationId: state.organizationId,
      scopes: state.scopes,
      ceilingUserId: state.ceilingUserId,
    };
    if (state.ceilingUserId === null) return actor;
    // The creator's cached access (dropped on any change to their roles or grants): a scope whose
    // permissions they have lost since is withheld at once, without a query on a cache hit.
    const creator = accessOf(db, state.ceilingUserId);
    const beyond = scopesBeyond(creator instanceof Promise ? await creator : creator, state.scopes);
    if (beyond.size === 0) return actor;
    return { ...actor, scopes: state.scopes.filter((s) => !beyond.has(s)), withheldScopes: beyond };
  };
}

function invalidKey() {
  return commonErrors.unauthenticated(
    'The API key is unknown, revoked or expired, or its creator is no longer active.',
  );
}
