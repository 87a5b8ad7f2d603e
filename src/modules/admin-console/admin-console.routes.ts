import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fastifyStatic from '@fastify/static';
import type { FastifyPluginAsync } from 'fastify';
import { AppError, sendProblem } from '../../platform/http/errors.js';

/**
 * The console's own Content-Security-Policy: its scripts, styles and API calls all come from this
 * origin. Styles also allow 'unsafe-inline' because Material UI (through emotion) injects its styles
 * at run time; scripts do not, and nothing may frame the console.
 */
export const CONSOLE_CSP = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** dist/console/ of this installation, whether this module runs from src/ (tests) or dist/. */
export function defaultConsoleRoot(): string {
  const repository = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  return join(repository, 'dist', 'console');
}

const IMMUTABLE = 'public, max-age=31536000, immutable';
// index.html names the current hashed bundle, so a browser must revalidate it on every load.
const REVALIDATE = 'no-cache';

/**
 * Serves the admin console's built files at /admin/: hashed assets cached for a year, index.html
 * revalidated, and every other /admin/ path answered with index.html so deep links work (the
 * console routes in the browser). API paths are untouched: they keep their problem+json 404.
 */
export const adminConsoleRoutes: FastifyPluginAsync<{ root?: string }> = async (app, options) => {
  const root = options.root ?? defaultConsoleRoot();

  app.addHook('onRequest', async (_request, reply) => {
    reply.header('content-security-policy', CONSOLE_CSP);
  });

  if (!existsSync(join(root, 'index.html'))) {
    app.log.warn({ root }, 'admin console not built: run npm run build');
    app.get('/admin/*', { schema: { hide: true } }, (request, reply) =>
      sendProblem(
        reply,
        request,
        new AppError(503, 'console_not_built', 'The admin console has not been built: run `npm run build`.'),
      ),
    );
    return;
  }

  await app.register(fastifyStatic, {
    root,
    prefix: '/admin/',
    // Routes for the files present at start; everything else under /admin/ reaches the fallback below.
    wildcard: false,
    index: false,
    cacheControl: false,
    dotfiles: 'ignore',
    setHeaders(res, path) {
      res.setHeader('cache-control', path.includes(`${join('/', 'assets', '/')}`) ? IMMUTABLE : REVALIDATE);
    },
  });

  // `/admin` and `/admin/` (trailing slashes are ignored) and every deep link get index.html.
  app.get('/admin', { schema: { hide: true } }, (_request, reply) =>
    reply.header('cache-control', REVALIDATE).sendFile('index.html', root),
  );
  app.get('/admin/*', { schema: { hide: true } }, (request, reply) => {
    // A missing bundle is a 404, not index.html: a stale tab would otherwise load HTML as a script.
    if (request.url.startsWith('/admin/assets/')) {
      return sendProblem(reply, request, new AppError(404, 'not_found', 'No such console asset.'));
    }
    return reply.header('cache-control', REVALIDATE).sendFile('index.html', root);
  });
};
