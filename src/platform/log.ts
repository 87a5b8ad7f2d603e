import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import pino from 'pino';

type SerializedError = { message?: string; stack?: string; params?: unknown; cause?: SerializedError };

/**
 * Drizzle's query errors carry the statement's parameters (in `params` and in the message), and
 * those can be password hashes or token hashes: they are cut before an error is logged.
 */
function withoutQueryParameters(err: SerializedError | undefined): SerializedError | undefined {
  if (!err || typeof err !== 'object') return err;
  const { params: _params, cause, ...rest } = err;
  const cut = (text: string | undefined) => text?.replace(/\nparams: [\s\S]*$/, '\nparams: [omitted]');
  return { ...rest, message: cut(err.message), stack: cut(err.stack), cause: withoutQueryParameters(cause) };
}

/**
 * The path of a request no route matched, as it may be logged: its first segment and its length.
 * A client that put a token in a path (a mistyped route, a scanner) must not leave it in the logs.
 */
function unmatchedPath(url: string): { path: string; pathLength: number } {
  const path = url.split('?')[0] ?? '';
  const first = /^\/[^/]*/.exec(path)?.[0] ?? '/';
  return { path: first.length < path.length ? `${first}/…` : first, pathLength: path.length };
}

/**
 * Pino options. Credentials never reach a log line: request lines are built from method, route
 * template and status only (no headers, bodies or query strings), and errors lose query parameters.
 */
export function loggerOptions(level: string, stream?: NodeJS.WritableStream): FastifyServerOptions['logger'] {
  return {
    level,
    // Asynchronous writes: a synchronous write per line was the largest single cost of a cheap
    // request. Buffered lines are flushed when the app closes.
    stream: stream ?? pino.destination({ dest: 1, sync: false }),
    serializers: {
      err: (err: Error) =>
        withoutQueryParameters(pino.stdSerializers.err(err) as SerializedError) as ReturnType<
          typeof pino.stdSerializers.err
        >,
      req: (req: { method: string; url: string; ip?: string; routeOptions?: { url?: string } }) => ({
        method: req.method,
        // Query strings can carry tokens (reset links, cursors), and so can paths no route knows.
        ...(req.routeOptions?.url ? { path: req.routeOptions.url } : unmatchedPath(req.url)),
        ip: req.ip,
      }),
    },
  };
}

/**
 * One log line per request, written when the answer has gone out (Fastify's default is two: one
 * on arrival, one on completion). Method, path template (for a path no route matched, its first
 * segment and length) and status only; never bodies or headers.
 */
export function installRequestLogging(app: FastifyInstance): void {
  app.addHook('onResponse', async (request, reply) => {
    app.log.info(
      {
        reqId: request.id,
        method: request.method,
        ...(request.routeOptions.url ? { path: request.routeOptions.url } : unmatchedPath(request.url)),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime * 10) / 10,
      },
      'request',
    );
  });
  app.addHook('onClose', async () => {
    // Fastify types its logger narrowly; at run time it is pino, which buffers asynchronous writes.
    (app.log as unknown as pino.Logger).flush();
  });
}
