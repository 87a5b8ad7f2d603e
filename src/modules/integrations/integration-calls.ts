import type { Envelope } from '../../platform/crypto/envelope.js';
import type { Db } from '../../platform/db/client.js';
import { REDACTED, withoutSecrets } from '../../platform/secret-text.js';
import { redactDetails } from '../activity/redact.js';
import { openCredentials } from './credentials.js';
import { FORM_BODY, scrubbedBody, secretValues } from './echoed-secrets.js';
import { integrationErrors } from './integrations.errors.js';
import { findOrganizationIntegration } from './integrations.queries.js';
import { recordOutcome } from './integrations.service.js';
import { type Integration, integrationLogs } from './integrations.table.js';
import { currentAccessToken } from './oauth2.js';
import { joinUrl, sendOutbound } from './outbound-http.js';
import type { AddressRules } from './refused-addresses.js';

/** Logged request and response bodies are cut to this many characters. */
export const MAX_LOGGED_BODY = 4096;
/** What a caller gets of a response body at most; a larger answer is cut, never buffered whole. */
const MAX_RESPONSE_BYTES = 1024 * 1024;

/** The headers that authenticate a call, from the integration's credentials (and OAuth2 token). */
export async function authHeadersFor(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  integration: Integration,
  now = new Date(),
): Promise<Record<string, string>> {
  const credentials = openCredentials(envelope, integration.id, integration.credentialsSealed);
  switch (integration.authType) {
    case 'api_key':
      return credentials.api_key ? { [integration.apiKeyHeader]: credentials.api_key } : {};
    case 'bearer':
      return credentials.token ? { authorization: `Bearer ${credentials.token}` } : {};
    case 'basic': {
      if (credentials.username === undefined) return {};
      const pair = `${credentials.username}:${credentials.password ?? ''}`;
      return { authorization: `Basic ${Buffer.from(pair).toString('base64')}` };
    }
    case 'oauth2':
      return { authorization: `Bearer ${await currentAccessToken(db, envelope, rules, integration, now)}` };
    default:
      return {};
  }
}

function truncate(text: string): string {
  if (text.length <= MAX_LOGGED_BODY) return text;
  return `${text.slice(0, MAX_LOGGED_BODY)}…[truncated ${text.length - MAX_LOGGED_BODY} characters]`;
}

/**
 * A body as it may be stored: JSON and form-encoded bodies lose the values of sensitive fields
 * (the activity log's redaction rules), then everything is cut to MAX_LOGGED_BODY.
 */
export function loggableBody(body: string | undefined): string | null {
  if (body === undefined || body === '') return null;
  try {
    const parsed = JSON.parse(body) as unknown;
    if (parsed !== null && typeof parsed === 'object') {
      return truncate(JSON.stringify(redactDetails({ body: parsed }).body));
    }
  } catch {
    // not JSON
  }
  if (FORM_BODY.test(body)) {
    const form = new URLSearchParams(body);
    const redacted = redactDetails(Object.fromEntries(form));
    return truncate(new URLSearchParams(redacted as Record<string, string>).toString());
  }
  return truncate(redactDetails({ body }).body as string);
}

/** The endpoint as logged: path and query, with sensitive query parameters redacted. */
function loggableEndpoint(url: URL): string {
  const query = redactDetails(Object.fromEntries(url.searchParams));
  const search = new URLSearchParams(query as Record<string, string>).toString();
  return `${url.pathname}${search ? `?${search}` : ''}`;
}

function loggableHeaders(headers: Record<string, string>, integration: Integration): Record<string, unknown> {
  const redacted = redactDetails(headers);
  // The configured API key header may have any name; its value is a secret whatever it is called.
  for (const name of Object.keys(redacted)) {
    if (name.toLowerCase() === integration.apiKeyHeader.toLowerCase()) redacted[name] = REDACTED;
  }
  return redacted;
}

/**
 * The secret values a call carries: the stored credentials and the authentication headers made of
 * them (a Bearer token, a Basic pair, an OAuth2 access token). A service that echoes one back, in an
 * error text or a body field not named like a secret, must not have it stored or shown.
 */
