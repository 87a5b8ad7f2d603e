import type { FastifyServerOptions } from 'fastify';

/**
 * Pino options for request logs. Credentials never reach a log line: headers that carry them and
 * body fields that might are redacted, and request logs name only method, path and status.
 */
export function loggerOptions(level: string, stream?: NodeJS.WritableStream): FastifyServerOptions['logger'] {
  return {
    level,
    ...(stream ? { stream } : {}),
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
      req: (req: { method: string; url: string; id: string; ip?: string }) => ({
        id: req.id,
        method: req.method,
        // Query strings can carry tokens (reset links, cursors); log the path only.
        path: req.url.split('?')[0],
        ip: req.ip,
      }),
    },
  };
}
