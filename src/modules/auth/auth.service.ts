import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { and, eq, sql } from 'drizzle-orm';
import type { FastifyRequest } from 'fastify';
import { decodeJwt } from 'jose';
import type { Config } from '../../config.js';
import { assertPasswordPolicy } from '../../platform/crypto/password-policy.js';
import { hashPassword, needsRehash, verifyDummyPassword, verifyPassword } from '../../platform/crypto/passwords.js';
import { randomToken, sha256Hex } from '../../platform/crypto/tokens.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { newId } from '../../platform/db/ids.js';
import { isEmailAddress } from '../../platform/email-address.js';
import { type Actor, bearerToken, type CredentialResolver, type UserActor } from '../../platform/http/auth.js';
import { AppError, commonErrors } from '../../platform/http/errors.js';
import { ALL_TOPICS, cachesAreCurrent, onInvalidation, publishInvalidation } from '../../platform/invalidation.js';
import { TtlCache } from '../../platform/ttl-cache.js';
import { recordAudit } from '../activity/audit.js';
import {
  type AccountRef,
  claimLoginAttempts,
  findLockedAccounts,
  isAccountLockedForLogin,
  type LockoutPolicy,
  lockAfterFailedAttempt,
  returnLoginAttempts,
} from '../lockout/lockout.queries.js';
import {
  type CredentialAttempts,
  endMfaChallenges,
  finishMfaChallenge,
  requireSecondFactor,
} from '../mfa/mfa.service.js';
import { organizationErrors } from '../organizations/organizations.errors.js';
import { holdActiveOrganization } from '../organizations/organizations.queries.js';
import { type Organization, organizations } from '../organizations/organizations.table.js';
import { describeUserAgent, noteSessionUse } from '../sessions/sessions.service.js';
import type { SigningKeyStore } from '../signing-keys/signing-keys.service.js';
import { ensureSigningKey } from '../signing-keys/signing-keys.service.js';
import { normalizeUsername } from '../users/users.schemas.js';
import { type User, users } from '../users/users.table.js';
import { authErrors } from './auth.errors.js';
import {
  findLoginCandidates,
  findRefreshToken,
  findSessionState,
  holdLoginAccount,
  insertLoginSession,
  type LoginCandidate,
  revokeSessionById,
  revokeSessionsOfOrganization,
  revokeSessionsOfUser,
  rotateRefreshToken,
  type SessionOwner,
  type SessionStateRow,
} from './auth.queries.js';
import type { LoginInput, TokenUser } from './auth.schemas.js';

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
  /** The user as validate-token shows it; kept here so that answer needs no query. */
  user: TokenUser;
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
/**
 * Bumped by every reset (this node may have missed invalidations): a load that saw it move may have
 * read the state from before a change it will never hear of, so its answer is used once but not cached.
 */
let resets = 0;
onInvalidation(ALL_TOPICS, (event) => {
  if (event !== 'reset') return;
  resets++;
  sessionStates.clear();
});

function toSessionState(row: SessionStateRow, now: number): SessionState {
  return {
    userId: row.userId,
    organizationId: row.organizationId,
    organizationCode: row.organizationCode,
    user: {
      id: row.userId,
      email: row.email,
      username: row.username,
      first_name: row.firstName,
      last_name: row.lastName,
      organization: row.organizationCode,
      organization_id: row.organizationId,
      is_staff: row.isStaff,
      is_superuser: row.isSuperuser,
      status: row.userStatus,
    },
    isStaff: row.isStaff,
    isSuperuser: row.isSuperuser,
    usable:
      row.revokedAt === null && row.expiresAt.getTime() > now && row.userStatus === 'active' && row.organizationActive,
    expiresAtMs: row.expiresAt.getTime(),
  };
}

/**
 * The session's current state, from memory when fresh; undefined for an unknown session. Not from
 * memory, and not kept, while this node may be missing invalidations (`cachesAreCurrent`).
 */
export async function loadSessionState(db: DbOrTx, sessionId: string): Promise<SessionState | undefined> {
  const now = Date.now();
  const cached = cachesAreCurrent() ? sessionStates.get(sessionId, now) : undefined;
  if (cached) return cached.usable && cached.expiresAtMs <= now ? { ...cached, usable: false } : cached;
  const seen = resets;
  const row = await findSessionState(db, sessionId);
  if (!row) return undefined;
  const state = toSessionState(row, now);
  if (seen === resets && cachesAreCurrent() && isCacheable(state, sessionId, Date.now()))
    sessionStates.set(sessionId, state, now + SESSION_STATE_TTL_MS);
  return state;
}

/** The cached state only, for the synchronous fast path; undefined means "ask loadSessionState". */
export function cachedSessionState(sessionId: string): SessionState | undefined {
  return cachesAreCurrent() ? sessionStates.get(sessionId) : undefined;
}

/**
 * Ends every open session of a user (deactivation, suspension, lock, password change, signing out
 * everywhere): their refresh tokens stop at once and their access tokens stop on every node at once.
 * Runs in the caller's transaction when given one; answers how many sessions it ended.
 */
export async function revokeUserSessions(db: DbOrTx, userId: string, reason: string): Promise<number> {
  const ended = await revokeSessionsOfUser(db, userId, reason);
  // A pending mfa_token is a login half done: it would otherwise open a session after an unlock.
  await endMfaChallenges(db, userId);
  await publishInvalidation(db, 'user', userId);
  return ended;
}

