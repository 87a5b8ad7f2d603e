import type { DbOrTx } from '../../platform/db/client.js';
import { ALL_TOPICS, onInvalidation, publishInvalidation } from '../../platform/invalidation.js';
import { TtlCache } from '../../platform/ttl-cache.js';
import {
  findSessionState,
  revokeSessionById,
  revokeSessionsOfOrganization,
  revokeSessionsOfUser,
  type SessionStateRow,
} from './auth.queries.js';

// ---------------------------------------------------------------------------------------------
// Session state cache: the per-request revocation check without a query. Entries live 30 s and
// are dropped at once when a session, user or organization is invalidated (in-process, and on
// other nodes through the invalidation bus).

const SESSION_STATE_TTL_MS = 30_000;
const SESSION_STATE_MAX = 100_000;
// After an invalidation, state is read from the database, never cached, for this long: a request
// racing the revoking transaction could otherwise cache the pre-commit state for a full TTL.
const NO_CACHE_AFTER_INVALIDATION_MS = 5_000;

export interface SessionState {
  userId: string;
  organizationId: string;
  organizationCode: string;
  isStaff: boolean;
  isSuperuser: boolean;
  /** Session open and unexpired, user active, organization active. */
  usable: boolean;
  expiresAtMs: number;
}

const sessionStates = new TtlCache<string, SessionState>(SESSION_STATE_MAX);
const noCacheUntil = new Map<string, number>();

function markInvalidated(topic: string, id: string): void {
  const now = Date.now();
  noCacheUntil.set(`${topic}:${id}`, now + NO_CACHE_AFTER_INVALIDATION_MS);
  // Keep the tombstone map small: expired marks go whenever a new one is set.
  if (noCacheUntil.size > 1_000) for (const [k, until] of noCacheUntil) if (until <= now) noCacheUntil.delete(k);
}

function isCacheable(state: SessionState, sessionId: string, now: number): boolean {
  for (const key of [`session:${sessionId}`, `user:${state.userId}`, `organization:${state.organizationId}`]) {
    const until = noCacheUntil.get(key);
    if (until !== undefined && until > now) return false;
  }
  return true;
}

onInvalidation('session', (id) => {
  markInvalidated('session', id);
  sessionStates.delete(id);
});
onInvalidation('user', (id) => {
  markInvalidated('user', id);
  sessionStates.deleteWhere((s) => s.userId === id);
});
onInvalidation('organization', (id) => {
  markInvalidated('organization', id);
  sessionStates.deleteWhere((s) => s.organizationId === id);
});
onInvalidation(ALL_TOPICS, (event) => {
  if (event === 'reset') sessionStates.clear();
});

function toSessionState(row: SessionStateRow, now: number): SessionState {
  return {
    userId: row.userId,
    organizationId: row.organizationId,
    organizationCode: row.organizationCode,
    isStaff: row.isStaff,
    isSuperuser: row.isSuperuser,
    usable:
      row.revokedAt === null && row.expiresAt.getTime() > now && row.userStatus === 'active' && row.organizationActive,
    expiresAtMs: row.expiresAt.getTime(),
  };
}

/** The session's current state, from memory when fresh; undefined for an unknown session. */
export async function loadSessionState(db: DbOrTx, sessionId: string): Promise<SessionState | undefined> {
  const now = Date.now();
  const cached = sessionStates.get(sessionId, now);
  if (cached) return cached.usable && cached.expiresAtMs <= now ? { ...cached, usable: false } : cached;
  const row = await findSessionState(db, sessionId);
  if (!row) return undefined;
  const state = toSessionState(row, now);
  if (isCacheable(state, sessionId, Date.now())) sessionStates.set(sessionId, state, now + SESSION_STATE_TTL_MS);
  return state;
}

/** The cached state only, for the synchronous fast path; undefined means "ask loadSessionState". */
export function cachedSessionState(sessionId: string): SessionState | undefined {
  return sessionStates.get(sessionId);
}

/**
 * Ends every open session of a user (deactivation, suspension, password change): their refresh
 * tokens stop at once and their access tokens stop on every node at once. Runs in the caller's
 * transaction when given one.
 */
export async function revokeUserSessions(db: DbOrTx, userId: string, reason: string): Promise<void> {
  await revokeSessionsOfUser(db, userId, reason);
  await publishInvalidation(db, 'user', userId);
}

/** Ends every open session in an organization (deactivation) and stops its access tokens at once. */
export async function revokeOrganizationSessions(db: DbOrTx, organizationId: string, reason: string): Promise<void> {
  await revokeSessionsOfOrganization(db, organizationId, reason);
  await publishInvalidation(db, 'organization', organizationId);
}

/** Ends one session (logout, refresh-token replay). */
export async function revokeSession(db: DbOrTx, sessionId: string, reason: string): Promise<void> {
  await revokeSessionById(db, sessionId, reason);
  await publishInvalidation(db, 'session', sessionId);
}

/**
 * Drops cached state derived from a user (status, staff/superuser flags) without ending sessions,
 * for changes that do not revoke but must be seen at once.
 */
export async function invalidateUserState(db: DbOrTx, userId: string): Promise<void> {
  await publishInvalidation(db, 'user', userId);
}
