import type { Envelope } from '../../platform/crypto/envelope.js';
import { integrationErrors } from './integrations.errors.js';
import type { CredentialHints, CredentialName } from './integrations.table.js';

/** An integration's secrets in clear, only ever held in memory while a call is made. */
export type Credentials = Partial<Record<CredentialName, string>>;

/** Hints show the end of a value only for these, and only when long enough that four characters give nothing away. */
const HINTED: ReadonlySet<CredentialName> = new Set(['api_key', 'token']);
const MIN_HINTED_LENGTH = 16;

// The context binds a sealed value to its row: copied into another integration, it does not open.
export const credentialsContext = (integrationId: string) => `integrations:${integrationId}:credentials`;
export const oauth2TokenContext = (integrationId: string, which: 'access' | 'refresh') =>
  `integrations:${integrationId}:oauth2:${which}`;
export const codeVerifierContext = (stateHash: string) => `integrations:oauth2-state:${stateHash}`;

export function sealCredentials(envelope: Envelope, integrationId: string, credentials: Credentials): string | null {
  if (Object.keys(credentials).length === 0) return null;
  return envelope.seal(JSON.stringify(credentials), credentialsContext(integrationId));
}

export function openCredentials(envelope: Envelope, integrationId: string, sealed: string | null): Credentials {
  if (sealed === null) return {};
  return JSON.parse(envelope.openText(sealed, credentialsContext(integrationId))) as Credentials;
}

/** Applies an update: a string replaces, null removes, an omitted name keeps the stored value. */
export function mergeCredentials(
  current: Credentials,
  changes: Partial<Record<CredentialName, string | null | undefined>>,
): Credentials {
  const next: Credentials = { ...current };
  for (const [name, value] of Object.entries(changes) as [CredentialName, string | null | undefined][]) {
    if (value === undefined) continue;
    if (value === null) delete next[name];
    else next[name] = value;
  }
  return next;
}

export function hintsOf(credentials: Credentials): CredentialHints {
  const hints: CredentialHints = {};
  for (const [name, value] of Object.entries(credentials) as [CredentialName, string][]) {
    hints[name] = { hint: HINTED.has(name) && value.length >= MIN_HINTED_LENGTH ? `…${value.slice(-4)}` : null };
  }
  return hints;
}

// A header value is visible ASCII, with spaces and tabs only inside (RFC 9110 §5.5): anything else
// (a line break, a non-ASCII letter) makes every call fail, or splits the header.
const HEADER_VALUE = /^[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*$/;
// A bearer token is one word after `Bearer ` (RFC 6750 §2.1): visible ASCII.
const HEADER_WORD = /^[\x21-\x7e]+$/;
// Basic sends the pair base64-encoded, so any script will do, but not control characters, nor a
// colon in the user-id, where the pair splits (RFC 7617 §2).
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what it finds.
const CONTROL = /[\x00-\x1f\x7f]/;

/** Why a credential could not go into the header it is sent in, or null. */
const RULES: Partial<Record<CredentialName, (value: string) => string | null>> = {
  api_key: (v) =>
    HEADER_VALUE.test(v)
      ? null
      : 'Sent as a header value: visible ASCII characters only, spaces and tabs only between them.',
  token: (v) =>
    HEADER_WORD.test(v) ? null : 'Sent after `Bearer ` in a header: visible ASCII characters only, no spaces.',
  username: (v) =>
    CONTROL.test(v) || v.includes(':') ? 'Sent in Basic authentication: no control characters, no colon.' : null,
  password: (v) => (CONTROL.test(v) ? 'Sent in Basic authentication: no control characters.' : null),
};

/** Refuses, naming each, the credentials given that could never be sent (400), before they are stored. */
export function checkSendableCredentials(changes: Partial<Record<CredentialName, string | null>> | undefined): void {
  const errors: { field: string; message: string }[] = [];
  for (const [name, value] of Object.entries(changes ?? {}) as [CredentialName, string | null][]) {
    const problem = typeof value === 'string' ? RULES[name]?.(value) : null;
    if (problem) errors.push({ field: `credentials.${name}`, message: problem });
  }
  if (errors.length > 0) throw integrationErrors.credentialsNotSendable(errors);
}

/**
 * Headers that decide how a request is framed, routed or kept (RFC 9110 §7.2, §7.6.1, §7.8, §10.1.1;
 * RFC 9112 §6): sent as the API key, they make a call hang, go to another virtual host, or reach a proxy.
 */
const REQUEST_CONTROL_HEADERS = new Set([
  'host',
  'content-length',
  'transfer-encoding',
  'connection',
  'upgrade',
  'expect',
  'keep-alive',
  'te',
  'trailer',
  'http2-settings',
]);

/** Refuses (400 naming `api_key_header`) a header name that would control the request instead of carrying the key. */
export function checkApiKeyHeader(name: string | undefined): void {
  if (name === undefined) return;
  const lower = name.toLowerCase();
  if (REQUEST_CONTROL_HEADERS.has(lower) || lower.startsWith('proxy-')) {
    throw integrationErrors.apiKeyHeaderControlsRequest(name);
  }
}
