import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../../config.js';
import { randomToken, secretsEqual, sha256Hex } from '../../platform/crypto/tokens.js';
import type { Db } from '../../platform/db/client.js';
import type { CredentialResolver, UserActor } from '../../platform/http/auth.js';
import { AppError, commonErrors } from '../../platform/http/errors.js';
import { TtlCache } from '../../platform/ttl-cache.js';
import { cachedSessionState, loadSessionState } from '../auth/auth.service.js';
import { noteSessionUse } from '../sessions/sessions.service.js';
import { findSessionIdByCookieHash } from './cookie-auth.queries.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Accept the session cookie on an `optionalUser` route (the cookie logout). */
    cookieSession?: boolean;
  }
}

/** The httpOnly cookie holding the session credential: 256 random bits, stored only as a hash. */
export const SESSION_COOKIE = 'gatehouse_session';
/** Readable by the page's scripts, which echo it in `X-CSRF-Token` (double submit). */
export const CSRF_COOKIE = 'gatehouse_csrf';
export const CSRF_HEADER = 'x-csrf-token';
/**
 * Other names the token is accepted under: Django's (seed 003's clients send it) and Angular's.
 * Any of them proves the same thing: the sender could read the CSRF cookie of this origin.
 */
const CSRF_HEADER_ALIASES = ['x-csrftoken', 'x-xsrf-token'];

const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);
const MAX_COOKIE_LENGTH = 128;

export const cookieErrors = {
  csrfFailed: () =>
    new AppError(
      403,
      'csrf_failed',
      'A request authenticated by the session cookie that changes state needs the CSRF token in the X-CSRF-Token header.',
    ),
  /** Only a working session names whose sessions to end; without one, signing out everywhere did nothing. */
  logoutAllNeedsSession: () =>
    commonErrors.validation([
      { field: 'all', message: 'Ending every session needs a working session cookie or Bearer token.' },
    ]),
};

/** A fresh cookie credential and what the session row stores of it. */
export function newCookieCredential(): { token: string; hash: string } {
  const token = randomToken();
  return { token, hash: sha256Hex(token) };
}

/**
 * The CSRF token of a cookie session, derived from its credential: stateless, different per
 * session, and useless without the cookie (a page on another origin can read neither).
 */
export function csrfTokenFor(cookieToken: string): string {
  return Buffer.from(sha256Hex(`csrf:${cookieToken}`), 'hex').toString('base64url');
}

function cookieOptions(config: Config, maxAgeSeconds: number, httpOnly: boolean) {
  return {
    path: '/',
    httpOnly,
    sameSite: 'lax' as const,
    secure: config.publicUrl.startsWith('https:'),
    maxAge: maxAgeSeconds,
  };
}

/** Sets the session and CSRF cookies of a new cookie session. */
export function setSessionCookies(reply: FastifyReply, config: Config, cookieToken: string): void {
  const ttl = config.refreshTokenTtlSeconds;
  reply.setCookie(SESSION_COOKIE, cookieToken, cookieOptions(config, ttl, true));
  reply.setCookie(CSRF_COOKIE, csrfTokenFor(cookieToken), cookieOptions(config, ttl, false));
}

export function clearSessionCookies(reply: FastifyReply, config: Config): void {
  reply.clearCookie(SESSION_COOKIE, cookieOptions(config, 0, true));
  reply.clearCookie(CSRF_COOKIE, cookieOptions(config, 0, false));
}

function cookiesOf(request: FastifyRequest): Record<string, string | undefined> {
  return request.cookies ?? (request.headers.cookie ? request.server.parseCookie(request.headers.cookie) : {});
}

/** The session cookie of a request, if it has a plausible one. */
export function sessionCookieOf(request: FastifyRequest): string | undefined {
  const token = cookiesOf(request)[SESSION_COOKIE];
  return token && token.length <= MAX_COOKIE_LENGTH ? token : undefined;
}

/**
 * Reads authenticated by the session cookie whose CSRF cookie was missing or not the session's: the
 * answer sets it again. Without it the page could read the session but never write or sign out
 * (a cleared or expired cookie, a browser that kept one cookie and not the other). Sending it to
 * whoever holds the session cookie gives nothing away: a page of another origin cannot read it.
 */
const lostCsrfCookies = new WeakMap<FastifyRequest, string>();

/** Sets the CSRF cookie again on the answers the cookie resolver marked (see `lostCsrfCookies`). */
export function installCsrfCookieRenewal(app: FastifyInstance, config: Config): void {
  app.addHook('onSend', (request, reply, payload, done) => {
    const csrf = lostCsrfCookies.get(request);
    if (csrf !== undefined)
      reply.setCookie(CSRF_COOKIE, csrf, cookieOptions(config, config.refreshTokenTtlSeconds, false));
    done(null, payload);
  });
}

// A cookie never moves to another session, so its session id can be kept; whether that session
// still works is read from the session state (revocations drop it at once on every node).
const COOKIE_SESSION_TTL_MS = 5 * 60_000;
const cookieSessions = new TtlCache<string, string>(100_000);

/** The open session a cookie credential belongs to, or undefined. */
export async function sessionIdOfCookie(db: Db, cookieToken: string): Promise<string | undefined> {
  const hash = sha256Hex(cookieToken);
  const cached = cookieSessions.get(hash);
  if (cached) return cached;
  const id = await findSessionIdByCookieHash(db, hash);
  if (id) cookieSessions.set(hash, id, Date.now() + COOKIE_SESSION_TTL_MS);
  return id;
}

/**
 * Resolves the session cookie to a user actor, after the bearer resolver, and only for requests
 * without an Authorization header. Only on routes that need a user (or opt in with
 * `cookieSession`), so a stale cookie never gets in the way of a public route. A state-changing
 * request authenticated this way must carry the session's CSRF token, else 403 `csrf_failed`.
 */
export function createCookieResolver(db: Db): CredentialResolver {
  return async (request) => {
    const config = request.routeOptions.config;
    if ((!config.auth || config.auth === 'public') && config.cookieSession !== true) return undefined;
    // A request that presents a token is answered for that token: one that does not work is a 401,
    // never quietly the cookie's user instead (who may be someone else).
    if (request.headers.authorization !== undefined) return undefined;
    const token = sessionCookieOf(request);
    if (!token) return undefined;
    const sessionId = await sessionIdOfCookie(db, token);
    if (!sessionId) return undefined;
    const state = cachedSessionState(sessionId) ?? (await loadSessionState(db, sessionId));
    const now = Date.now();
    if (!state?.usable || state.expiresAtMs <= now) return undefined;
    const csrf = csrfTokenFor(token);
    if (UNSAFE_METHODS.has(request.method)) {
      const sent = [CSRF_HEADER, ...CSRF_HEADER_ALIASES].map((h) => request.headers[h]).find((v) => v !== undefined);
      if (typeof sent !== 'string' || !secretsEqual(sent, csrf)) throw cookieErrors.csrfFailed();
    } else if (cookiesOf(request)[CSRF_COOKIE] !== csrf) lostCsrfCookies.set(request, csrf);
    await noteSessionUse(db, sessionId, now);
    const actor: UserActor = {
      kind: 'user',
      userId: state.userId,
      organizationId: state.organizationId,
      organizationCode: state.organizationCode,
      sessionId,
      isSuperuser: state.isSuperuser,
      isStaff: state.isStaff,
    };
    return actor;
  };
}
