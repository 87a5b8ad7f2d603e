import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import FindMyWay from 'find-my-way';

type Strategy = FindMyWay.ConstraintStrategy<FindMyWay.HTTPVersion.V1, string>;
/** Constraint values as a route names them, or as they are derived from a request. */
export type Constraints = Record<string, string>;

/** The order methods are listed in an Allow header; others follow alphabetically. */
const ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

const rank = (method: string) => {
  const i = ORDER.indexOf(method);
  return i === -1 ? ORDER.length : i;
};

export interface AllowedMethods {
  /**
   * The methods of every route that matches the path, and whose constraints the request meets:
   * `constraints` as the router derives them from `request`, where given (a route's own values otherwise).
   */
  of(url: string, request?: IncomingMessage, constraints?: Constraints): string[];
  /**
   * The methods of the fixed routes (no parameter, no wildcard) whose pattern is this path; none
   * when no fixed route names it. Such a path belongs to them, whatever parametric route matches it too.
   */
  ofFixedPath(url: string): string[];
  /**
   * Adds a custom constraint strategy to the application's router and to these look-ups, which
   * then take a route's constraints into account. Call before the routes that use it.
   */
  addConstraintStrategy(strategy: Strategy): void;
}

/** One router per question: each the way Fastify's own matches a path (trailing slashes, case, …). */
function pathMatcher(app: FastifyInstance) {
  const config = app.initialConfig;
  const options = config.routerOptions ?? {};
  const router = FindMyWay({
    ignoreTrailingSlash: options.ignoreTrailingSlash ?? config.ignoreTrailingSlash,
    ignoreDuplicateSlashes: options.ignoreDuplicateSlashes ?? config.ignoreDuplicateSlashes,
    maxParamLength: options.maxParamLength ?? config.maxParamLength,
    caseSensitive: options.caseSensitive ?? config.caseSensitive,
    allowUnsafeRegex: options.allowUnsafeRegex ?? config.allowUnsafeRegex,
  });
  const methods = new Set<FindMyWay.HTTPMethod>();
  const strategies: Strategy[] = [];
  const nothing = () => undefined;
  return {
    addConstraintStrategy(strategy: Strategy) {
      strategies.push(strategy);
      router.addConstraintStrategy(strategy);
    },
    add(method: FindMyWay.HTTPMethod, pattern: string, constraints?: Constraints) {
      methods.add(method);
      try {
        router.on(method, pattern, constraints ? { constraints } : {}, nothing);
      } catch {
        // Already entered: Fastify registers a route once per prefix variant.
      }
    },
    methodsOf(url: string, request?: IncomingMessage, given: Constraints = {}): string[] {
      const path = url.split('?')[0] as string;
      const derived = { ...given };
      if (request) for (const s of strategies) derived[s.name] ??= s.deriveConstraint(request, undefined) as string;
      const allowed: string[] = [];
      for (const method of methods) {
        try {
          if (router.find(method, path, derived)) allowed.push(method);
        } catch {
          // A path the router cannot decode matches nothing.
        }
      }
      return allowed.sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
    },
  };
}

const isFixed = (pattern: string) => !pattern.includes(':') && !pattern.includes('*');

/**
 * The methods a concrete path takes, for the Allow header of a 405 (RFC 9110 §15.5.6). Fastify's
 * router answers only "this method on this path", and its `findRoute` matches route patterns, not
 * paths; so every route is also entered, as it is registered, in a second find-my-way router built
 * with the same options (trailing slashes, parameter length, case), which then matches a path the
 * way the real one does; and fixed routes also in a third. Catch-all routes (`*`, such as CORS's
 * OPTIONS route) are left out: they would make every path look known. A route's constraints count
 * (`/api/v1/users/:plural` takes no user id), once their strategy is added through
 * `addConstraintStrategy`. Call before any route is registered.
 */
export function collectAllowedMethods(app: FastifyInstance): AllowedMethods {
  const every = pathMatcher(app);
  const fixed = pathMatcher(app);

  app.addHook('onRoute', (route) => {
    if (route.url === '*' || route.url === '/*') return;
    const constraints = route.constraints as Constraints | undefined;
    for (const method of [route.method].flat() as FindMyWay.HTTPMethod[]) {
      every.add(method, route.url, constraints);
      if (isFixed(route.url)) fixed.add(method, route.url, constraints);
    }
  });

  return {
    of: every.methodsOf,
    ofFixedPath: (url) => fixed.methodsOf(url),
    addConstraintStrategy(strategy) {
      app.addConstraintStrategy(strategy);
      every.addConstraintStrategy(strategy);
      fixed.addConstraintStrategy(strategy);
    },
  };
}
