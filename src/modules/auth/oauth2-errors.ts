import type { FastifyInstance } from 'fastify';

/** RFC 6749 §5.2's error code for each refusal of the token endpoint, by the problem's own code. */
const OAUTH2_ERROR: Record<string, string> = {
  invalid_credentials: 'invalid_grant',
  account_inactive: 'invalid_grant',
  email_not_verified: 'invalid_grant',
  invalid_refresh_token: 'invalid_grant',
  unsupported_grant_type: 'unsupported_grant_type',
  validation_failed: 'invalid_request',
  organization_required: 'invalid_request',
  unsupported_media_type: 'invalid_request',
  payload_too_large: 'invalid_request',
  // §5.2 names no code for it; RFC 6749 §4.1.2.1's `temporarily_unavailable` is the registered one
  // that says "try again later" (the Retry-After header says when).
  rate_limited: 'temporarily_unavailable',
};

/**
 * The token endpoint's refusals stay problem+json (as every error of this API), and also carry
 * RFC 6749 §5.2's members, `error` and `error_description`, which is what an OAuth2 client library
 * reads: it then reports the real reason (`invalid_grant`) instead of an unreadable failure.
 * Server errors are not refusals of the request, and are left as they are.
 */
export function addOAuth2ErrorMembers(scope: FastifyInstance): void {
  scope.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode < 400 || reply.statusCode >= 500 || typeof payload !== 'string') return payload;
    if (!String(reply.getHeader('content-type') ?? '').startsWith('application/problem+json')) return payload;
    const problem = JSON.parse(payload) as { code?: string; detail?: string };
    const error = problem.code === undefined ? undefined : OAUTH2_ERROR[problem.code];
    if (error === undefined) return payload;
    return JSON.stringify({ ...problem, error, error_description: problem.detail });
  });
}
