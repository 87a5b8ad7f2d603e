import { REDACTED } from '../../platform/secret-text.js';

/**
 * Sensitive values never reach the activity tables: a key naming a secret (password, token,
 * secret, authorization, api key, cookie, credential, private key, one-time code) has its value
 * replaced, at any depth, and so does any string that looks like a credential wherever it sits.
 * A setting about a secret is no secret: a number or boolean under a key that names a length, a
 * lifetime, a count or a switch (`password_min_length`, `token_ttl`, `require_password`) is kept,
 * so that a change to a password or token policy can be read in the audit.
 */
const SENSITIVE_KEY =
  /pass(word|wd|phrase)?$|passw|secret|token|authori[sz]ation|api_?key|cookie|credential|private_?key|^otp$|otp_?code|mfa_?code|totp|signature|session_?id|csrf/;
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
  if (typeof value === 'string') return CREDENTIAL_VALUE.test(value.trim()) ? REDACTED : value;
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
