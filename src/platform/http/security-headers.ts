import type { IncomingMessage, ServerResponse } from 'node:http';
import type { FastifyCorsOptions } from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import helmet from 'helmet';

/**
 * helmet's default security headers (less the Content-Security-Policy: the docs page and the admin
 * console load their own scripts and styles), worked out once at start and sent as one static set.
 * Running helmet's dozen middlewares on every request cost about 3 % of a cheap route's throughput,
 * and with these options their output never depends on the request.
 */
function helmetHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  const recorder = {
    setHeader(name: string, value: string | number | readonly string[]) {
      headers[name.toLowerCase()] = Array.isArray(value) ? value.join(', ') : String(value);
    },
    removeHeader() {},
  } as unknown as ServerResponse;
  helmet({ contentSecurityPolicy: false })({} as IncomingMessage, recorder, () => {});
  return headers;
}

const SECURITY_HEADERS = helmetHeaders();

// Headers a script reads besides the CORS-safelisted ones: SCIM versions, a created resource, when
// to retry, an export's file name.
const EXPOSED_HEADERS = ['ETag', 'Location', 'Retry-After', 'Content-Disposition'];

/** The options of @fastify/cors for the origins of CORS_ORIGINS (none: no CORS headers at all). */
export function corsOptions(corsOrigins: string[]): FastifyCorsOptions {
  return {
    origin: corsOrigins.length > 0 ? corsOrigins : false,
    credentials: true,
    // The plugin's default is GET, HEAD and POST: a page of an allowed origin could not update or delete.
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    exposedHeaders: EXPOSED_HEADERS,
  };
}

/** Sends the security headers on every answer that goes through the request's hooks. */
export function installSecurityHeaders(app: FastifyInstance): void {
  app.addHook('onRequest', async (_request, reply) => {
    reply.headers(SECURITY_HEADERS);
  });
}

/**
 * The headers of an answer made before any hook ran (a URL the router refuses, a request Node's
 * parser refuses): the security headers, and the CORS headers @fastify/cors puts on an ordinary
 * answer under `corsOptions`, so a page of an allowed origin can read the refusal as it reads a 404.
 */
export function headersBeforeRouting(corsOrigins: string[]): (origin: string | undefined) => Record<string, string> {
  const allowed = new Set(corsOrigins);
  const cors: Record<string, string> =
    corsOrigins.length > 0
      ? {
          vary: 'Origin',
          'access-control-allow-credentials': 'true',
          'access-control-expose-headers': EXPOSED_HEADERS.join(', '),
        }
      : {};
  return (origin) => ({
    ...SECURITY_HEADERS,
    ...cors,
    ...(origin !== undefined && allowed.has(origin) ? { 'access-control-allow-origin': origin } : {}),
  });
}
