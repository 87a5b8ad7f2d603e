import { REDACTED, withoutSecrets } from '../../platform/secret-text.js';

/**
 * Services echo what they were sent: an error text naming the key it was given, a token endpoint
 * quoting the client secret or the Authorization header. Whatever of an outside answer is stored,
 * logged or shown has the secrets of the call cut out first, in whatever encoding they come back.
 */

/**
 * Secrets shorter than this are not looked for: one to three characters would blank out parts of
 * ordinary words, and protect nothing worth a secret's name anyway.
 */
const MIN_SECRET_LENGTH = 4;

/** The secret values among `values`, long enough to look for, longest first (a Basic header before its pair). */
export function secretValues(values: Iterable<string | null | undefined>): string[] {
  const out = new Set<string>();
  for (const value of values) if (typeof value === 'string' && value.length >= MIN_SECRET_LENGTH) out.add(value);
  return [...out].sort((a, b) => b.length - a.length);
}

/** A parsed JSON value with the secrets cut from its strings (names too) and numbers; `changed` when any was. */
function scrubbedValue(value: unknown, secrets: readonly string[]): { value: unknown; changed: boolean } {
  if (typeof value === 'string') {
    const scrubbed = withoutSecrets(value, secrets);
    return { value: scrubbed, changed: scrubbed !== value };
  }
  if (typeof value === 'number') {
    // A numeric secret echoed as a JSON number.
    const text = String(value);
    return withoutSecrets(text, secrets) === text ? { value, changed: false } : { value: REDACTED, changed: true };
  }
  if (Array.isArray(value)) {
    let changed = false;
    const items = value.map((item) => {
      const one = scrubbedValue(item, secrets);
      changed ||= one.changed;
      return one.value;
    });
    return { value: items, changed };
  }
  if (value !== null && typeof value === 'object') {
    let changed = false;
    const entries = Object.entries(value).map(([name, item]) => {
      const key = withoutSecrets(name, secrets);
      const one = scrubbedValue(item, secrets);
      changed ||= one.changed || key !== name;
      return [key, one.value] as const;
    });
    return { value: Object.fromEntries(entries), changed };
  }
  return { value, changed: false };
}

/** A form-encoded body, as told apart from free text. */
export const FORM_BODY = /^[\w.%+-]+=[^\s]*(&[\w.%+-]+=[^\s]*)*$/;

/**
 * A body with the secrets cut out after decoding: a JSON body is scrubbed on its parsed strings
 * (an escape like \u0026 or \/ hides nothing) and written out again, a form body on its decoded
 * fields; any other text on its text forms. A body holding no secret is returned as it came.
 */
export function scrubbedBody(body: string, secrets: readonly string[]): string {
  if (secrets.length === 0 || body === '') return body;
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  if (parsed !== undefined) {
    const scrubbed = scrubbedValue(parsed, secrets);
    return scrubbed.changed ? JSON.stringify(scrubbed.value) : body;
  }
  if (FORM_BODY.test(body)) {
    const fields = [...new URLSearchParams(body)];
    const scrubbed = fields.map(
      ([name, value]) => [withoutSecrets(name, secrets), withoutSecrets(value, secrets)] as [string, string],
    );
    if (scrubbed.some(([name, value], i) => name !== fields[i]?.[0] || value !== fields[i]?.[1])) {
      return new URLSearchParams(scrubbed).toString();
    }
  }
  return withoutSecrets(body, secrets);
}
