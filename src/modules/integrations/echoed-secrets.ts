import { REDACTED } from '../activity/redact.js';

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
/**
 * Below this length a secret is cut only where it stands as a whole word (not inside a run of
 * letters and digits): a 5-character key is then still cut from "bad key ab12x", but not from the
 * middle of an e-mail address or an id that happens to contain it.
 */
const MIN_ANYWHERE_LENGTH = 8;

/** The secret values among `values`, long enough to look for, longest first (a Basic header before its pair). */
export function secretValues(values: Iterable<string | null | undefined>): string[] {
  const out = new Set<string>();
  for (const value of values) if (typeof value === 'string' && value.length >= MIN_SECRET_LENGTH) out.add(value);
  return [...out].sort((a, b) => b.length - a.length);
}

/** application/x-www-form-urlencoded, as OAuth2 client authentication encodes (RFC 6749 §2.3.1, Appendix B). */
export function formUrlEncoded(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

const GO_HTML_ESCAPES: Record<string, string> = { '&': '\\u0026', '<': '\\u003c', '>': '\\u003e' };

/** How a secret may read in a text: as is, percent- or form-encoded, or escaped in a JSON string. */
function textForms(secret: string): string[] {
  const percent = encodeURIComponent(secret);
  const json = JSON.stringify(secret).slice(1, -1);
  return [
    ...new Set([
      secret,
      percent,
      percent.replace(/%[0-9A-F]{2}/g, (h) => h.toLowerCase()),
      formUrlEncoded(secret),
      json,
      json.replace(/\//g, '\\/'),
      // Go's encoding/json escapes these by default.
      json.replace(/[&<>]/g, (c) => GO_HTML_ESCAPES[c] as string),
    ]),
  ];
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Cuts the secrets out of a text, in each of their text forms. */
export function scrubbedText(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const secret of secrets) {
    for (const form of textForms(secret)) {
      if (!out.includes(form)) continue;
      out =
        secret.length >= MIN_ANYWHERE_LENGTH
          ? out.split(form).join(REDACTED)
          : out.replace(new RegExp(`(?<![A-Za-z0-9])${escapeRegExp(form)}(?![A-Za-z0-9])`, 'g'), REDACTED);
    }
  }
  return out;
}

/** A parsed JSON value with the secrets cut from its strings (names too) and numbers; `changed` when any was. */
function scrubbedValue(value: unknown, secrets: readonly string[]): { value: unknown; changed: boolean } {
  if (typeof value === 'string') {
    const scrubbed = scrubbedText(value, secrets);
    return { value: scrubbed, changed: scrubbed !== value };
  }
  if (typeof value === 'number') {
    // A numeric secret echoed as a JSON number.
    const text = String(value);
    return scrubbedText(text, secrets) === text ? { value, changed: false } : { value: REDACTED, changed: true };
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
      const key = scrubbedText(name, secrets);
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
      ([name, value]) => [scrubbedText(name, secrets), scrubbedText(value, secrets)] as [string, string],
    );
    if (scrubbed.some(([name, value], i) => name !== fields[i]?.[0] || value !== fields[i]?.[1])) {
      return new URLSearchParams(scrubbed).toString();
    }
  }
  return scrubbedText(body, secrets);
}
