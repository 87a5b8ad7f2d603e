import type { FastifyInstance } from 'fastify';
import { commonErrors } from './errors.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route checks each item of its body itself, so that one bad item fails alone. */
    nulCheckedPerItem?: boolean;
  }
}

const MAX_DEPTH = 64;

/** Whether a string or key anywhere in `value` holds a NUL character: a walk that allocates nothing. */
function holdsNul(value: unknown, depth: number): boolean {
  if (typeof value === 'string') return value.includes('\0');
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (holdsNul(value[i], depth + 1)) return true;
    return false;
  }
  for (const key in value) {
    if (key.includes('\0') || holdsNul((value as Record<string, unknown>)[key], depth + 1)) return true;
  }
  return false;
}

/**
 * The dotted path of the first string or key holding a NUL character, if any ('' for `value` itself).
 * Paths are built only once a NUL is known to be there: a bulk body has thousands of fields.
 */
export function nulField(value: unknown, path = '', depth = 0): string | undefined {
  return holdsNul(value, depth) ? nulPath(value, path, depth) : undefined;
}

function nulPath(value: unknown, path: string, depth: number): string | undefined {
  if (typeof value === 'string') return value.includes('\0') ? path : undefined;
  if (value === null || typeof value !== 'object' || depth > MAX_DEPTH) return undefined;
  const at = (key: string) => (path ? `${path}.${key}` : key);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const field = nulPath(value[i], at(String(i)), depth + 1);
      if (field !== undefined) return field;
    }
    return undefined;
  }
  for (const key in value) {
    if (key.includes('\0')) return at(key);
    const field = nulPath((value as Record<string, unknown>)[key], at(key), depth + 1);
    if (field !== undefined) return field;
  }
  return undefined;
}

/**
 * PostgreSQL text cannot hold the NUL character: a value carrying one (`\u0000` in JSON, `%00` in
 * a URL) used to fail in the database as a 500. Before validation, every request's query, path
 * parameters and body are checked, and such a value is refused as a 400 naming its field (in each
 * plugin's error format, like a schema error). The query and parameters are walked only when the
 * URL holds `%00`; a body walk costs about 0.3 ms for a thousand-user bulk call. A route whose items
 * fail one by one (seed 000's bulk call) checks them itself (`nulCheckedPerItem`).
 */
export function installNulGuard(app: FastifyInstance): void {
  app.addHook('preValidation', (request, _reply, done) => {
    const inUrl = request.url.includes('%00');
    const field =
      (inUrl ? (nulField(request.query, '', 0) ?? nulField(request.params, '', 0)) : undefined) ??
      (request.routeOptions.config.nulCheckedPerItem ? undefined : nulField(request.body, '', 0));
    if (field === undefined) return done();
    done(
      commonErrors.validation([{ field: field || 'body', message: 'must not contain the NUL character (U+0000).' }]),
    );
  });
}
