/**
 * Sensitive values never reach the activity tables: a key naming a secret (password, token,
 * secret, authorization, api key, cookie, credential, private key, one-time code) has its value
 * replaced, at any depth, and so does any string that looks like a credential wherever it sits.
 */
const SENSITIVE_KEY =
  /pass(word|wd|phrase)?$|passw|secret|token|authori[sz]ation|api_?key|cookie|credential|private_?key|^otp$|otp_?code|mfa_?code|totp|signature|session_?id|csrf/;
const CREDENTIAL_VALUE = /^(gh_[A-Za-z0-9_-]{16,}|eyJ[\w-]{8,}\.[\w-]+\.[\w-]+|(bearer|basic|apikey) \S{8,})$/i;
const MAX_DEPTH = 8;
export const REDACTED = '[REDACTED]';

function isSensitiveKey(key: string): boolean {
  return SENSITIVE_KEY.test(key.toLowerCase().replace(/[-\s]/g, '_'));
}

function redactValue(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return CREDENTIAL_VALUE.test(value.trim()) ? REDACTED : value;
  if (value === null || typeof value !== 'object') return value;
  if (depth >= MAX_DEPTH) return REDACTED;
  if (Array.isArray(value)) return value.map((item) => redactValue(item, depth + 1));
  if (value instanceof Date) return value.toISOString();
  const out: Record<string, unknown> = {};
  for (const [key, item] of Object.entries(value as Record<string, unknown>)) {
    out[key] = isSensitiveKey(key) ? REDACTED : redactValue(item, depth + 1);
  }
  return out;
}

/** A copy of `details` with every sensitive value replaced by "[REDACTED]". */
export function redactDetails(details: Record<string, unknown> | undefined): Record<string, unknown> {
  if (!details) return {};
  return redactValue(details, 0) as Record<string, unknown>;
}
