import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { uniqueViolation } from '../db/client.js';

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

  constructor(
    status: number,
    code: string,
    detail: string,
    options: { title?: string; errors?: FieldError[]; cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(detail, { cause: options.cause });
    this.name = 'AppError';
    this.status = status;
    this.code = code;
    this.title = options.title ?? STATUS_TITLES[status] ?? 'Error';
    this.errors = options.errors;
    this.headers = options.headers;
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
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Maps a schema validator's errors to `{field, message}` with dotted field paths. */
export function fieldErrorsFromValidation(validation: AjvError[], context?: string): FieldError[] {
  const seen = new Set<string>();
  const out: FieldError[] = [];
  for (const e of validation) {
    const path = (e.instancePath ?? '')
      .split('/')
      .filter(Boolean)
      .map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    let message = e.message ?? 'is not valid';
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

function fromFastifyError(err: FastifyError): AppError | undefined {
  if (err.validation) {
    return commonErrors.validation(fieldErrorsFromValidation(err.validation as AjvError[], err.validationContext));
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError(413, 'payload_too_large', 'The request body is larger than the server accepts.');
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

/** Turns any thrown value into the AppError to render; unknown errors become a generic 500. */
export function normaliseError(err: unknown): { error: AppError; unexpected: boolean } {
  if (err instanceof AppError) return { error: err, unexpected: false };
  const unique = uniqueViolation(err);
  if (unique) {
    const known = uniqueConstraints.get(unique.constraint);
    const field = known?.field ?? 'id';
    return {
      error: commonErrors.conflict(known?.code ?? 'duplicate', field, `A record with this ${field} already exists.`),
      unexpected: false,
    };
  }
  const fromFastify = fromFastifyError(err as FastifyError);
  if (fromFastify) return { error: fromFastify, unexpected: false };
  return { error: new AppError(500, 'internal_error', 'An unexpected error occurred.'), unexpected: true };
}

export function sendProblem(reply: FastifyReply, request: FastifyRequest, error: AppError): FastifyReply {
  if (error.headers) reply.headers(error.headers);
  return reply
    .code(error.status)
    .type('application/problem+json; charset=utf-8')
    .send(toProblem(error, request.url.split('?')[0]));
}

/** Installs the central error and not-found handlers on the root instance. */
export function installErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err, request, reply) => {
    const { error, unexpected } = normaliseError(err);
    if (unexpected) request.log.error({ err }, 'unhandled error');
    return sendProblem(reply, request, error);
  });
  app.setNotFoundHandler((request, reply) =>
    sendProblem(
      reply,
      request,
      new AppError(404, 'route_not_found', `No route ${request.method} ${request.url.split('?')[0]}.`),
    ),
  );
}