/** Ends every open session in an organization (deactivation) and stops its access tokens at once. */
export async function revokeOrganizationSessions(db: DbOrTx, organizationId: string, reason: string): Promise<void> {
  await revokeSessionsOfOrganization(db, organizationId, reason);
  await publishInvalidation(db, 'organization', organizationId);
}

/**
 * Ends one session (logout, refresh-token replay); answers it when this call ended it, undefined when
 * it was already ended or is unknown. The caller records the audit event in the same transaction.
 */
export async function revokeSession(db: DbOrTx, sessionId: string, reason: string): Promise<SessionOwner | undefined> {
  const ended = await revokeSessionById(db, sessionId, reason);
  await publishInvalidation(db, 'session', sessionId);
  return ended;
}

/**
 * Drops cached state derived from a user (status, staff/superuser flags) without ending sessions,
 * for changes that do not revoke but must be seen at once.
 */
export async function invalidateUserState(db: DbOrTx, userId: string): Promise<void> {
  await publishInvalidation(db, 'user', userId);
}

// ---------------------------------------------------------------------------------------------
// Access tokens

/** What the token endpoints and the bearer resolver need. */
export interface TokenContext {
  db: Db;
  keys: SigningKeyStore;
  config: Config;
}

/** Claims Gatehouse puts in an access token (API-CONTRACT §4), as read back after verification. */
export interface AccessClaims {
  sub: string;
  sid: string;
  org_id: string;
  org: string;
  exp: number;
  iat: number;
  jti: string;
}

interface TokenSubject {
  userId: string;
  organizationId: string;
  organizationCode: string;
  sessionId: string;
  isStaff: boolean;
  isSuperuser: boolean;
  /** The `email_verified` claim; left out when the caller does not know it. */
  emailVerified?: boolean;
}

async function issueAccessToken(ctx: TokenContext, subject: TokenSubject): Promise<string> {
  return ctx.keys.sign(
    {
      iss: ctx.config.issuer,
      aud: ctx.config.tokenAudience,
      sub: subject.userId,
      jti: randomUUID(),
      org_id: subject.organizationId,
      org: subject.organizationCode,
      sid: subject.sessionId,
      // Seed 001 clients (djangorestframework-simplejwt) read these two.
      token_type: 'access',
      user_id: subject.userId,
      is_staff: subject.isStaff,
      is_superuser: subject.isSuperuser,
      ...(subject.emailVerified === undefined ? {} : { email_verified: subject.emailVerified }),
    },
    ctx.config.accessTokenTtlSeconds,
  );
}

// Verifying an ES256 signature costs ~100 µs; a token seen again within a minute skips it. The
// revocation check is separate (session state), so a cached verification never outlives a revocation.
const VERIFIED_TOKEN_TTL_MS = 60_000;
const VERIFIED_TOKEN_MAX = 50_000;
// One cache per key store (that is, per app): what verified under one issuer/audience must not be
// taken as verified by another app in the same process.
const verifiedTokenCaches = new WeakMap<SigningKeyStore, TtlCache<string, AccessClaims>>();

function verifiedTokensOf(keys: SigningKeyStore): TtlCache<string, AccessClaims> {
  let cache = verifiedTokenCaches.get(keys);
  if (!cache) {
    cache = new TtlCache<string, AccessClaims>(VERIFIED_TOKEN_MAX);
    verifiedTokenCaches.set(keys, cache);
  }
  return cache;
}
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/;

function toAccessClaims(payload: Record<string, unknown>): AccessClaims | undefined {
  const { sub, sid, org_id, org, exp, iat, jti } = payload;
  if (typeof sub !== 'string' || typeof sid !== 'string' || typeof org_id !== 'string' || typeof org !== 'string') {
    return undefined;
  }
  if (typeof exp !== 'number' || typeof iat !== 'number') return undefined;
  return { sub, sid, org_id, org, exp, iat, jti: typeof jti === 'string' ? jti : '' };
}

/** Checks an access token's signature, issuer, audience and expiry (not revocation); cached briefly. */
export async function verifyAccessToken(ctx: TokenContext, token: string): Promise<AccessClaims | undefined> {
  const now = Date.now();
  const verifiedTokens = verifiedTokensOf(ctx.keys);
  const cached = verifiedTokens.get(token, now);
  if (cached) return cached.exp * 1000 > now ? cached : undefined;
  if (token.length > 4096 || !JWT_SHAPE.test(token)) return undefined;
  const payload = await ctx.keys.verify(token, { issuer: ctx.config.issuer, audience: ctx.config.tokenAudience });
  const claims = payload && toAccessClaims(payload);
  if (!claims) return undefined;
  verifiedTokens.set(token, claims, Math.min(claims.exp * 1000, now + VERIFIED_TOKEN_TTL_MS));
  return claims;
}

/** A verified access token together with its session's current state, or undefined if it no longer works. */
export async function authenticateAccessToken(
  ctx: TokenContext,
  token: string,
): Promise<{ claims: AccessClaims; state: SessionState } | undefined> {
  const claims = await verifyAccessToken(ctx, token);
  if (!claims) return undefined;
  const state = cachedSessionState(claims.sid) ?? (await loadSessionState(ctx.db, claims.sid));
  if (!state?.usable || state.expiresAtMs <= Date.now() || state.userId !== claims.sub) return undefined;
  return { claims, state };
}

/**
 * Resolves `Authorization: Bearer <JWT>` to a user actor. Any token that does not verify, or whose
 * session, user or organization is no longer active, leaves the request anonymous: protected routes
 * then answer 401, public ones serve it as anyone else.
 */
