import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { EnvelopeError } from '../crypto/envelope.js';
import { uniqueViolation, unreachableDatabaseReason } from '../db/client.js';
import { type AllowedMethods, type Constraints, collectAllowedMethods } from './allowed-methods.js';

export interface FieldError {
  field: string;
  message: string;
}

/** A refusal with a stable snake_case code; rendered once, centrally, as RFC 9457 problem+json. */
export class AppError extends Error {
  readonly code: string;
  readonly status: number;
  readonly title: string;
  readonly errors: FieldError[] | undefined;
  readonly headers: Record<string, string> | undefined;
  /** RFC 9457 extension members the client acts on (never overriding the standard ones). */
  readonly extensions: Record<string, unknown> | undefined;

  constructor(
    status: number,
    code: string,
    detail: string,
    options: {
      title?: string;
      errors?: FieldError[];
      cause?: unknown;
      headers?: Record<string, string>;
      extensions?: Record<string, unknown>;
    } = {},
  ) {
    super(detail, { cause: options.cause });
    this.name = 'AppError';
    this.status = status;
    this.code = code;
    this.title = options.title ?? STATUS_TITLES[status] ?? STATUS_CODES[status] ?? 'Error';
    this.errors = options.errors;
    this.headers = options.headers;
    this.extensions = options.extensions;
  }
}

const STATUS_TITLES: Record<number, string> = {
  400: 'Bad Request',
  401: 'Unauthorized',
  403: 'Forbidden',
  404: 'Not Found',
  405: 'Method Not Allowed',
  409: 'Conflict',
  412: 'Precondition Failed',
  413: 'Content Too Large',
  414: 'URI Too Long',
  415: 'Unsupported Media Type',
  422: 'Unprocessable Content',
  429: 'Too Many Requests',
  500: 'Internal Server Error',
  503: 'Service Unavailable',
};

/** Errors every module raises. */
export const commonErrors = {
  validation: (errors: FieldError[], detail = 'The request is not valid.') =>
    new AppError(400, 'validation_failed', detail, { errors }),
  unauthenticated: (detail = 'Authentication credentials were not provided or are not valid.') =>
    new AppError(401, 'not_authenticated', detail, { headers: { 'www-authenticate': 'Bearer' } }),
  forbidden: (detail = 'You do not have permission to perform this action.') =>
    new AppError(403, 'permission_denied', detail),
  notFound: (what: string) => new AppError(404, 'not_found', `${what} was not found.`),
  conflict: (code: string, field: string, detail: string) =>
    new AppError(409, code, detail, { errors: [{ field, message: detail }] }),
  /** Fields of an object that a write cannot change; `via` narrows the wording ("through the profile"). */
  readOnlyFields: (fields: readonly string[], via?: string) => {
    const where = via ? ` ${via}` : '';
    return commonErrors.validation(
      fields.map((field) => ({ field, message: `This field cannot be changed${where}.` })),
      `${fields.join(', ')} cannot be changed${where}.`,
    );
  },
};

export interface ProblemDocument {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
  instance?: string;
  errors?: FieldError[];
}

export function toProblem(err: AppError, instance?: string): ProblemDocument {
  return {
    ...err.extensions,
    type: `about:blank#${err.code}`,
    title: err.title,
    status: err.status,
    detail: err.message,
    code: err.code,
    ...(instance ? { instance } : {}),
    ...(err.errors ? { errors: err.errors } : {}),
  };
}

