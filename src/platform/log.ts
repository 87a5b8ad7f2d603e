import type { FastifyInstance, FastifyServerOptions } from 'fastify';
import pino from 'pino';

/**
 * Pino options for request logs. Credentials never reach a log line: headers that carry them and
 * body fields that might are redacted, and request logs name only method, path and status.
 */
export function loggerOptions(level: string, stream?: NodeJS.WritableStream): FastifyServerOptions['logger'] {
  return {
    level,
    // Asynchronous writes: a synchronous write per line was the largest single cost of a cheap
    // request. Buffered lines are flushed when the app closes.
    stream: stream ?? pino.destination({ dest: 1, sync: false }),
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'req.headers["x-api-key"]',
        'req.headers["x-csrf-token"]',
        'res.headers["set-cookie"]',
        '*.password',
        '*.new_password',
        '*.old_password',
        '*.token',
        '*.refresh',
        '*.access',
        '*.key',
      ],
      censor: '[redacted]',
    },
    serializers: {
      req: (req: { method: string; url: string; ip?: string }) => ({
        method: req.method,
        // Query strings can carry tokens (reset links, cursors); log the path only.
        path: req.url.split('?')[0],
        ip: req.ip,
      }),
    },
  };
}

/**
 * One log line per request, written when the answer has gone out (Fastify's default is two: one
 * on arrival, one on completion). Method, path template and status only; never bodies or headers.
 */
export function installRequestLogging(app: FastifyInstance): void {
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      { req: request, res: { statusCode: reply.statusCode }, responseTime: reply.elapsedTime },
      'request completed',
    );
  });
  app.addHook('onClose', async () => {
    // Fastify types its logger narrowly; at run time it is pino, which buffers asynchronous writes.
    (app.log as unknown as pino.Logger).flush();
  });
}
