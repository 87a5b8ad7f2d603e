import type { Envelope } from '../../platform/crypto/envelope.js';
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
