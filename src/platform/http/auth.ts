import type { FastifyInstance, FastifyRequest } from 'fastify';
import { commonErrors } from './errors.js';

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
    }
  | { kind: 'anonymous' };

export type UserActor = Extract<Actor, { kind: 'user' }>;

/** Resolves a credential to an actor; returns undefined when the scheme is not its own. */
export type CredentialResolver = (request: FastifyRequest) => Promise<Actor | undefined>;

declare module 'fastify' {
  interface FastifyRequest {
    actor: Actor;
  }
  interface FastifyContextConfig {
    /**
     * What the route needs. `authenticated`: any signed-in user. A permission code such as
     * `users.update`: checked against the actor's permissions (superusers hold every permission).
     */
    auth?: 'public' | 'authenticated' | { permission: string };
  }
}

/** The permission check in one place, so the RBAC module can widen it without touching routes. */
export type PermissionCheck = (actor: Actor, permission: string) => boolean;

const superuserOnly: PermissionCheck = (actor) => actor.kind === 'user' && actor.isSuperuser;

/**
 * Resolves `request.actor` for every request (resolvers tried in order) and enforces each route's
 * declared `config.auth`. Routes without a declaration are public.
 */
export function installAuthentication(
  app: FastifyInstance,
  resolvers: CredentialResolver[],
  can: PermissionCheck = superuserOnly,
): void {
  app.decorateRequest('actor', null as never);
  app.addHook('onRequest', async (request) => {
    for (const resolve of resolvers) {
      const actor = await resolve(request);
      if (actor) {
        request.actor = actor;
        return;
      }
    }
    request.actor = { kind: 'anonymous' };
  });
  app.addHook('preValidation', async (request) => {
    const rule = request.routeOptions.config.auth;
    if (!rule || rule === 'public') return;
    const actor = request.actor;
    if (actor.kind === 'anonymous') throw commonErrors.unauthenticated();
    if (rule === 'authenticated') {
      if (actor.kind !== 'user') throw commonErrors.forbidden('This endpoint needs a signed-in user.');
      return;
    }
    if (!can(actor, rule.permission)) throw commonErrors.forbidden();
  });
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
