import { maxHeaderSize } from 'node:http';
import cookie from '@fastify/cookie';
import cors from '@fastify/cors';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, LogController } from 'fastify';
import type { Config } from './config.js';
import { accountRoutes } from './modules/account/account.routes.js';
import { activityRoutes } from './modules/activity/activity.routes.js';
import { installRequestTracking } from './modules/activity/request-tracking.js';
import { adminConsoleRoutes } from './modules/admin-console/admin-console.routes.js';
import { apiKeysRoutes } from './modules/api-keys/api-keys.routes.js';
import { createApiKeyResolver } from './modules/api-keys/api-keys.service.js';
import { authRoutes } from './modules/auth/auth.routes.js';
import { createBearerResolver } from './modules/auth/auth.service.js';
import { cookieAuthRoutes } from './modules/cookie-auth/cookie-auth.routes.js';
import { createCookieResolver, installCsrfCookieRenewal } from './modules/cookie-auth/cookie-auth.service.js';
import { downstreamSyncRoutes } from './modules/downstream-sync/downstream-sync.routes.js';
import { healthRoutes } from './modules/health/health.routes.js';
import { integrationsRoutes } from './modules/integrations/integrations.routes.js';
import { lockoutRoutes } from './modules/lockout/lockout.routes.js';
import { mailOutboxRoutes } from './modules/mail-outbox/mail-outbox.routes.js';
import { mfaRoutes } from './modules/mfa/mfa.routes.js';
import { convertLegacyRecoveryCodes } from './modules/mfa/mfa.service.js';
import { organizationsRoutes } from './modules/organizations/organizations.routes.js';
import { provisioningRoutes } from './modules/provisioning/provisioning.routes.js';
import { accessRoutes } from './modules/rbac/access.routes.js';
import { catalogRoutes } from './modules/rbac/catalog.routes.js';
import { createPermissionCheck } from './modules/rbac/effective-access.js';
import { rolesRoutes } from './modules/rbac/roles.routes.js';
import { scimDocumentOf, scimRoutes, sendScimError } from './modules/scim/scim.routes.js';
import { sessionsRoutes } from './modules/sessions/sessions.routes.js';
import { signingKeysRoutes } from './modules/signing-keys/signing-keys.routes.js';
import { SigningKeyStore } from './modules/signing-keys/signing-keys.service.js';
import { userTransferRoutes } from './modules/user-transfer/user-transfer.routes.js';
import { userTypesRoutes } from './modules/user-types/user-types.routes.js';
import { usersRoutes } from './modules/users/users.routes.js';
import { envelopeFor } from './platform/crypto/envelope.js';
import type { Database } from './platform/db/client.js';
import { installAuthentication } from './platform/http/auth.js';
import { installBodyLimit } from './platform/http/body-limit.js';
import {
  answerClientError,
  installErrorHandling,
  refuseOtherMethodsOnFixedPaths,
  routerRefusal,
  sendProblem,
} from './platform/http/errors.js';
import { installJsonBodies } from './platform/http/json-body.js';
import { registerOpenApi } from './platform/http/openapi.js';
import { installPageSizeCap } from './platform/http/pagination.js';
import { installQueryStringCheck, parseQueryString } from './platform/http/query-string.js';
import { installRateLimits } from './platform/http/rate-limits.js';
import { installRequestContext } from './platform/http/request-context.js';
import { corsOptions, headersBeforeRouting, installSecurityHeaders } from './platform/http/security-headers.js';
import { installTextGuard } from './platform/http/text-guard.js';
import { validatorCompiler } from './platform/http/validation.js';
import { startInvalidationListener } from './platform/invalidation.js';
import { installJobs } from './platform/jobs/pgboss.js';
import { installRequestLogging, loggerOptions } from './platform/log.js';
import { registerMetrics } from './platform/metrics.js';
import { createOutageLog } from './platform/outage-log.js';

declare module 'fastify' {
  interface FastifyInstance {
    config: Config;
    database: Database;
  }
}

export interface BuildAppOptions {
  config: Config;
  database: Database;
  /** Request logging; tests turn it off, or send it to a stream they read. */
  logger?: boolean | { stream: NodeJS.WritableStream };
}

