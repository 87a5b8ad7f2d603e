/** What a cut secret reads as, wherever one is cut (texts here, activity details). */
export const REDACTED = '[REDACTED]';

/**
 * Below this length a secret is cut only where it stands as a whole word (not inside a run of
 * letters and digits): a 5-character key is still cut from "bad key ab12x", but not from the middle
 * of an e-mail address or an id that happens to contain it.
 */
const MIN_ANYWHERE_LENGTH = 8;

const GO_HTML_ESCAPES: Record<string, string> = { '&': '\\u0026', '<': '\\u003c', '>': '\\u003e' };

/**
 * How a secret may read in a text a peer sends back: as is, percent- or form-encoded (a URL, an
 * OAuth2 client authentication), or inside a JSON string as the encoders write it (`\/`, Go's
 * `\u0026`-style escapes, non-ASCII as `\uXXXX` like Python's json.dumps).
 */
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
      json.replace(/[&<>]/g, (c) => GO_HTML_ESCAPES[c] as string),
      json.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`),
    ]),
  ];
}

/** application/x-www-form-urlencoded, as OAuth2 client authentication encodes (RFC 6749 §2.3.1, Appendix B). */
export function formUrlEncoded(value: string): string {
  return new URLSearchParams({ v: value }).toString().slice(2);
}

const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * `text` with each secret, in each of its text forms, replaced by "[REDACTED]": anywhere for
 * secrets of 8 characters or more, as whole words below. Longest first, so a secret that contains
 * another is not left half shown. Empty secrets are ignored.
 */
export function withoutSecrets(text: string, secrets: readonly (string | null | undefined)[]): string {
  const sorted = [...new Set(secrets.filter((s): s is string => !!s))].sort((a, b) => b.length - a.length);
  let out = text;
  for (const secret of sorted) {
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