export function createBearerResolver(ctx: TokenContext): CredentialResolver {
  return async (request: FastifyRequest) => {
    const token = bearerToken(request);
    if (!token || !JWT_SHAPE.test(token)) return undefined;
    const found = await authenticateAccessToken(ctx, token);
    if (!found) return undefined;
    await noteSessionUse(ctx.db, found.claims.sid);
    return userActorOf(found);
  };
}

/** The user an authenticated access token stands for. */
export function userActorOf({ claims, state }: NonNullable<Awaited<ReturnType<typeof authenticateAccessToken>>>) {
  const actor: UserActor = {
    kind: 'user',
    userId: claims.sub,
    organizationId: state.organizationId,
    organizationCode: state.organizationCode,
    sessionId: claims.sid,
    // From the session state, not the token: a demotion applies without waiting for expiry.
    isSuperuser: state.isSuperuser,
    isStaff: state.isStaff,
  };
  return actor;
}

/**
 * Names the user of the session an answer's access token opened or renewed (login, refresh) as the
 * request's caller: these public routes read no credential first, and their request activity then
 * records that user as a protected route's would. Read, not verified: the token was issued here.
 */
export function openedFor<T extends { access: string }>(request: FastifyRequest, answer: T): T {
  const claims = decodeJwt(answer.access) as AccessClaims & { is_staff: boolean; is_superuser: boolean };
  request.actor = {
    kind: 'user',
    userId: claims.sub,
    organizationId: claims.org_id,
    organizationCode: claims.org,
    sessionId: claims.sid,
    isSuperuser: claims.is_superuser,
    isStaff: claims.is_staff,
  };
  return answer;
}

// ---------------------------------------------------------------------------------------------
// Login, refresh, logout

// Each candidate costs one argon2 verification; an identifier shared by more accounts than this
// must name its organization rather than make one request burn that many hashes.
const MAX_LOGIN_CANDIDATES = 10;

export interface ClientInfo {
  ip: string | undefined;
  userAgent: string | undefined;
  /** SHA-256 of the cookie credential, for a browser (cookie) login. */
  cookieTokenHash?: string | undefined;
}

/** The lockout thresholds of the configuration. */
export function lockoutPolicy(config: Config): LockoutPolicy {
  return {
    threshold: config.lockoutThreshold,
    windowSeconds: config.lockoutWindowSeconds,
    durationSeconds: config.lockoutDurationSeconds,
  };
}

/** Why an account's credential was not checked: a lock in force, or its window full of checks still running. */
type RefusalReason = 'account_locked' | 'checks_in_flight';

interface ClaimedTurns {
  /** The claimed accounts, each with its attempt number in the window. */
  attempts: Map<string, number>;
  /** The accounts refused unchecked, each with the reason. */
  refused: Map<string, RefusalReason>;
}

// A check in flight ends within the password hash queue's deadline (2 s) plus the hash itself, so
// a turn free before then is taken; past it the caller is refused rather than held indefinitely.
const TURN_WAIT_MS = 5_000;
const TURN_POLL_MS = [10, 25, 50, 100];

/**
 * Claims each account's turn to check a credential (claimLoginAttempts). An account refused only
 * because its window is full of checks still running (none failed enough to lock it) waits for
 * one of them to end: correct logins sent at once must not look like guesses against a lock.
 */
async function claimCheckTurns(db: Db, accounts: AccountRef[], policy: LockoutPolicy): Promise<ClaimedTurns> {
  const attempts = await claimLoginAttempts(db, accounts, policy);
  const refused = new Map<string, RefusalReason>();
  let waiting = accounts.filter((a) => !attempts.has(a.id));
  const deadline = Date.now() + TURN_WAIT_MS;
  for (let round = 0; waiting.length > 0; round++) {
    const locked = await findLockedAccounts(db, waiting);
    for (const a of waiting) if (locked.has(a.id)) refused.set(a.id, 'account_locked');
    waiting = waiting.filter((a) => !locked.has(a.id));
    if (waiting.length === 0) break;
    if (Date.now() >= deadline) {
      for (const a of waiting) refused.set(a.id, 'checks_in_flight');
      break;
    }
    await sleep(TURN_POLL_MS[Math.min(round, TURN_POLL_MS.length - 1)]);
    const claimed = await claimLoginAttempts(db, waiting, policy);
    for (const [id, attempt] of claimed) attempts.set(id, attempt);
    waiting = waiting.filter((a) => !claimed.has(a.id));
  }
  return { attempts, refused };
}

/** A password checked and wrong, with the number of its claimed attempt in the account's window. */
interface FailedAttempt {
  account: LoginCandidate;
  attempt: number;
}

/**
 * Records a login whose password matched no account: each wrong password checked (the attempt that
 * fills the window locks the account and ends its sessions, in the same transaction), each account
 * refused unchecked because it is locked, or, when no account has a password, the unknown identifier.
 */
async function recordFailedLogins(
  ctx: TokenContext,
  failed: FailedAttempt[],
  refused: Array<{ account: LoginCandidate; reason: RefusalReason }>,
  client: ClientInfo,
): Promise<void> {
  const policy = lockoutPolicy(ctx.config);
  await ctx.db.transaction(async (tx) => {
    if (failed.length === 0 && refused.length === 0) {
      await recordAudit(tx, {
        type: 'auth.login_failed',
        category: 'authentication',
        organizationId: null,
        description: 'Failed login: no account matched',
        severity: 'warning',
        success: false,
        ip: client.ip ?? null,
        userAgent: client.userAgent ?? null,
      });
    }
    for (const { account, attempt } of failed) {
      const lockedUntil = attempt >= policy.threshold ? await lockAfterFailedAttempt(tx, account, policy) : undefined;
      await recordLoginFailureAudits(tx, account, lockedUntil, client, 'password');
    }
    for (const { account, reason } of refused) await recordRefusal(tx, account, client, 'password', reason);
  });
}

