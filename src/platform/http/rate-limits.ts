import rateLimit from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest, onRequestAsyncHookHandler, preHandlerAsyncHookHandler } from 'fastify';
import type { Config } from '../../config.js';
import { AppError } from './errors.js';

interface Limit {
  max: number;
  /** Milliseconds. */
  timeWindow: number;
}

const MINUTE = 60_000;

/**
 * Request limits on the credential endpoints, per client IP (request.ip honours TRUST_PROXY). One
 * counter per group, shared by the group's paths: the three login routes are one budget, not three.
 * Routes are matched by path, so a module adding one of these routes later gets its limit.
 */
const GROUPS = {
  password: { max: 30, timeWindow: MINUTE },
  refresh: { max: 120, timeWindow: MINUTE },
  account: { max: 20, timeWindow: MINUTE },
} satisfies Record<string, Limit>;

const CREDENTIAL_ROUTES: Record<string, keyof typeof GROUPS> = {
  '/api/token': 'password',
  '/api/v1/users/login': 'password',
  '/api/login': 'password',
  // The second login step (TOTP or recovery code) draws on the same budget as the first.
  '/api/v1/users/login/mfa': 'password',
  '/api/login/mfa': 'password',
  '/api/token/refresh': 'refresh',
  '/api/v1/users/token/refresh': 'refresh',
  '/api/v1/users/register': 'account',
  '/api/v1/users/password-reset': 'account',
  '/api/v1/users/password-reset/confirm': 'account',
  '/api/v1/users/verify-email': 'account',
  '/api/v1/users/verify-email/resend': 'account',
  // Each call checks the current password: a stolen access token must not buy unlimited guesses.
  '/api/v1/users/change-password': 'password',
};

/**
 * Password attempts per account identifier (the email or username sent), across the login routes
 * and client IPs: slows a distributed guess at one account, and makes an identifier that exists
 * behave exactly like one that does not. Failed logins also lock the account (in the database,
 * across nodes; see the lockout module), which RATE_LIMITS=off never disables.
 */
const PER_IDENTIFIER: Limit = { max: 10, timeWindow: MINUTE };

function tooManyRequests(retryAfterSeconds: number): AppError {
  const seconds = Math.max(1, retryAfterSeconds);
  return new AppError(429, 'rate_limited', `Too many requests; retry in ${seconds} s.`, {
    headers: { 'retry-after': String(seconds) },
  });
}

type Limiter = ReturnType<FastifyInstance['createRateLimit']>;

async function enforce(limiter: Limiter, request: FastifyRequest): Promise<void> {
  const result = await limiter(request);
  if (!result.isAllowed && result.isExceeded) throw tooManyRequests(result.ttlInSeconds);
}

function loginIdentifier(request: FastifyRequest): string | undefined {
  const body = request.body as { email?: unknown; username?: unknown } | undefined;
  const id = body?.email ?? body?.username;
  return typeof id === 'string' ? id.trim().toLowerCase() : undefined;
}

/**
 * Installs the limits on the root instance, before the modules add their routes. `RATE_LIMITS=off`
 * lifts them all (load tests, a gateway that limits); counters live in this process's memory.
 */
export async function installRateLimits(app: FastifyInstance, config: Config): Promise<void> {
  if (!config.rateLimits) return;
  if (config.redisUrl) {
    app.log.warn('REDIS_URL is set but no Redis client is installed: rate-limit counters stay per node');
  }
  await app.register(rateLimit, { global: false });

  const perIp = Object.fromEntries(
    Object.entries(GROUPS).map(([group, limit]) => {
      // The plugin's default key is request.ip (IPv6 grouped by subnet).
      const limiter = app.createRateLimit(limit);
      const hook: onRequestAsyncHookHandler = async (request) => enforce(limiter, request);
      return [group, hook];
    }),
  ) as Record<keyof typeof GROUPS, onRequestAsyncHookHandler>;

  const identifierLimiter = app.createRateLimit({
    ...PER_IDENTIFIER,
    keyGenerator: (req) => loginIdentifier(req) ?? '',
  });
  const perIdentifier: preHandlerAsyncHookHandler = async (request) => {
    if (loginIdentifier(request) !== undefined) await enforce(identifierLimiter, request);
  };

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (!methods.includes('POST')) return;
    const group = CREDENTIAL_ROUTES[route.url.replace(/\/+$/, '')];
    if (!group) return;
    route.onRequest = [...toArray(route.onRequest), perIp[group]];
    if (group === 'password') route.preHandler = [...toArray(route.preHandler), perIdentifier];
  });
}

function toArray<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}
