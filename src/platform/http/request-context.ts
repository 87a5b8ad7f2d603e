import { AsyncLocalStorage } from 'node:async_hooks';
import type { FastifyInstance, FastifyRequest } from 'fastify';

/**
 * The request being served, for code far below the route that records where a change came from
 * (the audit trail) without every service signature carrying the request. It holds the request
 * itself: its actor, set by the authentication hook that runs after this one, is read when needed.
 * Nothing else may ride on it: data and transactions are still passed explicitly.
 */
const storage = new AsyncLocalStorage<FastifyRequest>();

/** Serves every request inside its context. */
export function installRequestContext(app: FastifyInstance): void {
  const enter = (request: FastifyRequest, _reply: unknown, done: () => void) => storage.run(request, done);
  app.addHook('onRequest', enter);
  // A body is parsed on the socket's events, outside the context entered above: enter it again
  // before the handler.
  app.addHook('preHandler', enter);
}

/** The request whose handling is running now; undefined in jobs, the CLI and start-up. */
export function currentRequest(): FastifyRequest | undefined {
  return storage.getStore();
}