const REFUSAL_WORDING: Record<RefusalReason, string> = {
  account_locked: 'account locked',
  checks_in_flight: 'too many checks of the account in progress',
};

/**
 * The audit event of a credential check refused unchecked (the account locked, or its window full of
 * checks that did not end in time): it names the account and the reason, although the answer is the
 * same as for a wrong password or an unknown account.
 */
async function recordRefusal(
  tx: DbOrTx,
  account: { id: string; organizationId: string },
  client: ClientInfo,
  step: CredentialCheck,
  reason: RefusalReason,
): Promise<void> {
  const login = step === 'password' || step === 'mfa';
  await recordAudit(tx, {
    type: FAILED_CHECK[step].type,
    category: 'authentication',
    organizationId: account.organizationId,
    userId: account.id,
    actorUserId: account.id,
    description: `${login ? 'Failed login' : 'Credential check refused'}: ${REFUSAL_WORDING[reason]}`,
    severity: 'warning',
    success: false,
    details: { step, reason },
    ip: client.ip ?? null,
    userAgent: client.userAgent ?? null,
  });
}

/**
 * Where a credential was checked and failed: the two login steps, and the checks a signed-in user
 * passes to change a credential (the current password, a code to turn the second factor off).
 */
export type CredentialCheck = 'password' | 'mfa' | 'change_password' | 'disable_mfa' | 'enrol_mfa';

const FAILED_CHECK: Record<CredentialCheck, { type: string; description: string }> = {
  password: { type: 'auth.login_failed', description: 'Failed login: wrong password' },
  mfa: { type: 'auth.login_failed', description: 'Failed login: wrong second-factor code' },
  change_password: {
    type: 'auth.credential_check_failed',
    description: 'Password change refused: wrong current password',
  },
  disable_mfa: {
    type: 'auth.credential_check_failed',
    description: 'Turning the second factor off refused: wrong code',
  },
  enrol_mfa: {
    type: 'auth.credential_check_failed',
    description: 'Second-factor enrolment refused: wrong current password',
  },
};

/** The audit events of a failed credential check (a login step or a signed-in check), and of the lock it caused. */
async function recordLoginFailureAudits(
  tx: DbOrTx,
  account: { id: string; organizationId: string },
  lockedUntil: Date | undefined,
  client: ClientInfo,
  step: CredentialCheck,
): Promise<void> {
  const where = {
    organizationId: account.organizationId,
    userId: account.id,
    ip: client.ip ?? null,
    userAgent: client.userAgent ?? null,
  };
  await recordAudit(tx, {
    ...where,
    // The account tried to prove itself: its user is the actor (a signed-in check's caller is too).
    actorUserId: account.id,
    ...FAILED_CHECK[step],
    category: 'authentication',
    severity: 'warning',
    success: false,
    details: { step },
  });
  if (!lockedUntil) return;
  await revokeUserSessions(tx, account.id, 'account_locked');
  await recordAudit(tx, {
    ...where,
    type: 'auth.lockout',
    category: 'authentication',
    description: 'Account locked after repeated failed logins',
    severity: 'critical',
    success: false,
    details: { locked_until: lockedUntil.toISOString() },
  });
}

/**
 * Counts a failed check of a signed-in user's credential (the current password to change it, a code
 * to turn the second factor off) as a failed login of the account: a stolen access token must not
 * buy unlimited guesses. At the threshold the account locks and its sessions end, the caller's too.
 * Its own transaction: the refused request's rolls back, and the count must stick.
 */
/**
 * A credential check counted against the account's lockout: its turn is claimed before the check,
 * so concurrent guesses cannot outrun the threshold; a failure locks when it fills the window; a
 * locked account is refused unchecked. The login's second step, and a signed-in user's checks.
 */
export function lockoutAttempts(db: Db, config: Config, client: ClientInfo, step: CredentialCheck): CredentialAttempts {
  const policy = lockoutPolicy(config);
  const reasons = new Map<string, RefusalReason>();
  return {
    claim: async (account) => {
      const turns = await claimCheckTurns(db, [account], policy);
      const reason = turns.refused.get(account.id);
      if (reason) reasons.set(account.id, reason);
      return turns.attempts.get(account.id);
    },
    failed: (account, attempt) =>
      db.transaction(async (tx) => {
        const lockedUntil = attempt >= policy.threshold ? await lockAfterFailedAttempt(tx, account, policy) : undefined;
        await recordLoginFailureAudits(tx, account, lockedUntil, client, step);
      }),
    passed: (account) => returnLoginAttempts(db, [account]),
    refused: (account) =>
      db.transaction((tx) => recordRefusal(tx, account, client, step, reasons.get(account.id) ?? 'account_locked')),
  };
}

export interface TokenPair {
  access: string;
  refresh: string;
  token_type: 'Bearer';
  expires_in: number;
}

