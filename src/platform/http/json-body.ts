import { isUtf8 } from 'node:buffer';
import type { FastifyBodyParser, FastifyInstance } from 'fastify';
import { commonErrors, type FieldError } from './errors.js';

type Poisoning = 'error' | 'ignore' | 'remove';

/** Says "JSON" as the malformed-body refusal does (SCIM reads that as invalidSyntax). */
const NOT_UTF8 = 'The body is not valid JSON: it holds bytes that are not UTF-8.';

interface Checks {
  proto: boolean;
  constructor: boolean;
}

/**
 * Where the first key the prototype-poisoning guard refuses sits in a parsed body (`__proto__`, or
 * `constructor` holding an object with `prototype`), as a dotted field path; undefined when none
 * does. `skip` (a route's `bodyItems`) is not looked into. Iterative, so a deeply nested body
 * cannot exhaust the stack.
 */
function findForbiddenKey(
  value: unknown,
  checks: Checks,
  skip?: unknown,
): { field: string; key: '__proto__' | 'constructor' } | undefined {
  const pending: { node: unknown; path: string[] }[] = [{ node: value, path: [] }];
  for (let next = pending.pop(); next !== undefined; next = pending.pop()) {
    const { node, path } = next;
    if (typeof node !== 'object' || node === null || node === skip) continue;
    const own = (key: string) => Object.hasOwn(node, key);
    if (checks.proto && own('__proto__')) return { field: [...path, '__proto__'].join('.'), key: '__proto__' };
    if (checks.constructor && own('constructor')) {
      const held = (node as Record<string, unknown>).constructor;
      if (typeof held === 'object' && held !== null && Object.hasOwn(held, 'prototype')) {
        return { field: [...path, 'constructor'].join('.'), key: 'constructor' };
      }
    }
    // Only objects can hold keys: a bulk body's thousands of strings are passed over.
    for (const [key, child] of Object.entries(node)) {
      if (typeof child === 'object' && child !== null) pending.push({ node: child, path: [...path, key] });
    }
  }
  return undefined;
}

/**
 * Fastify's JSON parser, except that:
 * - bytes that are not UTF-8 refuse the body: JSON text is UTF-8 (RFC 8259 §8.1), and decoding
 *   them as U+FFFD made different keycloak ids one user and different passwords one password;
 * - a body with no JSON in it (no bytes, or only whitespace) is no body: generic HTTP clients set
 *   `Content-Type: application/json` for a whole session, so a DELETE or a bodiless POST arrives
 *   with the header and nothing after it. Such a request reaches the route as one without a body;
 *   a route whose schema requires a body refuses it there, naming the body.
 * Register it with `parseAs: 'buffer'`.
 */
export function jsonBodyParser(
  app: FastifyInstance,
  onProtoPoisoning: Poisoning = 'error',
  onConstructorPoisoning: Poisoning = 'error',
): FastifyBodyParser<Buffer> {
  const parse = app.getDefaultJsonParser(onProtoPoisoning, onConstructorPoisoning);
  // JSON.parse makes `__proto__` an own property like any other, which is harmless until an object
  // holding it is merged into another; a route with `bodyItems` refuses such an item before that.
  const parseKeepingKeys = app.getDefaultJsonParser('ignore', 'ignore');
  const checks = { proto: onProtoPoisoning === 'error', constructor: onConstructorPoisoning === 'error' };
  return (request, bytes, done) => {
    if (!isUtf8(bytes)) {
      done(commonErrors.validation([{ field: 'body', message: NOT_UTF8 }]), undefined);
      return;
    }
    const body = bytes.toString('utf8');
    if (body.trim() === '') {
      done(null, undefined);
      return;
    }
    const bodyItems = request.routeOptions.config.bodyItems;
    if (bodyItems) {
      parseKeepingKeys(request, body, (err, parsed) => {
        if (err) return done(err, undefined);
        const found = findForbiddenKey(parsed, checks, bodyItems(parsed));
        done(found ? forbiddenKeyRefusal(found) : null, found ? undefined : parsed);
      });
      return;
    }
    parse(request, body, (err, parsed) => {
      if (err) {
        done(forbiddenKeyError(body, checks) ?? err, undefined);
        return;
      }
      done(null, parsed);
    });
  };
}

/**
 * For a route's `bodyItems`: the first key in `item` that its content type's parser refuses in
 * other bodies (`checks`: `__proto__`; `constructor` holding `prototype` where that is refused),
 * named by its dotted path in the item. Check before anything copies the item's fields.
 */
export function forbiddenKeyIn(item: unknown, checks: Checks): FieldError | undefined {
  const found = findForbiddenKey(item, checks);
  return found && { field: found.field, message: forbiddenKeyMessage(found.key) };
}

/**
 * The guard refuses valid JSON too: a refusal that says "not valid JSON" sends the client looking
 * for a syntax error that is not there. When the text parses, the refusal names the key instead.
 */
function forbiddenKeyError(body: string, checks: Checks) {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return undefined;
  }
  const found = findForbiddenKey(parsed, checks);
  return found && forbiddenKeyRefusal(found);
}

function forbiddenKeyMessage(key: '__proto__' | 'constructor'): string {
  return key === '__proto__'
    ? 'Keys named "__proto__" are not accepted.'
    : 'A key named "constructor" holding an object with "prototype" is not accepted.';
}

function forbiddenKeyRefusal(found: { field: string; key: '__proto__' | 'constructor' }) {
  return commonErrors.validation([{ field: found.field, message: forbiddenKeyMessage(found.key) }]);
}

/** Every route takes `application/json` through jsonBodyParser; the route's body limit applies. */
export function installJsonBodies(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'buffer' }, jsonBodyParser(app));
}
