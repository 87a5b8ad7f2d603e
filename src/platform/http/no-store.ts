import type { FastifyReply } from 'fastify';

/**
 * For answers that carry a secret shown once or a credential (tokens, new API keys, TOTP secrets,
 * recovery codes, mail bodies with links): no cache, shared or private, may keep a copy. `Pragma`
 * for HTTP/1.0 caches, as RFC 6749 §5.1 asks of token answers.
 */
export function noStore(reply: FastifyReply): FastifyReply {
  return reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
}