function toTokenUser(c: LoginCandidate): TokenUser {
  return {
    id: c.id,
    email: c.email,
    username: c.username,
    first_name: c.firstName,
    last_name: c.lastName,
    organization: c.organizationCode,
    organization_id: c.organizationId,
    is_staff: c.isStaff,
    is_superuser: c.isSuperuser,
    status: c.status,
  };
}

function canLogIn(c: LoginCandidate): boolean {
  return c.status === 'active' && c.organizationActive && c.passwordHash !== null;
}

/**
 * After a password matched: replaces a legacy or weaker hash with one at today's argon2id
 * parameters. Conditional on the old hash, so a password changed meanwhile is never overwritten.
 * Answers the hash that stands for the password just checked: the upgrade, or the hash as read.
 */
async function upgradePasswordHash(db: Db, account: LoginCandidate, password: string): Promise<string | null> {
  const current = account.passwordHash;
  if (current === null || !needsRehash(current)) return current;
  const upgraded = await hashPassword(password);
  const [changed] = await db
    .update(users)
    .set({ passwordHash: upgraded })
    .where(and(eq(users.id, account.id), eq(users.passwordHash, current)))
    .returning({ id: users.id });
  return changed ? upgraded : current;
}

function inactiveDetail(status: string, organizationActive: boolean, organizationCode: string): string {
  return organizationActive
    ? `This account is ${status}; it cannot log in.`
    : `Organization "${organizationCode}" is deactivated; its accounts cannot log in.`;
}

/**
 * Opens a session for an account that has proved itself against `verifiedHash`: the session row
 * (with its device), the first refresh token, last_login and the end of any failed-login count,
 * written by one statement; then the access token. Everything the proof rested on was read before
 * (the password check must not hold a transaction), so it is read again under the rows' locks:
 * a password changed meanwhile, or a user gone, answers as a wrong password; a user or
 * organization no longer active, 401 account_inactive; a lock from racing failures, 401 too.
 */
async function openSession(
  ctx: TokenContext,
  account: LoginCandidate,
  client: ClientInfo,
  step: 'password' | 'mfa',
  verifiedHash: string | null,
): Promise<TokenPair & { user: TokenUser }> {
  const refresh = randomToken();
  const sessionId = newId();
  const session = {
    organizationId: account.organizationId,
    userId: account.id,
    sessionId,
    refreshTokenId: newId(),
    refreshTokenHash: sha256Hex(refresh),
    ipAddress: client.ip ?? null,
    userAgent: client.userAgent?.slice(0, 512) ?? null,
    ...describeUserAgent(client.userAgent),
    cookieTokenHash: client.cookieTokenHash ?? null,
    expiresAt: new Date(Date.now() + ctx.config.refreshTokenTtlSeconds * 1000),
  };
  const refusal = await ctx.db.transaction(async (tx): Promise<AppError | undefined> => {
    // The writers' order: the organization (held in share mode, as provisioning does), then the
    // user row, then its lockout row. A password change, deactivation or deletion committed since
    // the candidates were read is seen here; one still to commit waits for this session and ends it.
    const organizationActive = await holdActiveOrganization(tx, account.organizationId);
    const held = await holdLoginAccount(tx, account.id);
    const refused =
      !held || held.organizationId !== account.organizationId || held.passwordHash !== verifiedHash
        ? authErrors.invalidCredentials()
        : held.status !== 'active' || !organizationActive
          ? authErrors.accountInactive(inactiveDetail(held.status, organizationActive, account.organizationCode))
          : undefined;
    if (refused) {
      // The password matched what it was checked against: not a failure to count.
      if (held && step === 'password') await returnLoginAttempts(tx, [account]);
      return refused;
    }
    // The lock read with the candidates is stale by now: failed attempts racing this one may have
    // locked the account while its password was checked. Re-read under the row lock.
    if (await isAccountLockedForLogin(tx, account)) {
      await recordRefusal(tx, account, client, step, 'account_locked');
      return authErrors.invalidCredentials();
    }
    await insertLoginSession(tx, session);
    await recordAudit(tx, {
      type: 'auth.login',
      category: 'authentication',
      organizationId: account.organizationId,
      userId: account.id,
      actorUserId: account.id,
      description: 'Logged in',
      details: { session_id: sessionId, method: client.cookieTokenHash ? 'cookie' : 'token' },
      ip: client.ip ?? null,
      userAgent: client.userAgent ?? null,
    });
    return undefined;
  });
  if (refusal) throw refusal;
  const access = await issueAccessToken(ctx, {
    userId: account.id,
    organizationId: account.organizationId,
    organizationCode: account.organizationCode,
    sessionId,
    isStaff: account.isStaff,
    isSuperuser: account.isSuperuser,
    emailVerified: account.emailVerified,
  });
  return {
    access,
    refresh,
    token_type: 'Bearer',
    expires_in: ctx.config.accessTokenTtlSeconds,
    user: toTokenUser(account),
  };
}

/**
 * Password login (API-CONTRACT §4). Every account the identifier names (in the given organization,
 * or across all) is a candidate; every candidate's password is checked, so time does not depend
 * on which accounts exist or can log in. Then:
 * - exactly one account that can log in matches → it logs in;
 * - several match → 400 organization_required;
 * - none can log in but one whose password matched is suspended/locked/deactivated, or in a
 *   deactivated organization → 401 account_inactive (safe: the caller proved the password);
 * - otherwise → 401 invalid_credentials, the same answer as for an unknown account.
 */