/** Assembles the HTTP application: platform plugins first, then every module. */
export async function buildApp({ config, database, logger = true }: BuildAppOptions): Promise<FastifyInstance> {
  const earlyHeaders = headersBeforeRouting(config.corsOrigins);
  const app = Fastify({
    logger: logger ? loggerOptions(config.logLevel, logger === true ? undefined : logger.stream) : false,
    // Fastify's two lines per request are replaced by installRequestLogging's one.
    logController: new LogController({ disableRequestLogging: true }),
    // A hop count is valid at run time (proxy-addr) though Fastify's types omit it.
    trustProxy: config.trustProxy as boolean | string[],
    bodyLimit: config.bodyLimitBytes,
    routerOptions: {
      ignoreTrailingSlash: true,
      // A path parameter as long as any request line Node's parser takes: a longer one than a route's
      // schema allows then reaches that schema, whose refusal names the parameter (the router's own
      // refusal cannot). No route has a regular-expression parameter for the bound to protect.
      maxParamLength: maxHeaderSize,
      // A query parameter that does not decode is refused (installQueryStringCheck), not read as its raw text.
      querystringParser: parseQueryString,
    },
    // Our own ids in logs; a caller's X-Request-Id is not trusted as a log key.
    genReqId: () => crypto.randomUUID(),
    // Refusals made before any route's error handler runs, in the formats of the contract.
    // No hook runs for these: they add the headers the hooks would have.
    frameworkErrors: (err, request, reply) => {
      reply.headers(earlyHeaders(request.headers.origin));
      return request.url.startsWith('/scim/')
        ? sendScimError(request, reply, routerRefusal(err))
        : sendProblem(reply, request, routerRefusal(err));
    },
    clientErrorHandler: (err, socket) =>
      answerClientError(
        err,
        socket,
        (target, error) => (target.startsWith('/scim/') ? scimDocumentOf(error) : undefined),
        earlyHeaders,
      ),
  }).withTypeProvider<TypeBoxTypeProvider>();

  // Bodies are JSON: a text/plain one is refused with 415 like any other type, not read as a string.
  app.removeContentTypeParser('text/plain');
  installJsonBodies(app);
  app.setValidatorCompiler(validatorCompiler);
  app.decorate('config', config);
  app.decorate('database', database);
  // pg-boss's schema and a queue per registered handler, in every process: enqueueing needs them
  // whether or not this process runs the worker.
  await installJobs(database);
  const methodAnswers = { preflight: config.corsOrigins.length > 0, ownMethodAnswers: ['/scim/'] };
  const allowedMethods = installErrorHandling(app, methodAnswers);
  if (logger) installRequestLogging(app);
  // First of the onRequest hooks: a refusal by any later one carries the same headers as a 404.
  installSecurityHeaders(app);
  await app.register(cors, corsOptions(config.corsOrigins));
  installBodyLimit(app);
  installQueryStringCheck(app);
  installTextGuard(app);
  installPageSizeCap(app);

  await registerOpenApi(app, config);
  registerMetrics(app);
  installRequestTracking(app, database);

  const invalidation = await startInvalidationListener(
    database,
    createOutageLog(app.log, 'invalidation listener', (err) => app.log.warn({ err }, 'invalidation listener')),
  );
  const signingKeysLog = createOutageLog(app.log, 'signing keys', (err) => app.log.error({ err }, 'signing keys'));
  const signingKeys = await SigningKeyStore.open(
    database.db,
    config,
    (err) => signingKeysLog.failed(err),
    () => signingKeysLog.succeeded(),
  );
  // Before any request: from here on no recovery code is stored in the earlier unkeyed form.
  await convertLegacyRecoveryCodes(database.db, envelopeFor(config));
  app.addHook('onClose', async () => {
    signingKeys.close();
    await invalidation.close();
  });
  await app.register(cookie);
  refuseOtherMethodsOnFixedPaths(app, allowedMethods, methodAnswers);
  const credentialLimits = await installRateLimits(app, config);
  installAuthentication(
    app,
    {
      keys: [createApiKeyResolver(database.db, config, credentialLimits.apiKeyFailures)],
      users: [createBearerResolver({ db: database.db, keys: signingKeys, config }), createCookieResolver(database.db)],
    },
    createPermissionCheck(database.db),
  );
  installCsrfCookieRenewal(app, config);
  installRequestContext(app);

  await app.register(healthRoutes);
  await app.register(organizationsRoutes);
  await app.register(signingKeysRoutes, { keys: signingKeys });
  await app.register(authRoutes, { keys: signingKeys });
  await app.register(mfaRoutes, { keys: signingKeys });
  await app.register(usersRoutes);
  await app.register(sessionsRoutes);
  await app.register(lockoutRoutes);
  await app.register(cookieAuthRoutes, { keys: signingKeys });
  await app.register(accountRoutes);
  await app.register(userTypesRoutes);
  await app.register(catalogRoutes);
  await app.register(rolesRoutes);
  await app.register(accessRoutes);
  await app.register(apiKeysRoutes);
  await app.register(scimRoutes, { prefix: '/scim/v2' });
  await app.register(activityRoutes);
  await app.register(provisioningRoutes);
  await app.register(userTransferRoutes);
  await app.register(integrationsRoutes);
  await app.register(downstreamSyncRoutes);
  await app.register(mailOutboxRoutes);
  await app.register(adminConsoleRoutes);

  return app;
}
