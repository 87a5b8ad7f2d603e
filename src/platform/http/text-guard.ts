import type { FastifyInstance } from 'fastify';
import { commonErrors, type FieldError } from './errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The array of the body whose items the route checks itself, so that one bad item fails alone:
     * unstorable text, numbers and nesting (`bodyItemProblem`), `__proto__` keys (json-body.ts,
     * `forbiddenKeyIn`). The rest of the body is refused as a whole, as on any route.
     */
    bodyItems?: (body: unknown) => unknown[] | undefined;
  }
}

/**
 * Objects and arrays nested deeper than this are refused. PostgreSQL's jsonb refuses around two
 * thousand levels (stack depth), as a 500; no field of this API needs more than a handful.
 */
const MAX_DEPTH = 64;

/**
 * Text PostgreSQL cannot store: the NUL character, and half a surrogate pair (JSON's `"\ud800"`),
 * which is no Unicode character (RFC 8259 §8.2), has no UTF-8 form and is refused in jsonb. With
 * the `u` flag a surrogate matches only when it has no pair.
 */
const UNSTORABLE = /[\0\uD800-\uDFFF]/u;

/** What a refusal says of a field holding unstorable text. */
export const UNSTORABLE_TEXT =
  'must not contain the NUL character (U+0000) or half a surrogate pair (\\ud800 to \\udfff).';

/** What a refusal says of a number beyond a double's range. */
const OUT_OF_RANGE = `must be a number between ${-Number.MAX_VALUE} and ${Number.MAX_VALUE}.`;

type Problem = 'text' | 'number' | 'depth';

/**
 * A number JSON.parse could not hold: `1e400` parses as Infinity, which JSON.stringify writes as
 * null, so it would be stored as null (a user type's `maximum`, a profile field) without a word.
 * Infinity and NaN arise from nothing else in a parsed body.
 */
function isUnstorableNumber(value: number): boolean {
  return !Number.isFinite(value);
}

/**
 * The first string or key holding unstorable text, number beyond a double's range (unless
 * `textOnly`) or nesting beyond MAX_DEPTH in `value`, not looking into `skip` (the items a route
 * checks itself): a walk that allocates nothing.
 */
function problemIn(value: unknown, depth: number, textOnly: boolean, skip?: unknown): Problem | undefined {
  if (typeof value === 'string') return UNSTORABLE.test(value) ? 'text' : undefined;
  if (typeof value === 'number') return !textOnly && isUnstorableNumber(value) ? 'number' : undefined;
  if (value === null || typeof value !== 'object' || value === skip) return undefined;
  if (depth >= MAX_DEPTH) return 'depth';
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = problemIn(value[i], depth + 1, textOnly, skip);
      if (problem) return problem;
    }
    return undefined;
  }
  for (const key in value) {
    if (UNSTORABLE.test(key)) return 'text';
    const problem = problemIn((value as Record<string, unknown>)[key], depth + 1, textOnly, skip);
    if (problem) return problem;
  }
  return undefined;
}

/**
 * The dotted path of the first problem (`problemIn`), '' for `value` itself. Paths are built only
 * once a problem is known to be there: a bulk body has thousands of fields.
 */
function problemPath(
  value: unknown,
  path: string,
  depth: number,
  textOnly: boolean,
  skip?: unknown,
): string | undefined {
  if (typeof value === 'string') return UNSTORABLE.test(value) ? path : undefined;
  if (typeof value === 'number') return !textOnly && isUnstorableNumber(value) ? path : undefined;
  if (value === null || typeof value !== 'object' || value === skip) return undefined;
  if (depth >= MAX_DEPTH) return path;
  const at = (key: string) => (path ? `${path}.${key}` : key);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const field = problemPath(value[i], at(String(i)), depth + 1, textOnly, skip);
      if (field !== undefined) return field;
    }
    return undefined;
  }
  for (const key in value) {
    if (UNSTORABLE.test(key)) return at(key);
    const field = problemPath((value as Record<string, unknown>)[key], at(key), depth + 1, textOnly, skip);
    if (field !== undefined) return field;
  }
  return undefined;
}

/** The dotted path of the first string or key holding unstorable text, if any ('' for `value` itself). */
export function unstorableTextField(value: unknown, path = '', depth = 0): string | undefined {
  return problemIn(value, depth, true) === 'text' ? problemPath(value, path, depth, true) : undefined;
}

/**
 * What would refuse a whole body (unstorable text, a number beyond a double's range, nesting beyond
 * MAX_DEPTH) in `item`, a value `depth` levels down in a body (a route's `bodyItems`) or parsed
 * elsewhere (an import file's user, at depth 0), with the field's dotted path in the item ('' for
 * the item itself). A walk bounded by MAX_DEPTH, so it is safe on any parsed value.
 */
export function bodyItemProblem(item: unknown, depth: number): FieldError | undefined {
  const problem = problemIn(item, depth, false);
  if (!problem) return undefined;
  return { field: problemPath(item, '', depth, false) ?? '', message: messageOf(problem) };
}

/**
 * PostgreSQL cannot store the NUL character or half a surrogate pair: a value carrying one
 * (`\u0000` or `\ud800` in JSON, `%00` in a URL) used to fail in the database as a 500. A body's
 * number beyond a double's range (`1e400`) would be stored as null; it is refused alike. Before
 * validation, every request's query, path parameters and body are checked, and such a value is
 * refused as a 400 naming its field (in each plugin's error format, like a schema error). The query
 * and parameters are walked only when the URL holds `%00`: percent-encoding that is not UTF-8 (a
 * surrogate's is not) never decodes, and is refused before (query-string.ts; the router for a
 * path). A body walk costs about 0.2 ms for a thousand-user bulk call. A route whose items fail one
 * by one (seed 000's bulk call, SCIM /Bulk) names them (`bodyItems`) and checks them itself,
 * nesting beyond MAX_DEPTH included; anywhere else such a body is refused as a whole.
 */
export function installTextGuard(app: FastifyInstance): void {
  app.addHook('preValidation', (request, _reply, done) => {
    const inUrl = request.url.includes('%00');
    const field = inUrl
      ? (unstorableTextField(request.query, '', 0) ?? unstorableTextField(request.params, '', 0))
      : undefined;
    if (field !== undefined) return done(refusal(field, 'text'));
    // One walk of the body for every problem; the route checks its items itself.
    const items = request.routeOptions.config.bodyItems?.(request.body);
    const problem = problemIn(request.body, 0, false, items);
    if (problem) return done(refusal(problemPath(request.body, '', 0, false, items) ?? '', problem));
    done();
  });
}

function messageOf(problem: Problem): string {
  if (problem === 'text') return UNSTORABLE_TEXT;
  return problem === 'number' ? OUT_OF_RANGE : `must not nest deeper than ${MAX_DEPTH} levels.`;
}

function refusal(field: string, problem: Problem) {
  return commonErrors.validation([{ field: field || 'body', message: messageOf(problem) }]);
}