export async function login(
  ctx: TokenContext,
  input: LoginInput,
  client: ClientInfo,
): Promise<TokenPair & { user: TokenUser }> {
  if (input.email === undefined && input.username === undefined) throw authErrors.identifierRequired();
  const candidates = await findLoginCandidates(
    ctx.db,
    { email: input.email, username: input.username },
    input.organization ?? undefined,
    MAX_LOGIN_CANDIDATES + 1,
  );
  if (candidates.length > MAX_LOGIN_CANDIDATES) throw authErrors.organizationRequired();

  const withPassword = candidates.filter((c) => c.passwordHash !== null);
  if (withPassword.length === 0) {
    await verifyDummyPassword(input.password);
    await recordFailedLogins(ctx, [], [], client);
    throw authErrors.invalidCredentials();
  }
  // Each attempt is claimed before its password is checked, so concurrent guesses cannot all pass
  // the lock before any failure is counted. A locked account's password is not checked, but the
  // dummy check takes the same time: the answer neither confirms the account nor the password.
  const { attempts, refused } = await claimCheckTurns(ctx.db, withPassword, lockoutPolicy(ctx.config));
  const verdicts = await Promise.all(
    withPassword.map((c) =>
      attempts.has(c.id)
        ? verifyPassword(c.passwordHash as string, input.password)
        : verifyDummyPassword(input.password),
    ),
  );
  const claimed = withPassword.filter((c) => attempts.has(c.id));
  const matched = withPassword.filter((_, i) => verdicts[i]);
  if (matched.length === 0) {
    await recordFailedLogins(
      ctx,
      claimed.map((account) => ({ account, attempt: attempts.get(account.id) as number })),
      withPassword
        .filter((c) => !attempts.has(c.id))
        .map((account) => ({ account, reason: refused.get(account.id) ?? 'account_locked' })),
      client,
    );
    throw authErrors.invalidCredentials();
  }
  const usable = matched.filter(canLogIn);
  const account = usable.length === 1 ? usable[0] : undefined;
  // A password matched: the attempts of the other accounts named are given back, as is this one's
  // unless it opens a session (which clears the count).
  await returnLoginAttempts(
    ctx.db,
    claimed.filter((c) => c !== account),
  );
  if (usable.length > 1) throw authErrors.organizationRequired();
  if (!account) {
    const inactive = matched[0] as LoginCandidate;
    throw authErrors.accountInactive(
      inactiveDetail(inactive.status, inactive.organizationActive, inactive.organizationCode),
    );
  }
  let verifiedHash: string | null;
  try {
    // Like an inactive account, refused only after the password matched: the caller knows the account.
    if (account.requireEmailVerification && !account.emailVerified) throw authErrors.emailNotVerified();
    verifiedHash = await upgradePasswordHash(ctx.db, account, input.password);
    // Throws MfaRequiredError (the token routes answer it as 200 mfa_required) when a second factor is due.
    await requireSecondFactor(
      ctx.db,
      { ...account, passwordHash: verifiedHash },
      { enabled: account.mfaEnabled, required: account.mfaRequired },
    );
  } catch (err) {
    await returnLoginAttempts(ctx.db, [account]);
    throw err;
  }
  return openSession(ctx, account, client, 'password', verifiedHash);
}

/**
 * The second step of a login with TOTP enabled (POST /api/v1/users/login/mfa/): the single-use
 * mfa_token from the password step and a TOTP or recovery code answer the normal token pair. The
 * account must still be able to log in, with the password the token was issued for (otherwise 401
 * invalid_mfa_token). After an enrolment challenge the code is the new
 * authenticator's first, which turns it on: the answer adds its recovery codes.
 */
export async function completeMfaLogin(
  ctx: TokenContext,
  input: { mfa_token: string; code: string },
  client: ClientInfo,
): Promise<TokenPair & { user: TokenUser; recovery_codes?: string[] }> {
  // A code is a guess like a password: claimed against the account's lockout before it is checked.
  const { userId, passwordHash, recoveryCodes } = await finishMfaChallenge(
    ctx.db,
    ctx.config,
    input,
    lockoutAttempts(ctx.db, ctx.config, client, 'mfa'),
  );
  const [owner] = await ctx.db
    .select({ email: users.email, organizationCode: organizations.code })
    .from(users)
    .innerJoin(organizations, eq(organizations.id, users.organizationId))
    .where(eq(users.id, userId));
  const candidates = owner ? await findLoginCandidates(ctx.db, { email: owner.email }, owner.organizationCode, 2) : [];
  const account = candidates.find((c) => c.id === userId && canLogIn(c));
  if (!account) throw authErrors.invalidCredentials();
  // openSession checks the account again, under its row locks, and clears the count; against the
  // hash the challenge was checked for, so a password changed since refuses the login too.
  const pair = await openSession(ctx, account, client, 'mfa', passwordHash);
  return recoveryCodes ? { ...pair, recovery_codes: recoveryCodes } : pair;
}

/**
 * Trades a refresh token for a new access token and a successor refresh token, in one
 * transaction. A token that was already used means it leaked (or a client raced itself): the
 * whole session is revoked, which also ends the successor issued earlier.
 */
