import { createHash } from 'node:crypto';
import rateLimit, { type RateLimitPluginOptions } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { Redis } from 'ioredis';
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
 * Routes are matched by method and path, so a module adding one of these routes later gets its limit.
 */
const GROUPS = {
  password: { max: 30, timeWindow: MINUTE },
  refresh: { max: 120, timeWindow: MINUTE },
  account: { max: 20, timeWindow: MINUTE },
} satisfies Record<string, Limit>;

const CREDENTIAL_ROUTES: Record<string, keyof typeof GROUPS | 'by_grant'> = {
  // OAuth2's token endpoint: a password grant spends the login budget, a refresh grant the refresh one.
  'POST /api/token': 'by_grant',
  'POST /api/v1/users/login': 'password',
  'POST /api/login': 'password',
  // The second login step (TOTP or recovery code) draws on the same budget as the first.
  'POST /api/v1/users/login/mfa': 'password',
  'POST /api/v1/users/login/mfa/enrol': 'password',
  'POST /api/login/mfa': 'password',
  'POST /api/token/refresh': 'refresh',
  'POST /api/v1/users/token/refresh': 'refresh',
  'POST /api/v1/users/register': 'account',
  'POST /api/v1/users/password-reset': 'account',
  'POST /api/v1/users/password-reset/confirm': 'account',
  // The same mailed tokens checked without being used: guesses there must cost what they cost at confirm.
  'POST /api/v1/users/password-reset/check': 'account',
  'GET /api/v1/users/password-reset/confirm': 'account',
  'POST /api/v1/users/verify-email': 'account',
  'GET /api/v1/users/verify-email': 'account',
  'POST /api/v1/users/verify-email/resend': 'account',
  // Each call checks the current password: a stolen access token must not buy unlimited guesses.
  'POST /api/v1/users/change-password': 'password',
  // Turning the second factor on takes the current password, as change-password does.
  'POST /api/v1/users/mfa/totp': 'password',
  // A code turns the second factor off (or on): the same budget as the login's second step.
  'DELETE /api/v1/users/mfa/totp': 'password',
  'POST /api/v1/users/mfa/totp/confirm': 'password',
};

/**
 * Password attempts per account identifier, across the login routes and client IPs; a request counts
 * against each identifier it sends (email and username), as the account lookup uses them all: slows a distributed guess at one account, and makes an identifier that exists
 * behave exactly like one that does not. Failed logins also lock the account (in the database,
 * across nodes; see the lockout module), which RATE_LIMITS=off never disables.
 */
const PER_IDENTIFIER: Limit = { max: 10, timeWindow: MINUTE };

/**
 * Failed API-key authentications per client IP: a key that is unknown, revoked or expired, in any
 * header form (SCIM's Bearer included). Only failures are counted, and only failures are refused
 * past the budget: a working key sent from the same address (a service behind the guesser's NAT)
 * is always served, so a flood of bad keys cannot lock a service out.
 */
const API_KEY_FAILURES: Limit = { max: 30, timeWindow: MINUTE };

/** Counts one failed authentication of a request; throws 429 `rate_limited` once its client is over the budget. */
export type FailureLimit = (request: FastifyRequest) => Promise<void>;

/** The limits a credential resolver applies itself, as only it knows whether a credential failed. */
export interface CredentialLimits {
  /** Undefined with RATE_LIMITS=off. */
  apiKeyFailures?: FailureLimit;
}

function tooManyRequests(retryAfterSeconds: number): AppError {
  const seconds = Math.max(1, retryAfterSeconds);
  return new AppError(429, 'rate_limited', `Too many requests; retry in ${seconds} s.`, {
    headers: { 'retry-after': String(seconds) },
  });
}

type Limiter = ReturnType<FastifyInstance['createRateLimit']>;

/**
 * One budget's counters: in this process's memory, and with REDIS_URL also in Redis, shared by every
 * node. The local counter is what a request is held to while Redis does not answer.
 */
interface Budget {
  shared: Limiter | undefined;
  local: Limiter;
}

/**
 * A limiter from its own registration of the plugin. The plugin keys a Redis counter by its
 * namespace and the client key only, so limiters made by one registration would share counters in
 * Redis (the login budget would spend the refresh one); a registration per budget keeps them apart.
 */
async function limiter(
  app: FastifyInstance,
  store: Pick<RateLimitPluginOptions, 'redis' | 'nameSpace'>,
  options: Limit & Pick<RateLimitPluginOptions, 'keyGenerator'>,
): Promise<Limiter> {
  let made: Limiter | undefined;
  await app.register(async (scope) => {
    await scope.register(rateLimit, { global: false, ...store });
    made = scope.createRateLimit(options);
  });
  return made as Limiter;
}

async function budget(
  app: FastifyInstance,
  redis: Redis | undefined,
  name: string,
  options: Limit & Pick<RateLimitPluginOptions, 'keyGenerator'>,
): Promise<Budget> {
  return {
    shared: redis ? await limiter(app, { redis, nameSpace: `gatehouse:rate:${name}:` }, options) : undefined,
    local: await limiter(app, {}, options),
  };
}

