import type { FastifyInstance } from 'fastify';
import FindMyWay from 'find-my-way';

/** The order methods are listed in an Allow header; others follow alphabetically. */
const ORDER = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];

const rank = (method: string) => {
  const i = ORDER.indexOf(method);
  return i === -1 ? ORDER.length : i;
};

export interface AllowedMethods {
  /** The methods of every route that matches the path. */
  of(url: string): string[];
  /**
   * The methods of the fixed routes (no parameter, no wildcard) whose pattern is this path; none
   * when no fixed route names it. Such a path belongs to them, whatever parametric route matches it too.
   */
  ofFixedPath(url: string): string[];
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
  const nothing = () => undefined;
  return {
    add(method: FindMyWay.HTTPMethod, pattern: string) {
      methods.add(method);
      try {
        router.on(method, pattern, nothing);
      } catch {
        // Already entered: Fastify registers a route once per prefix variant.
      }
    },
    methodsOf(url: string): string[] {
      const path = url.split('?')[0] as string;
      const allowed: string[] = [];
      for (const method of methods) {
        try {
          if (router.find(method, path)) allowed.push(method);
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
 * OPTIONS route) are left out: they would make every path look known. Call before any route is
 * registered.
 */
export function collectAllowedMethods(app: FastifyInstance): AllowedMethods {
  const every = pathMatcher(app);
  const fixed = pathMatcher(app);

  app.addHook('onRoute', (route) => {
    if (route.url === '*' || route.url === '/*') return;
    for (const method of [route.method].flat() as FindMyWay.HTTPMethod[]) {
      every.add(method, route.url);
      if (isFixed(route.url)) fixed.add(method, route.url);
    }
  });

  return { of: every.methodsOf, ofFixedPath: fixed.methodsOf };
}
