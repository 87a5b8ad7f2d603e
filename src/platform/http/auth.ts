import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError, commonErrors } from './errors.js';

/** Who is calling. The organization always comes from the credential. */
export type Actor =
  | {
      kind: 'user';
      userId: string;
      organizationId: string;
      organizationCode: string;
      sessionId: string;
      isSuperuser: boolean;
      isStaff: boolean;
    }
  | {
      kind: 'api_key';
      apiKeyId: string;
      /** null for a platform-wide key. */
      organizationId: string | null;
      scopes: string[];
      /**
       * The user whose reach bounds the key (delegation ceiling): its creator, unless a superuser.
       * null: no ceiling (a superuser's key, the operator's: command line, PROVISIONING_API_KEY).
       */
      ceilingUserId: string | null;
      /**
       * Scopes the key carries but may not use now, each with the permissions its creator no longer
       * holds (they are not in `scopes`). Absent when none.
       */
      withheldScopes?: ReadonlyMap<string, readonly string[]>;
    }
  | { kind: 'anonymous' };

export type UserActor = Extract<Actor, { kind: 'user' }>;

/** Resolves a credential to an actor; returns undefined when the scheme is not its own. */
export type CredentialResolver = (request: FastifyRequest) => Promise<Actor | undefined>;

/** The resolvers of each kind of caller, each list tried in order. */
export interface CredentialResolvers {
  /** Tried first (a bearer value may be a key); they resolve `api_key` actors. */
  keys: CredentialResolver[];
  /** They resolve `user` actors: the only ones an `optionalUser` route consults. */
  users: CredentialResolver[];
}

/**
 * What a route needs:
 * - `authenticated`: any signed-in user;
 * - `superuser`: a signed-in superuser only; no role and no API key grants it (for installation-wide
 *   data that belongs to no organization, such as the mail outbox);
 * - `{ permission }` / `{ module }`: a signed-in user holding that permission or module access
 *   (superusers hold all of them);
 * - `{ scope }`: an API key carrying that scope; signed-in users only when they are superusers;
 * - `{ permission, scope }`: either a user with the permission or a key with the scope;
 * - `{ scope, anyUser: true }`: a key with the scope or any signed-in user; the handler decides
 *   which objects each may see (for self-service reads that other services also make).
 */
export type AccessRule =
  | 'public'
  | 'authenticated'
  | 'superuser'
  | { permission: string; scope?: string }
  | { module: string }
  | { scope: string; anyUser?: true };

/** What a user-facing rule asks of a signed-in user. */
export type UserNeed = { permission: string } | { module: string };

declare module 'fastify' {
  interface FastifyRequest {
    actor: Actor;
  }
  interface FastifyContextConfig {
    auth?: AccessRule;
    /**
     * On a public route: act for the signed-in user when the request carries a working user
     * credential (a logout ends that session). API keys and credentials that do not work are
     * ignored, as on any public route.
     */
    optionalUser?: true;
  }
  interface FastifyInstance {
    /** Every route's declared rule, in registration order (what an audit of the API reads). */
    accessRules: GuardedRoute[];
    /** The permission check routes run, for handlers that decide per object. */
    can: PermissionCheck;
  }
}

export interface GuardedRoute {
  method: string;
  url: string;
  rule: AccessRule;
}

/**
 * The permission check in one place, so routes only declare what they need. Answers from memory
 * on the hot path; may query (and then cache) on a miss.
 */
export type PermissionCheck = (actor: UserActor, need: UserNeed) => boolean | Promise<boolean>;

const superuserOnly: PermissionCheck = (actor) => actor.isSuperuser;

const ANONYMOUS: Actor = Object.freeze({ kind: 'anonymous' });

/**
 * Resolves `request.actor` (resolvers tried in order) and enforces each route's declared
 * `config.auth`. Routes without a declaration are public: their actor is anonymous and no credential
 * is read, so a client that sends its key on every call (health checks included) is served like
 * anyone else, and a probe costs no lookup; an `optionalUser` route reads user credentials alone.
 */
