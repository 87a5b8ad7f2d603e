import type { FastifyInstance } from 'fastify';
import { commonErrors } from './errors.js';

const utf8 = new TextDecoder('utf-8', { fatal: true });

function decodeComponent(text: string): string | undefined {
  try {
    // application/x-www-form-urlencoded (WHATWG URL §5.1): `+` is a space, then percent-decoding.
    return decodeURIComponent(text.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

/**
 * The fields of an `application/x-www-form-urlencoded` body, each a string. Stricter than
 * URLSearchParams, which never fails: a broken percent-escape or bytes that are not UTF-8 would
 * reach a password as U+FFFD or as literal text, so they are refused, and so is a field given twice
 * (RFC 6749 §3.2: request parameters "MUST NOT be included more than once"; which one would win
 * is a guess). Keys land as own properties (Object.fromEntries), so `__proto__` is just a field.
 */
function parseFormBody(body: Buffer): Record<string, string> {
  let text: string;
  try {
    text = utf8.decode(body);
  } catch {
    throw commonErrors.validation([{ field: 'body', message: 'The form body is not UTF-8.' }]);
  }
  const fields = new Map<string, string>();
  for (const pair of text.split('&')) {
    if (pair === '') continue;
    const at = pair.indexOf('=');
    const name = decodeComponent(at < 0 ? pair : pair.slice(0, at));
    const value = decodeComponent(at < 0 ? '' : pair.slice(at + 1));
    if (name === undefined || value === undefined) {
      throw commonErrors.validation([
        { field: name ?? 'body', message: 'Not valid percent-encoded UTF-8 (application/x-www-form-urlencoded).' },
      ]);
    }
    if (fields.has(name)) {
      throw commonErrors.validation([{ field: name, message: 'This field is given more than once.' }]);
    }
    fields.set(name, value);
  }
  return Object.fromEntries(fields);
}

/**
 * Lets the routes of `scope` (an encapsulated plugin) take form bodies besides JSON, parsed by
 * parseFormBody and then validated by the route's body schema like JSON. Only for routes that need
 * it: every other route refuses a form body with 415, which the cookie-authenticated routes rely on
 * (a cross-site HTML form can post `application/x-www-form-urlencoded` without a CORS preflight;
 * it cannot post JSON). The route's body limit applies as to JSON.
 */
export function acceptFormBodies(scope: FastifyInstance): void {
  scope.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'buffer' }, (_request, body, done) => {
    try {
      done(null, parseFormBody(body as Buffer));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
}
