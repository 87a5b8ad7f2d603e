import type { FastifyInstance, FastifyPluginAsync } from 'fastify';
import { buildApp } from './app.js';
import { type Config, ConfigError } from './config.js';
import { bootstrapInstallation } from './modules/auth/auth.service.js';
import { type Database, openDatabase } from './platform/db/client.js';
import { startEmbeddedVacuum } from './platform/db/embedded-vacuum.js';
import { migrate } from './platform/db/migrate.js';
import { type JobWorker, startJobs } from './platform/jobs/worker.js';

export interface RunningServer {
  app: FastifyInstance;
  database: Database;
  address: string;
  /** The job worker running in this process, when `options.worker` asked for one. */
  worker: JobWorker | undefined;
  /** Stops accepting, finishes in-flight requests, stops the worker, closes the database. */
  stop(): Promise<void>;
}

export interface StartServerOptions {
  /** Run the job worker in this process (`npm start` does); enqueueing works either way. */
  worker?: boolean;
  logger?: boolean;
  /** Extra routes registered after the product's own (load tests add probes this way). */
  plugins?: FastifyPluginAsync[];
}

/** Opens the database, applies migrations, builds the app, starts the job worker if asked, and listens. */
export async function startServer(config: Config, options: StartServerOptions = {}): Promise<RunningServer> {
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    await migrate(database.db);
    // The default organization, a signing key, and the ADMIN_EMAIL superuser when none exists yet.
    const admin = await bootstrapInstallation(database.db, config);
    const app = await buildApp({ config, database, logger: options.logger ?? true });
    for (const plugin of options.plugins ?? []) await app.register(plugin);
    if (admin) app.log.info({ userId: admin.id }, 'created the first superuser from ADMIN_EMAIL');
    const worker = options.worker ? await startJobs(database, { config, log: app.log }) : undefined;
    // PGlite has no autovacuum; PostgreSQL servers vacuum themselves.
    const vacuum = database.pglite ? startEmbeddedVacuum(database.pglite, app.log) : undefined;
    let address: string;
    try {
      address = await app.listen({ port: config.port, host: config.host });
    } catch (err) {
      await vacuum?.stop();
      await worker?.stop();
      await app.close();
      throw listenError(err, config) ?? err;
    }
    let stopping: Promise<void> | undefined;
    return {
      app,
      database,
      address,
      worker,
      stop: () => {
        stopping ??= (async () => {
          // Requests and running jobs finish side by side; both need the database until they are done.
          await Promise.all([app.close(), worker?.stop(), vacuum?.stop()]);
          await database.close();
        })();
        return stopping;
      },
    };
  } catch (err) {
    await database.close();
    throw err;
  }
}

/** A failure to listen that HOST or PORT explains, as the configuration error naming it. */
function listenError(err: unknown, config: Config): ConfigError | undefined {
  const where = `${config.host}:${config.port}`;
  switch ((err as NodeJS.ErrnoException).code) {
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
    case 'EAI_NONAME':
      return new ConfigError('HOST', `cannot resolve "${config.host}"`);
    case 'EADDRNOTAVAIL':
      return new ConfigError('HOST', `${config.host} is not an address of this machine`);
    case 'EADDRINUSE':
      return new ConfigError('PORT', `${where} is already in use`);
    case 'EACCES':
      return new ConfigError('PORT', `no permission to listen on ${where}`);
    default:
      return undefined;
  }
}
