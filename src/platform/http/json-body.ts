import type { FastifyBodyParser, FastifyInstance } from 'fastify';

type Poisoning = 'error' | 'ignore' | 'remove';

/**
 * Fastify's JSON parser, except that a body with no JSON in it (no bytes, or only whitespace) is no
 * body: generic HTTP clients set `Content-Type: application/json` for a whole session, so a DELETE
 * or a bodiless POST arrives with the header and nothing after it. Such a request reaches the route
 * as one without a body; a route whose schema requires a body refuses it there, naming the body.
 */
export function jsonBodyParser(
  app: FastifyInstance,
  onProtoPoisoning: Poisoning = 'error',
  onConstructorPoisoning: Poisoning = 'error',
): FastifyBodyParser<string> {
  const parse = app.getDefaultJsonParser(onProtoPoisoning, onConstructorPoisoning);
  return (request, body, done) => {
    if (body.trim() === '') {
      done(null, undefined);
      return;
    }
    parse(request, body, done);
  };
}

/** Every route takes `application/json` through jsonBodyParser; the route's body limit applies. */
export function installJsonBodies(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, jsonBodyParser(app));
}