/** Logs Redis trouble at most every half minute: a dead Redis must not flood the log. */
function throttledWarning(app: FastifyInstance): (err: unknown) => void {
  let last = 0;
  return (err) => {
    const now = Date.now();
    if (now - last < 30_000) return;
    last = now;
    app.log.warn({ err }, 'Redis does not answer: rate-limit counters fall back to this node until it does');
  };
}

async function enforce(budget: Budget, request: FastifyRequest, warn: (err: unknown) => void): Promise<void> {
  let result: Awaited<ReturnType<Limiter>> | undefined;
  if (budget.shared) {
    try {
      result = await budget.shared(request);
    } catch (err) {
      warn(err);
    }
  }
  result ??= await budget.local(request);
  if (!result.isAllowed && result.isExceeded) throw tooManyRequests(result.ttlInSeconds);
}

/** The budget of a call to the OAuth2 token endpoint, by its grant (password when none is named). */
function grantGroup(request: FastifyRequest): 'password' | 'refresh' {
  const body = request.body as { grant_type?: unknown } | undefined;
  return body?.grant_type === 'refresh_token' ? 'refresh' : 'password';
}

/** The identifiers a login body sends, each once (OAuth2 clients may repeat the email as `username`). */
function loginIdentifiers(request: FastifyRequest): string[] {
  const body = request.body as { email?: unknown; username?: unknown } | undefined;
  const ids = [body?.email, body?.username].filter((id): id is string => typeof id === 'string');
  return [...new Set(ids.map((id) => id.trim().toLowerCase()))];
}

/** An identifier's counter key: a digest, so no address sits in Redis (or in memory) in clear. */
function identifierKey(identifier: string): string {
  return createHash('sha256').update(identifier).digest('base64url');
}

const IDENTIFIER_KEY = Symbol('login identifier key');
type KeyedRequest = FastifyRequest & { [IDENTIFIER_KEY]: string };

/** The request as the identifier budget sees it: one counter key per call. */
function keyedFor(request: FastifyRequest, identifier: string): KeyedRequest {
  return Object.create(request, { [IDENTIFIER_KEY]: { value: identifierKey(identifier) } });
}

/**
 * The Redis connection for shared counters. Commands fail at once while it is down (no offline
 * queue, a short timeout), so a request never waits on Redis; the client reconnects by itself.
 */
function connectRedis(app: FastifyInstance, url: string, warn: (err: unknown) => void): Redis {
  const redis = new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: 500,
    connectTimeout: 2_000,
    lazyConnect: true,
  });
  redis.on('error', warn);
  redis.connect().catch(warn);
  app.addHook('onClose', async () => {
    await redis.quit().catch(() => redis.disconnect());
  });
  return redis;
}

/**
 * Installs the limits on the root instance, before the modules add their routes, and answers those
 * the credential resolvers apply (so call it before installAuthentication). `RATE_LIMITS=off` lifts
 * them all (load tests, a gateway that limits). Counters live in this process's memory, or with
 * `REDIS_URL` in Redis, shared by every node.
 */
export async function installRateLimits(app: FastifyInstance, config: Config): Promise<CredentialLimits> {
  if (!config.rateLimits) return {};
  const warn = throttledWarning(app);
  const redis = config.redisUrl ? connectRedis(app, config.redisUrl, warn) : undefined;

  const perIp = {} as Record<keyof typeof GROUPS, (request: FastifyRequest) => Promise<void>>;
  for (const [group, limit] of Object.entries(GROUPS) as [keyof typeof GROUPS, Limit][]) {
    // The plugin's default key is request.ip (IPv6 grouped by subnet).
    const counters = await budget(app, redis, group, limit);
    perIp[group] = (request) => enforce(counters, request, warn);
  }

  const identifier = await budget(app, redis, 'identifier', {
    ...PER_IDENTIFIER,
    keyGenerator: (request) => (request as KeyedRequest)[IDENTIFIER_KEY],
  });
  const perIdentifier: preHandlerAsyncHookHandler = async (request) => {
    // Every identifier is counted before any refuses: a spent one must not spare the others.
    const refusals: unknown[] = [];
    for (const id of loginIdentifiers(request)) {
      await enforce(identifier, keyedFor(request, id), warn).catch((err: unknown) => refusals.push(err));
    }
    if (refusals.length > 0) throw refusals[0];
  };

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const path = route.url.replace(/\/+$/, '');
    const group = methods.map((method) => CREDENTIAL_ROUTES[`${method} ${path}`]).find((g) => g !== undefined);
    if (!group) return;
    if (group === 'by_grant') {
      // The grant is in the body: counted once it is parsed (JSON or form), before the schema is checked.
      const byGrant = (request: FastifyRequest) => perIp[grantGroup(request)](request);
      route.preValidation = [...toArray(route.preValidation), byGrant];
    } else route.onRequest = [...toArray(route.onRequest), perIp[group]];
    if (group === 'password' || group === 'by_grant') route.preHandler = [...toArray(route.preHandler), perIdentifier];
  });

  const apiKeyFailures = await budget(app, redis, 'api_key_failure', API_KEY_FAILURES);
  return { apiKeyFailures: (request) => enforce(apiKeyFailures, request, warn) };
}

function toArray<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}