export async function refreshSession(ctx: TokenContext, refresh: string): Promise<TokenPair> {
  const tokenHash = sha256Hex(refresh);
  const next = randomToken();
  const expiresAt = new Date(Date.now() + ctx.config.refreshTokenTtlSeconds * 1000);
  const rotation = await rotateRefreshToken(ctx.db, {
    tokenHash,
    successorId: newId(),
    successorHash: sha256Hex(next),
    expiresAt,
    maxAgeSeconds: ctx.config.sessionMaxAgeSeconds,
  });
  let outcome:
    | { kind: 'rotated'; row: SessionStateRow }
    | { kind: 'replayed'; session: SessionOwner }
    | { kind: 'invalid' };
  if (rotation) outcome = rotation.rotated ? { kind: 'rotated', row: rotation } : { kind: 'invalid' };
  else {
    const known = await findRefreshToken(ctx.db, tokenHash);
    outcome = known?.usedAt ? { kind: 'replayed', session: known } : { kind: 'invalid' };
  }
  if (outcome.kind === 'replayed') {
    // Outside the transaction above: the revocation must stick although the request is refused.
    await revokeReplayedSession(ctx.db, outcome.session);
    throw authErrors.invalidRefreshToken();
  }
  if (outcome.kind === 'invalid') throw authErrors.invalidRefreshToken();
  const { row } = outcome;
  const access = await issueAccessToken(ctx, {
    userId: row.userId,
    organizationId: row.organizationId,
    organizationCode: row.organizationCode,
    sessionId: row.sessionId,
    isStaff: row.isStaff,
    isSuperuser: row.isSuperuser,
    emailVerified: row.emailVerified,
  });
  return { access, refresh: next, token_type: 'Bearer', expires_in: ctx.config.accessTokenTtlSeconds };
}

/**
 * A used refresh token presented again: it leaked, or a client raced itself. The session ends, and a
 * warning names it (never the token) even when the session had already ended: a replay that keeps
 * coming is worth seeing.
 */
async function revokeReplayedSession(db: Db, session: SessionOwner): Promise<void> {
  await db.transaction(async (tx) => {
    const ended = await revokeSession(tx, session.sessionId, 'refresh_token_reuse');
    await recordAudit(tx, {
      type: 'auth.refresh_reuse',
      category: 'authentication',
      organizationId: session.organizationId,
      userId: session.userId,
      actorUserId: null,
      description: ended
        ? 'Used refresh token presented again: session ended'
        : 'Used refresh token presented again for an ended session',
      details: { session_id: session.sessionId, session_revoked: ended !== undefined },
      severity: 'warning',
      success: false,
      objectType: 'session',
      objectId: session.sessionId,
    });
  });
}

/** How a logout named its session: a refresh token in the body, the Bearer token, the session cookie. */
export type LogoutMethod = 'refresh' | 'bearer' | 'cookie';

/**
 * Ends the session a refresh token belongs to and/or the caller's own session, each with an
 * `auth.logout` event in the same transaction. Logging out twice, or with a token that is already
 * used up, is not an error, and records nothing: no session ended.
 */
export async function logout(
  db: Db,
  input: { refresh?: string | undefined; sessionId?: string | undefined; sessionMethod?: 'bearer' | 'cookie' },
): Promise<void> {
  if (input.refresh === undefined && input.sessionId === undefined) throw authErrors.logoutNeedsCredential();
  const sessionIds = new Map<string, LogoutMethod>();
  if (input.sessionId) sessionIds.set(input.sessionId, input.sessionMethod ?? 'bearer');
  if (input.refresh !== undefined) {
    const known = await findRefreshToken(db, sha256Hex(input.refresh));
    if (known && !sessionIds.has(known.sessionId)) sessionIds.set(known.sessionId, 'refresh');
  }
  await db.transaction(async (tx) => {
    for (const [id, method] of sessionIds) {
      const ended = await revokeSession(tx, id, 'logout');
      if (!ended) continue;
      await recordAudit(tx, {
        type: 'auth.logout',
        category: 'authentication',
        organizationId: ended.organizationId,
        userId: ended.userId,
        // Whoever holds the session's refresh token, Bearer token or cookie is taken to be its user.
        actorUserId: ended.userId,
        description: 'Logged out',
        details: { session_id: id, method },
        objectType: 'session',
        objectId: id,
      });
    }
  });
}

/**
 * Signs a user out everywhere: ends every open session of theirs, with one `auth.logout` event naming
 * how many, in the same transaction.
 */
