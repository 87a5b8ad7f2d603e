import { inArray, type SQL, sql } from 'drizzle-orm';
import type { Envelope } from '../../platform/crypto/envelope.js';
import type { Db, DbOrTx } from '../../platform/db/client.js';
import { REDACTED, withoutSecrets } from '../../platform/secret-text.js';
import { redactDetails } from '../activity/redact.js';
import { users } from '../users/users.table.js';
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
export const MAX_RESPONSE_BYTES = 1024 * 1024;

/**
 * The headers that authenticate a call, from the integration's credentials (and OAuth2 token,
 * obtained within the integration's timeout, or by `deadline`, a Date.now() instant, if sooner).
 */
export async function authHeadersFor(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  integration: Integration,
  now = new Date(),
  deadline?: number,
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
      return { authorization: `Bearer ${await currentAccessToken(db, envelope, rules, integration, now, deadline)}` };
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

/** What an erased body, and an erased identifier in an endpoint, read as in a request log. */
export const ERASED = '[erased]';

/** How an identifier may read in a logged endpoint: as given, or encoded in the path or the query. */
function endpointForms(identifier: string): string[] {
  return [
    ...new Set([
      identifier,
      encodeURIComponent(identifier),
      new URLSearchParams({ v: identifier }).toString().slice(2),
    ]),
  ];
}

function withoutIdentifiers(endpoint: string, identifiers: readonly string[]): string {
  let masked = endpoint;
  for (const identifier of identifiers) {
    if (identifier === '') continue;
    for (const form of endpointForms(identifier)) masked = masked.split(form).join(ERASED);
  }
  return masked;
}

/**
 * Erases a user from the request logs that concern them: those logs' bodies become ERASED (a body
 * that was absent stays null), the identifiers the user was known by downstream (keycloak_ids) are
 * masked in their endpoints, and the user leaves their `user_ids`. Other users' logs stay as they are;
 * a log about several users loses its bodies as a whole.
 */
export async function eraseUserFromLogs(tx: DbOrTx, userId: string, identifiers: readonly string[]): Promise<void> {
  let endpoint: SQL = sql`${integrationLogs.endpoint}`;
  for (const identifier of identifiers) {
    if (identifier === '') continue;
    for (const form of endpointForms(identifier)) endpoint = sql`replace(${endpoint}, ${form}, ${ERASED})`;
  }
  await tx
    .update(integrationLogs)
    .set({
      requestBody: sql`case when ${integrationLogs.requestBody} is null then null else ${ERASED} end`,
      responseBody: sql`case when ${integrationLogs.responseBody} is null then null else ${ERASED} end`,
      endpoint,
      userIds: sql`nullif(array_remove(${integrationLogs.userIds}, ${userId}::uuid), '{}')`,
    })
    // @> rather than = any(): the GIN index answers it.
    .where(sql`${integrationLogs.userIds} @> array[${userId}::uuid]`);
}

/** Of the users a call concerns, those that still exist, held until commit so none is deleted meanwhile. */
async function heldUsers(tx: DbOrTx, userIds: readonly string[]): Promise<string[]> {
  if (userIds.length === 0) return [];
  const rows = await tx
    .select({ id: users.id })
    .from(users)
    .where(inArray(users.id, [...userIds]))
    .for('key share');
  const present = new Set(rows.map((r) => r.id));
  return userIds.filter((id) => present.has(id));
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
  /**
   * Why an answer with a 2xx status is still of no use to the caller (a body it cannot read), or
   * null: the call is then logged and counted as failed, with that reason.
   */
  unusable?: (answer: { status: number; body: string }) => string | null;
}

/**
 * Whether a status means the service did what was asked. Redirects are never followed (see
 * outbound-http.ts), so a 3xx leaves the request undone, like a refusal.
 */
export const isSuccessStatus = (status: number) => status >= 200 && status < 300;

/** Whom a call concerns, so that a user's deletion finds its log and erases them from it. */
export interface CallSubjects {
  userIds: readonly string[];
  /** What identifies those users in the request's path or query (a downstream's keycloak_id). */
  identifiers?: readonly string[];
}

export interface IntegrationResponse {
  /** True when an answer came with a 2xx status that the caller could use. */
  success: boolean;
  status: number | null;
  body: string;
  durationMs: number;
  error: string | null;
  logId: string;
}

/**
 * Calls an integration of an organization with its authentication applied, and records the call:
 * a request log (sensitive values redacted, bodies bounded, the users it concerns) and the usage
 * counters and health status, in one transaction after the call. A deactivated integration is not
 * called (409); one deleted while the call was out answers 404 once the call returns.
 */
export async function callIntegration(
  db: Db,
  envelope: Envelope,
  rules: AddressRules,
  target: { organizationId: string; integrationId: string },
  request: IntegrationRequest,
  subjects?: CallSubjects,
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
  const failure = !result.ok
    ? result.message
    : !isSuccessStatus(result.status)
      ? `HTTP ${result.status}`
      : (request.unusable?.({ status: result.status, body: result.body }) ?? null);
  const success = failure === null;
  const at = new Date();

  const logId = await db.transaction(async (tx) => {
    // Deleted while the call was out (the delete does not wait for calls): the caller gets the
    // integration's 404, not a foreign-key failure. Held until commit, so a delete now waits for the log.
    if (!(await findOrganizationIntegration(tx, integration.organizationId, integration.id, { lock: 'key share' }))) {
      throw integrationErrors.notFound(integration.id);
    }
    // A user deleted before the log is written (already, or while the call was out) is erased from
    // it as the deletion would have: the deletion's erasure cannot see a row written after it.
    const concerned = subjects?.userIds ?? [];
    const present = await heldUsers(tx, concerned);
    const erased = present.length < concerned.length;
    const erasedBody = (text: string | null) => (erased && text !== null ? ERASED : text);
    const endpoint = loggableEndpoint(url);
    const [log] = await tx
      .insert(integrationLogs)
      .values({
        organizationId: integration.organizationId,
        integrationId: integration.id,
        method: request.method,
        endpoint: erased ? withoutIdentifiers(endpoint, subjects?.identifiers ?? []) : endpoint,
        requestHeaders: loggableHeaders({ ...headers, ...authHeaders }, integration),
        requestBody: erasedBody(loggableBody(body === undefined ? undefined : scrubbedBody(body, secrets))),
        responseStatus: result.ok ? result.status : null,
        responseBody: erasedBody(result.ok ? loggableBody(result.body) : null),
        userIds: present.length > 0 ? present : null,
        durationMs: result.durationMs,
        success,
        errorMessage: failure,
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
    error: failure,
    logId,
  };
}