interface AjvError {
  instancePath?: string;
  schemaPath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/**
 * A field with alternatives (a nullable string is `anyOf: [string, null]`, an enumeration one
 * constant per alternative) fails each of them and then the `anyOf` itself. When every alternative
 * refused the value's type or constant, those become one error naming what it may be; otherwise the
 * value had an alternative's type, and that alternative's own errors (a format, a length) are shown.
 */
const unique = (values: string[]): string[] => [...new Set(values)];

function collapseAlternatives(validation: AjvError[]): AjvError[] {
  const anyOfs = validation.filter((e) => e.keyword === 'anyOf' && e.schemaPath);
  if (anyOfs.length === 0) return validation;
  const dropped = new Set<AjvError>();
  const replaced = new Map<AjvError, AjvError>();
  for (const anyOf of anyOfs) {
    const prefix = `${(anyOf.schemaPath as string).slice(0, -'anyOf'.length)}anyOf/`;
    const branches = new Map<string, AjvError[]>();
    for (const e of validation) {
      if (e === anyOf || !e.schemaPath?.startsWith(prefix)) continue;
      const branch = e.schemaPath.slice(prefix.length).split('/')[0] as string;
      branches.set(branch, [...(branches.get(branch) ?? []), e]);
      dropped.add(e);
    }
    const mismatch = (e: AjvError) => e.keyword === 'type' || e.keyword === 'const';
    const fitting = [...branches.values()].find((errors) => !errors.every(mismatch));
    if (fitting) {
      for (const e of fitting) dropped.delete(e);
      dropped.add(anyOf);
    } else {
      const refusals = [...branches.values()].flat();
      // An enumeration names its values once; a value of another type (a query parameter given
      // twice arrives as an array) fails each constant's type too, which says it must be one value.
      const constants = unique(
        refusals.filter((e) => e.keyword === 'const').map((e) => JSON.stringify(e.params?.allowedValue)),
      );
      const typeOf = (e: AjvError) => String(e.params?.type);
      const types = unique(refusals.filter((e) => e.keyword === 'type').map(typeOf));
      let message = `must be ${types.join(' or ')}`;
      if (constants.length > 0) {
        const open = [...branches.values()].filter((b) => !b.some((e) => e.keyword === 'const'));
        const names = unique([...constants, ...open.flat().map(typeOf)]);
        const single = types.length === 1 && [...branches.values()].every((b) => b.some((e) => e.keyword === 'type'));
        message = `must be one of ${names.join(', ')}${single ? `, given once as a ${types[0]}` : ''}`;
      }
      replaced.set(anyOf, { ...anyOf, message });
    }
  }
  return validation.filter((e) => !dropped.has(e)).map((e) => replaced.get(e) ?? e);
}

/** What a date-time field takes (platform/http/date-time.ts): "must match format" does not say it is the year. */
export const DATE_TIME_MESSAGE =
  'Must be an RFC 3339 date-time such as 2026-01-31T00:00:00Z, in the years 0001 to 9999.';
/** What an email field takes (platform/email-address.ts), in the words every path refuses one with. */
export const EMAIL_MESSAGE = 'Must be an email address such as name@example.com.';
const FORMAT_MESSAGES: Record<string, string> = {
  'date-time': DATE_TIME_MESSAGE,
  date: 'Must be a date such as 2026-01-31, in the years 0001 to 9999.',
  email: EMAIL_MESSAGE,
};

const PATTERN_MESSAGES = new Map<string, string>();

/**
 * A schema pattern with the words a refusal gives instead of the regular expression ("must match
 * pattern "^[a-z][a-z0-9_]*$"" tells a person little): `pattern: readablePattern('^…$', 'Use …')`.
 */
export function readablePattern(pattern: string, message: string): string {
  PATTERN_MESSAGES.set(pattern, message);
  return pattern;
}

/** What one validator error says, in words: a format's or a pattern's own message where it has one. */
export function validationMessage(e: Pick<AjvError, 'keyword' | 'message' | 'params'>): string {
  const format = e.keyword === 'format' ? FORMAT_MESSAGES[String(e.params?.format)] : undefined;
  const pattern = e.keyword === 'pattern' ? PATTERN_MESSAGES.get(String(e.params?.pattern)) : undefined;
  return format ?? pattern ?? e.message ?? 'is not valid';
}

/** Maps a schema validator's errors to `{field, message}` with dotted field paths. */
export function fieldErrorsFromValidation(validation: AjvError[], context?: string): FieldError[] {
  const seen = new Set<string>();
  const out: FieldError[] = [];
  for (const e of collapseAlternatives(validation)) {
    // "must match then/else schema": the branch's own errors (a required field) say what is wrong.
    if (e.keyword === 'if') continue;
    const path = (e.instancePath ?? '')
      .split('/')
      .filter(Boolean)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    let message = validationMessage(e);
    if (e.keyword === 'required' && typeof e.params?.missingProperty === 'string') {
      path.push(e.params.missingProperty);
      message = 'This field is required.';
    } else if (e.keyword === 'additionalProperties' && typeof e.params?.additionalProperty === 'string') {
      path.push(e.params.additionalProperty);
      message = 'This field is not allowed.';
    }
    const field = path.join('.') || (context === 'body' ? 'body' : (context ?? 'body'));
    const key = `${field}\u0000${message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ field, message });
  }
  return out;
}

/** Constraint name → the field a 409 names and its code; filled in by the modules that own the tables. */
const uniqueConstraints = new Map<string, { field: string; code: string }>();

export function registerUniqueConstraint(constraint: string, field: string, code: string): void {
  uniqueConstraints.set(constraint, { field, code });
}

function fromFastifyError(err: FastifyError, bodyLimit?: number): AppError | undefined {
  if (err.validation) {
    return commonErrors.validation(fieldErrorsFromValidation(err.validation as AjvError[], err.validationContext));
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE': {
      const limit = bodyLimit === undefined ? 'the server accepts' : `${bodyLimit} bytes`;
      return new AppError(413, 'payload_too_large', `The request body is larger than ${limit}.`, {
        errors: [{ field: 'body', message: `The body must not be larger than ${limit}.` }],
      });
    }
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError(415, 'unsupported_media_type', 'Send the body as application/json.');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return commonErrors.validation([{ field: 'body', message: 'The JSON body is empty.' }]);
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return commonErrors.validation([{ field: 'body', message: 'The body is not valid JSON.' }]);
  }
  if (err instanceof SyntaxError) {
    return commonErrors.validation([{ field: 'body', message: 'The body is not valid JSON.' }]);
  }
  if (typeof err.statusCode === 'number' && err.statusCode >= 400 && err.statusCode < 500) {
    return new AppError(err.statusCode, 'bad_request', err.message);
  }
  return undefined;
}

/** Seconds a client is told to wait before trying again while the database cannot be reached. */
const DATABASE_RETRY_AFTER_SECONDS = 5;

/**
 * What a request answers while PostgreSQL cannot be reached: not a fault of this server's code but
 * an outage a client waits out, so 503 with Retry-After, as /health answers then.
 */
function databaseUnavailable(cause?: unknown): AppError {
  return new AppError(503, 'database_unavailable', 'The database cannot be reached right now; try again shortly.', {
    headers: { 'retry-after': String(DATABASE_RETRY_AFTER_SECONDS) },
    cause,
  });
}

/**
 * Turns any thrown value into the AppError to render; unknown errors become a generic 500.
 * `bodyLimit` (the route's, in bytes) is named in a 413.
 */
export function normaliseError(err: unknown, bodyLimit?: number): { error: AppError; unexpected: boolean } {
  if (err instanceof AppError) return { error: err, unexpected: false };
  if (unreachableDatabaseReason(err) !== undefined) return { error: databaseUnavailable(err), unexpected: false };
  const unique = uniqueViolation(err);
  if (unique) {
    const known = uniqueConstraints.get(unique.constraint);
    const field = known?.field ?? 'id';
    return {
      error: commonErrors.conflict(known?.code ?? 'duplicate', field, `A record with this ${field} already exists.`),
      unexpected: false,
    };
  }
  const fromFastify = fromFastifyError(err as FastifyError, bodyLimit);
  if (fromFastify) return { error: fromFastify, unexpected: false };
  if (err instanceof EnvelopeError) {
    // A secret sealed under a master key this node no longer has: an operator's fix. The code says
    // what kind of fault it is; which key and setting, only the log (it is logged with its stack).
    return {
      error: new AppError(500, 'sealed_secret_unreadable', 'A stored secret cannot be opened; see the server log.'),
      unexpected: true,
    };
  }
  return { error: new AppError(500, 'internal_error', 'An unexpected error occurred.'), unexpected: true };
}

/**
 * Logs a failed request as its error calls for: an unexpected one once, with its stack; an outage of
 * the database as one warning line without a stack, since every request fails alike until it is back.
 */
export function logFailure(
  request: FastifyRequest,
  err: unknown,
  normalised: { error: AppError; unexpected: boolean },
): void {
  if (normalised.unexpected) {
    request.log.error({ err }, 'unhandled error');
    return;
  }
  const reason = normalised.error.code === 'database_unavailable' ? unreachableDatabaseReason(err) : undefined;
  if (reason !== undefined) request.log.warn({ reason }, 'database unavailable');
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, error: AppError): FastifyReply {
  if (error.headers) reply.headers(error.headers);
  return reply
    .code(error.status)
    .type('application/problem+json; charset=utf-8')
    .send(toProblem(error, request.url.split('?')[0]));
}

/**
 * What Fastify's router refuses before any route runs: a path whose percent-encoding does not
 * decode, or (FST_ERR_MAX_PARAM_LENGTH) a path parameter longer than `maxParamLength`. The server
 * sets that above any request line Node's parser lets through, so the second one reaches only
 * `inject()`; over HTTP an over-long parameter meets its route's schema, which names it.
 */
export function routerRefusal(err: { code?: string }): AppError {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    return new AppError(414, 'uri_too_long', 'A part of the URL path is longer than the server accepts.');
  }
  return new AppError(400, 'bad_url', 'The URL is not valid: a percent-encoded part of its path does not decode.');
}

/**
 * A refusal rendered for the requests a plugin answers in its own error format (SCIM's, under
 * /scim/): its document for a request to `target` (the path and query), or undefined for problem+json.
 */
type OwnErrorFormat = (target: string, error: AppError) => { contentType: string; body: string } | undefined;

/**
 * The target of the request line `packet` starts with (origin-form, or absolute-form cut to its
 * path), if it starts with one. Node gives the bytes of the read in which its parser failed, so a
 * request line that arrived over several reads is not seen whole.
 */
function requestTargetOf(packet: unknown): string | undefined {
  if (!Buffer.isBuffer(packet)) return undefined;
  const line = /^[!-~]+ (?:[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/\s]*)?(\/\S*)/.exec(packet.toString('latin1', 0, 512));
  return line?.[1];
}

/**
 * The Origin header among the bytes `packet` holds, if it arrived in them whole. Only compared with
 * the configured origins, so a header split over two reads is merely not seen.
 */
function originOf(packet: unknown): string | undefined {
  if (!Buffer.isBuffer(packet)) return undefined;
  return /\r\norigin:[ \t]*([!-~]+)[ \t]*\r\n/i.exec(packet.toString('latin1'))?.[1];
}

/**
 * The raw answer to a request Node's HTTP parser refused (a URL and headers too large, a malformed
 * request line), written on the socket as problem+json, or in `ownFormat`'s format for a request
 * whose target it claims; nothing when the socket can no longer be written.
 */
export function answerClientError(
  err: Error & { code?: string; rawPacket?: unknown },
  socket: Duplex,
  ownFormat?: OwnErrorFormat,
  headersFor?: (origin: string | undefined) => Record<string, string>,
): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, code, detail] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'headers_too_large', 'The URL and headers of the request are larger than the server accepts.']
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'request_timeout', 'The request took too long to arrive.']
        : [400, 'bad_request', 'The request is not valid HTTP.'];
  const error = new AppError(status, code, detail);
  const target = requestTargetOf(err.rawPacket);
  const own = target === undefined ? undefined : ownFormat?.(target, error);
  const contentType = own?.contentType ?? 'application/problem+json; charset=utf-8';
  const body = own?.body ?? JSON.stringify(toProblem(error));
  const extra = Object.entries(headersFor?.(originOf(err.rawPacket)) ?? {})
    .map(([name, value]) => `${name}: ${value}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Type: ${contentType}\r\n${extra}` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

function methodNotAllowedError(
  request: FastifyRequest,
  path: string,
  allowed: string[],
  preflight: boolean | undefined,
): AppError {
  const allow = (preflight && !allowed.includes('OPTIONS') ? [...allowed, 'OPTIONS'] : allowed).join(', ');
  const detail = `${request.method} is not allowed on ${path}; it takes ${allow}.`;
  return new AppError(405, 'method_not_allowed', detail, { headers: { allow } });
}

function methodNotAllowed(
  reply: FastifyReply,
  request: FastifyRequest,
  path: string,
  allowed: string[],
  preflight: boolean | undefined,
): FastifyReply {
  return sendProblem(reply, request, methodNotAllowedError(request, path, allowed, preflight));
}

declare module 'fastify' {
  interface FastifyInstance {
    /** The methods each path takes (see allowed-methods.ts); modules add their constraint strategies here. */
    allowedMethods: AllowedMethods;
    /**
     * The 405 of a request whose route turns out not to take it, for a route that can tell only once
     * it has looked (a segment that names nothing it serves): Allow names the methods of the routes
     * the path reaches with `constraints`, as the router would derive them otherwise.
     */
    methodNotAllowed(request: FastifyRequest, constraints: Constraints): AppError;
  }
}

interface MethodAnswers {
  /** CORS answers OPTIONS everywhere, so the Allow header names it too. */
  preflight?: boolean;
  /** Path prefixes whose plugin answers wrong methods itself (SCIM, in its own error schema). */
  ownMethodAnswers?: string[];
}

/**
 * Installs the central error and not-found handlers on the root instance; call before any route is
 * registered. A path some route takes, asked with another method, is answered 405 with an Allow
 * header (RFC 9110 §15.5.6) rather than 404; a path a fixed route takes names only that route's
 * methods. Paths under `ownMethodAnswers` are left at 404 here, as before. Answers the methods of
 * every path, for refuseOtherMethodsOnFixedPaths.
 */
export function installErrorHandling(app: FastifyInstance, options: MethodAnswers = {}): AllowedMethods {
  const allowedMethods = collectAllowedMethods(app);
  app.setErrorHandler((err, request, reply) => {
    const normalised = normaliseError(err, request.routeOptions.bodyLimit);
    logFailure(request, err, normalised);
    return sendProblem(reply, request, normalised.error);
  });
  app.decorate('allowedMethods', allowedMethods);
  app.decorate('methodNotAllowed', (request: FastifyRequest, constraints: Constraints) => {
    const path = request.url.split('?')[0] as string;
    const allowed = allowedMethods.of(path, request.raw, constraints).filter((m) => m !== request.method);
    return methodNotAllowedError(request, path, allowed, options.preflight);
  });
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0] as string;
    const elsewhere = options.ownMethodAnswers?.some((prefix) => path.startsWith(prefix));
    const fixed = elsewhere ? [] : allowedMethods.ofFixedPath(path);
    const allowed = elsewhere ? [] : fixed.length > 0 ? fixed : allowedMethods.of(path, request.raw);
    // A method a route takes reaches here only through callNotFound: that is a 404 of the route's own.
    if (allowed.length === 0 || allowed.includes(request.method)) {
      return sendProblem(reply, request, new AppError(404, 'route_not_found', `No route ${request.method} ${path}.`));
    }
    return methodNotAllowed(reply, request, path, allowed, options.preflight);
  });
  return allowedMethods;
}

/**
 * A fixed path (`/api/v1/users/login/`, `/api/v1/users/profile/`) belongs to its fixed routes: asked
 * with a method they do not take, it is answered 405 naming theirs, not handed to a parametric route
 * that happens to match it too (`/api/v1/users/:id`, where `login` would be looked up as a user and
 * answered 401, 403 or 404). Install after the hooks every answer needs (security headers, CORS) and
 * before authentication, so the caller's credential plays no part.
 */
export function refuseOtherMethodsOnFixedPaths(
  app: FastifyInstance,
  allowedMethods: AllowedMethods,
  options: MethodAnswers = {},
): void {
  app.addHook('onRequest', async (request, reply) => {
    const pattern = request.routeOptions.url;
    // Fixed routes and the not-found handler need nothing; catch-alls (CORS's preflight) match any path.
    if (pattern === undefined || !/[:*]/.test(pattern) || pattern === '*' || pattern === '/*') return;
    const path = request.url.split('?')[0] as string;
    if (options.ownMethodAnswers?.some((prefix) => path.startsWith(prefix))) return;
    const fixed = allowedMethods.ofFixedPath(path);
    if (fixed.length === 0 || fixed.includes(request.method)) return;
    return methodNotAllowed(reply, request, path, fixed, options.preflight);
  });
}
