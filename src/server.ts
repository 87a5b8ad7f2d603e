import type { FastifyInstance } from 'fastify';
import { buildApp } from './app.js';
import type { Config } from './config.js';
import { bootstrapInstallation } from './modules/auth/auth.service.js';
import { type Database, openDatabase } from './platform/db/client.js';
import { migrate } from './platform/db/migrate.js';

export interface RunningServer {
  app: FastifyInstance;
  database: Database;
  address: string;
  /** Stops accepting, finishes in-flight requests, stops the worker, closes the database. */
  stop(): Promise<void>;
}

export interface StartServerOptions {
  worker?: boolean;
  logger?: boolean;
}

/** Opens the database, applies migrations, builds the app and listens. */
export async function startServer(config: Config, options: StartServerOptions = {}): Promise<RunningServer> {
  const database = await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir });
  try {
    await migrate(database.db);
    // The default organization, a signing key, and the ADMIN_EMAIL superuser when none exists yet.
    const admin = await bootstrapInstallation(database.db, config);
    const app = await buildApp({ config, database, logger: options.logger ?? true });
    if (admin) app.log.info({ userId: admin.id }, 'created the first superuser from ADMIN_EMAIL');
    const address = await app.listen({ port: config.port, host: config.host });
    let stopping: Promise<void> | undefined;
    return {
      app,
      database,
      address,
      stop: () => {
        stopping ??= (async () => {
          await app.close();
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