function secretsOfCall(credentials: Record<string, unknown>, authHeaders: Record<string, string>): string[] {
  const values = Object.values(authHeaders).flatMap((header) => [header, header.replace(/^(Bearer|Basic)\s+/i, '')]);
  for (const value of Object.values(credentials)) if (typeof value === 'string') values.push(value);
  return secretValues(values);
}

export interface IntegrationRequest {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Below the integration's base URL, beginning with "/". */
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  /** Sent as JSON unless a string. */
  body?: unknown;
}

export interface IntegrationResponse {
  /** True when an answer came with a status below 400. */
  success: boolean;
  status: number | null;
  body: string;
  durationMs: number;
  error: string | null;
  logId: string;
}

/**
 * Calls an integration of an organization with its authentication applied, and records the call:
 * a request log (sensitive values redacted, bodies bounded) and the usage counters and health
 * status, in one transaction after the call. A deactivated integration is not called (409); one
 * deleted while the call was out answers 404 once the call returns.
 */
export async function callIntegration(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  target: { organizationId: string; integrationId: string },
  request: IntegrationRequest,
): Promise<IntegrationResponse> {
  const integration = await findOrganizationIntegration(db, target.organizationId, target.integrationId);
  if (!integration) throw integrationErrors.notFound(target.integrationId);
  if (!integration.isActive) throw integrationErrors.inactive(integration.id);

  const url = joinUrl(integration.baseUrl, request.path);
  for (const [name, value] of Object.entries(request.query ?? {})) url.searchParams.set(name, value);
  const body =
    request.body === undefined
      ? undefined
      : typeof request.body === 'string'
        ? request.body
        : JSON.stringify(request.body);
  const headers: Record<string, string> = {
    accept: 'application/json',
    ...(body !== undefined && typeof request.body !== 'string' ? { 'content-type': 'application/json' } : {}),
    ...request.headers,
  };
  const authHeaders = await authHeadersFor(db, envelope, rules, integration);
  const secrets = secretsOfCall(openCredentials(envelope, integration.id, integration.credentialsSealed), authHeaders);
  const sent = await sendOutbound(
    url,
    { method: request.method, headers: { ...headers, ...authHeaders }, body },
    { timeoutMs: integration.timeoutMs, maxBodyBytes: MAX_RESPONSE_BYTES, rules },
  );
  // What the other side answers is cut of our secrets before it is logged or handed on, after
  // decoding: a caller parsing the body must not find a secret a JSON escape hid from the cut.
  const result = sent.ok
    ? { ...sent, body: scrubbedBody(sent.body, secrets) }
    : { ...sent, message: withoutSecrets(sent.message, secrets) };
  const success = result.ok && result.status < 400;
  const at = new Date();

  const logId = await db.transaction(async (tx) => {
    // Deleted while the call was out (the delete does not wait for calls): the caller gets the
    // integration's 404, not a foreign-key failure. Held until commit, so a delete now waits for the log.
    if (!(await findOrganizationIntegration(tx, integration.organizationId, integration.id, { lock: 'key share' }))) {
      throw integrationErrors.notFound(integration.id);
    }
    const [log] = await tx
      .insert(integrationLogs)
      .values({
        organizationId: integration.organizationId,
        integrationId: integration.id,
        method: request.method,
        endpoint: loggableEndpoint(url),
        requestHeaders: loggableHeaders({ ...headers, ...authHeaders }, integration),
        requestBody: loggableBody(body === undefined ? undefined : scrubbedBody(body, secrets)),
        responseStatus: result.ok ? result.status : null,
        responseBody: result.ok ? loggableBody(result.body) : null,
        durationMs: result.durationMs,
        success,
        errorMessage: result.ok ? (success ? null : `HTTP ${result.status}`) : result.message,
        createdAt: at,
      })
      .returning({ id: integrationLogs.id });
    await recordOutcome(tx, integration, { success, asRequest: true, at });
    return log?.id as string;
  });

  return {
    success,
    status: result.ok ? result.status : null,
    body: result.ok ? result.body : '',
    durationMs: result.durationMs,
    error: result.ok ? (success ? null : `HTTP ${result.status}`) : result.message,
    logId,
  };
}
