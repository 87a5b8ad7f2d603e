import { REDACTED } from '../../platform/secret-text.js';

/**
 * Sensitive values never reach the activity tables: a key naming a secret (password or pwd,
 * passphrase, PIN, token, bearer, secret, authorization, api key, cookie, credential, a private,
 * signing or encryption key, one-time, recovery or backup codes) has its value replaced, at any
 * depth, and so does any string that looks like a credential wherever it sits. A URL keeps its
 * user name and address but not its password (`smtp://u:[REDACTED]@h`), wherever it sits in a
 * string: a connection URL in a setting is no secret, the password in it is. Ordinary words
 * holding these letters (`shipping`, `is_private`, `keyboard`) are left alone: a PIN is named by
 * `pin` as a whole word, a key only with what kind of key it is.
 * A setting about a secret is no secret: a number or boolean under a key that names a length, a
 * lifetime, a count or a switch (`password_min_length`, `token_ttl`, `require_password`) is kept,
 * so that a change to a password or token policy can be read in the audit.
 */
const SENSITIVE_KEY =
  /pass(word|wd|phrase)?$|passw|passphrase|pwd|(^|_)pin($|_)|secret|token|bearer|authori[sz]ation|api_?key|(private|signing|encryption|master|hmac)_?key|cookie|credential|^otp$|otp_?code|mfa_?code|(recovery|backup)_?codes?|totp|signature|session_?id|csrf/;
/** The password of a URL's userinfo (RFC 3986 §3.2.1): up to the authority's last `@`. */
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*):[^\s/?#]*@/gi;
const CREDENTIAL_VALUE = /^(gh_[A-Za-z0-9_-]{16,}|eyJ[\w-]{8,}\.[\w-]+\.[\w-]+|(bearer|basic|apikey) \S{8,})$/i;
const POLICY_KEY =
  /(^|_)(min|max|length|ttl|lifetime|expiry|age|days|hours|minutes|seconds|count|enabled|required|require)($|_)/;
const MAX_DEPTH = 8;

function isSensitive(key: string, value: unknown): boolean {
  const name = key.toLowerCase().replace(/[-\s]/g, '_');
  if (!SENSITIVE_KEY.test(name)) return false;
  return !((typeof value === 'number' || typeof value === 'boolean') && POLICY_KEY.test(name));
}

function redactValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') {
    if (CREDENTIAL_VALUE.test(value.trim())) return REDACTED;
    return value.includes('://') ? value.replace(URL_PASSWORD, `$1:${REDACTED}@`) : value;
  }
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => redactValue(item, depth + 1));
  if (value instanceof Date) return value.toISOString();
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    out[key] = isSensitive(key, item) ? REDACTED : redactValue(item, depth + 1);
  }
  return out;
}

/** A copy of `details` with every sensitive value replaced by "[REDACTED]". */
export function redactDetails(details: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!details) return {};
  return redactValue(details, 0) as Record<string, unknown>;
}