export async function logoutEverywhere(
  db: Db,
  user: { userId: string; organizationId: string },
  method: 'bearer' | 'cookie',
): Promise<void> {
  await db.transaction(async (tx) => {
    const ended = await revokeUserSessions(tx, user.userId, 'logout_all');
    await recordAudit(tx, {
      type: 'auth.logout',
      category: 'authentication',
      organizationId: user.organizationId,
      userId: user.userId,
      actorUserId: user.userId,
      description: 'Logged out everywhere',
      details: { method, all: true, sessions_ended: ended },
      objectType: 'user',
      objectId: user.userId,
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Installation bootstrap and superusers

export const DEFAULT_ORGANIZATION_CODE = 'default';
const BOOTSTRAP_LOCK = 0x6164_6d6e;
export const MIN_PASSWORD_LENGTH = 10;

/** Makes sure the `default` organization exists (where a fresh installation's superuser lives). */
export async function ensureDefaultOrganization(db: DbOrTx): Promise<Organization> {
  await db
    .insert(organizations)
    .values({ code: DEFAULT_ORGANIZATION_CODE, name: 'Default' })
    .onConflictDoNothing({ target: organizations.code });
  const [row] = await db.select().from(organizations).where(eq(organizations.code, DEFAULT_ORGANIZATION_CODE));
  return row as Organization;
}

export interface CreateSuperuserInput {
  email: string;
  password: string;
  username?: string | undefined;
  /** Organization code; `default` when omitted (created if missing). */
  organization?: string | undefined;
}

async function hasSuperuser(db: DbOrTx): Promise<boolean> {
  const [row] = await db.select({ id: users.id }).from(users).where(eq(users.isSuperuser, true)).limit(1);
  return row !== undefined;
}

async function isUsernameTaken(db: DbOrTx, organizationId: string, username: string): Promise<boolean> {
  const [row] = await db
    .select({ id: users.id })
    .from(users)
    .where(and(eq(users.organizationId, organizationId), sql`lower(${users.username}) = lower(${username})`))
    .limit(1);
  return row !== undefined;
}

/** How a superuser came to be, for its `user.created` event. */
interface SuperuserOrigin {
  /** `createsuperuser` or `ADMIN_EMAIL`. */
  source: string;
  description: string;
  /** Omitted: the system (the installation starting). */
  actor?: Actor;
}

async function insertSuperuser(
  db: DbOrTx,
  input: CreateSuperuserInput,
  passwordHash: string,
  usernameIsExplicit: boolean,
  origin: SuperuserOrigin,
  refuseInactive = false,
): Promise<User> {
  const code = input.organization ?? DEFAULT_ORGANIZATION_CODE;
  const org =
    code === DEFAULT_ORGANIZATION_CODE
      ? await ensureDefaultOrganization(db)
      : (await db.select().from(organizations).where(eq(organizations.code, code)))[0];
  if (!org) throw organizationErrors.notFound(code);
  // Its users cannot sign in: a superuser made there on request could not either. (At start-up the
  // superuser of ADMIN_EMAIL is still made, rather than the server refusing to start.)
  if (refuseInactive && !org.isActive) throw organizationErrors.inactive(code);
  const [sameEmail] = await db
    .select({ id: users.id })
    .from(users)
    .where(and(eq(users.organizationId, org.id), sql`lower(${users.email}) collate "C" = lower(${input.email})`))
    .limit(1);
  if (sameEmail)
    throw commonErrors.conflict('email_taken', 'email', `${input.email} already has an account in "${code}".`);
  let username: string | null = input.username === undefined ? null : normalizeUsername(input.username);
  if (username !== null && (await isUsernameTaken(db, org.id, username))) {
    if (usernameIsExplicit)
      throw commonErrors.conflict('username_taken', 'username', `Username "${username}" is taken.`);
    // A derived username is a convenience; without it the account still logs in by email.
    username = null;
  }
  const [row] = await db
    .insert(users)
    .values({
      organizationId: org.id,
      email: input.email.toLowerCase(),
      username,
      passwordHash,
      status: 'active',
      isStaff: true,
      isSuperuser: true,
    })
    .returning();
  const user = row as User;
  await recordAudit(db, {
    type: 'user.created',
    category: 'user_management',
    organizationId: org.id,
    userId: user.id,
    // Null names the system rather than the caller of a request being served.
    ...(origin.actor ? { actor: origin.actor } : { actorUserId: null }),
    description: origin.description,
    details: { email: user.email, username: user.username, is_staff: true, is_superuser: true, source: origin.source },
    // Powers are what an auditor looks for first, as on any user given is_superuser.
    severity: 'warning',
    objectType: 'user',
    objectId: user.id,
  });
  return user;
}

function checkSuperuserInput(input: CreateSuperuserInput): void {
  if (!isEmailAddress(input.email))
    throw commonErrors.validation([{ field: 'email', message: 'Not an email address.' }]);
  // The same policy as self-registration: a superuser's password is the last one to leave weak.
  assertPasswordPolicy(input.password, { email: input.email, username: input.username });
}

/**
 * Creates a platform superuser (also staff, active) and records its `user.created` event made by
 * `actor`; the CLI's `createsuperuser`.
 */
export async function createSuperuser(db: Db, input: CreateSuperuserInput, actor: Actor): Promise<User> {
  checkSuperuserInput(input);
  const passwordHash = await hashPassword(input.password);
  return db.transaction((tx) =>
    insertSuperuser(
      tx,
      { ...input, username: input.username ?? input.email.split('@')[0] },
      passwordHash,
      input.username !== undefined,
      { source: 'createsuperuser', description: 'Superuser created by createsuperuser', actor },
      true,
    ),
  );
}

/**
 * Start-up: the `default` organization, an active signing key, and (when ADMIN_EMAIL and
 * ADMIN_PASSWORD are set and no superuser exists yet) the first superuser. Safe when several
 * nodes start at once (advisory lock); answers the superuser it created, if any.
 */
export async function bootstrapInstallation(db: Db, config: Config): Promise<User | undefined> {
  await ensureDefaultOrganization(db);
  await ensureSigningKey(db, config);
  const { adminEmail, adminPassword } = config;
  if (!adminEmail || !adminPassword || (await hasSuperuser(db))) return undefined;
  const input: CreateSuperuserInput = { email: adminEmail, password: adminPassword };
  checkSuperuserInput(input);
  const passwordHash = await hashPassword(adminPassword);
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${BOOTSTRAP_LOCK})`);
    if (await hasSuperuser(tx)) return undefined;
    return insertSuperuser(tx, { ...input, username: adminEmail.split('@')[0] }, passwordHash, false, {
      source: 'ADMIN_EMAIL',
      description: 'Superuser created at start from ADMIN_EMAIL',
    });
  });
}

/** True for an error the CLI should print as one line rather than a stack. */
export function isUserFacingError(err: unknown): err is AppError {
  return err instanceof AppError;
}
