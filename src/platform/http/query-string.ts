import type { FastifyInstance } from 'fastify';
import { commonErrors } from './errors.js';

type Query = Record<string, string | string[]>;

/** What a refusal says of a parameter that does not decode; the form body's refusal says the same. */
const NOT_DECODABLE = 'Not valid percent-encoded UTF-8.';

/**
 * The first parameter of a parsed query that did not decode (its name, or its name as written when
 * the name itself does not decode). The router parses the query and cannot refuse it: the refusal
 * is made by the hook of installQueryStringCheck, which finds it here.
 */
const undecodable = new WeakMap<Query, string>();

function decodeComponent(text: string): string | undefined {
  // application/x-www-form-urlencoded (WHATWG URL §5.1): `+` is a space, then percent-decoding.
  const spaced = text.includes('+') ? text.replaceAll('+', ' ') : text;
  if (!spaced.includes('%')) return spaced;
  try {
    return decodeURIComponent(spaced);
  } catch {
    return undefined;
  }
}

/**
 * The router's query string parser: Fastify's own (fast-querystring) keeps a value whose
 * percent-encoding does not decode (`%ED%A0%80`, half a surrogate pair, or `%FF`) as its raw text,
 * which a route would then take at its word ("Organization %ED%A0%80 was not found."). Such a
 * parameter is noted for installQueryStringCheck to refuse, as the same bytes are refused in a path
 * (`bad_url`) and in a form body. Otherwise as Fastify's: a parameter given twice is an array, one
 * without `=` is the empty string, and the object has no prototype.
 */
export function parseQueryString(text: string): Query {
  const query: Query = Object.create(null);
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    const at = pair.indexOf('=');
    const written = at < 0 ? pair : pair.slice(0, at);
    const name = decodeComponent(written);
    const value = decodeComponent(at < 0 ? '' : pair.slice(at + 1));
    if (name === undefined || value === undefined) {
      if (!undecodable.has(query)) undecodable.set(query, name ?? written);
      continue;
    }
    const held = query[name];
    if (held === undefined) query[name] = value;
    else if (Array.isArray(held)) held.push(value);
    else query[name] = [held, value];
  }
  return query;
}

/**
 * Refuses a request whose query string held a parameter that does not decode (parseQueryString)
 * with 400 naming it, in each plugin's error format. Install before authentication, so that it is
 * refused whoever asks, as a path that does not decode is refused by the router.
 */
export function installQueryStringCheck(app: FastifyInstance): void {
  app.addHook('onRequest', (request, _reply, done) => {
    const field = undecodable.get(request.query as Query);
    done(field === undefined ? undefined : commonErrors.validation([{ field, message: NOT_DECODABLE }]));
  });
}