export function installAuthentication(
  app: FastifyInstance,
  resolvers: CredentialResolvers,
  can: PermissionCheck = superuserOnly,
): void {
  const all = [...resolvers.keys, ...resolvers.users];
  app.decorateRequest('actor', null as never);
  const guarded: GuardedRoute[] = [];
  app.decorate('accessRules', guarded);
  app.decorate('can', can);
  app.addHook('onRoute', (route) => {
    if (route.method === 'HEAD' || (Array.isArray(route.method) && route.method.includes('HEAD'))) return;
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    for (const method of methods) guarded.push({ method, url: route.url, rule: route.config?.auth ?? 'public' });
  });
  // The rule is enforced here, before the body is read: a caller without the right credential gets
  // 401 or 403, never a verdict on its body, and no body of an unknown caller is parsed.
  app.addHook('onRequest', async (request) => {
    const config = request.routeOptions.config;
    if (!config.auth || config.auth === 'public') {
      request.actor = config.optionalUser ? await resolveActor(request, resolvers.users) : ANONYMOUS;
      return;
    }
    request.actor = await resolveActor(request, all);
    const pending = enforce(request, can);
    if (pending) await pending;
  });
}

async function resolveActor(request: FastifyRequest, resolvers: CredentialResolver[]): Promise<Actor> {
  for (const resolve of resolvers) {
    const actor = await resolve(request);
    if (actor) return actor;
  }
  return ANONYMOUS;
}

/** Throws when the route's rule refuses the actor; a promise only when the answer needs a query. */
function enforce(request: FastifyRequest, can: PermissionCheck): Promise<void> | undefined {
  const rule = request.routeOptions.config.auth;
  if (!rule || rule === 'public') return;
  const actor = request.actor;
  if (actor.kind === 'anonymous') throw commonErrors.unauthenticated();
  if (rule === 'authenticated' || rule === 'superuser') {
    if (actor.kind !== 'user') throw commonErrors.forbidden('This endpoint needs a signed-in user.');
    if (rule === 'superuser' && !actor.isSuperuser) throw commonErrors.forbidden('This endpoint is for superusers.');
    return;
  }
  if (actor.kind === 'api_key') {
    if ('scope' in rule && rule.scope !== undefined) {
      if (actor.scopes.includes(rule.scope)) return;
      const missing = actor.withheldScopes?.get(rule.scope);
      if (missing) throw scopeAboveCreator(rule.scope, missing);
    }
    throw commonErrors.forbidden('This API key lacks the scope this endpoint needs.');
  }
  if (!('permission' in rule) && !('module' in rule)) {
    if (!actor.isSuperuser && !rule.anyUser) throw commonErrors.forbidden();
    return;
  }
  // The rule object itself is the need: nothing is allocated when the answer is cached.
  const allowed = can(actor, rule);
  if (allowed === true) return;
  if (allowed === false) throw commonErrors.forbidden();
  return allowed.then((ok) => {
    if (!ok) throw commonErrors.forbidden();
  });
}

/** A key whose creator no longer holds what its scope needs (delegation ceiling). */
function scopeAboveCreator(scope: string, missing: readonly string[]): AppError {
  const detail = `The key's creator no longer holds ${missing.join(', ')}, which scope "${scope}" needs.`;
  return new AppError(403, 'delegation_ceiling', detail, { errors: [{ field: 'scopes', message: detail }] });
}

/**
 * The organization a caller's reads and writes are confined to: undefined for superusers and
 * platform-wide API keys (every organization), otherwise the caller's own.
 */
export function organizationScopeOf(actor: Actor): string | undefined {
  if (actor.kind === 'user') return actor.isSuperuser ? undefined : actor.organizationId;
  if (actor.kind === 'api_key') return actor.organizationId ?? undefined;
  throw commonErrors.unauthenticated();
}

/** Narrows to a signed-in user or refuses. */
export function requireUser(actor: Actor): UserActor {
  if (actor.kind !== 'user') throw commonErrors.unauthenticated();
  return actor;
}

/** The bearer token of an `Authorization: Bearer …` header, if any. */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (!header) return undefined;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  return match?.[1];
}
