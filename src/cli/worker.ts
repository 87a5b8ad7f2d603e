import type { Command } from 'commander';
import Fastify from 'fastify';
// Loading the app's module graph registers every module's job handlers, exactly as in `serve`.
import '../app.js';
import { migrate } from '../platform/db/migrate.js';
import { installJobs } from '../platform/jobs/pgboss.js';
import { startJobs } from '../platform/jobs/worker.js';
import { loggerOptions } from '../platform/log.js';
import { stopOnSignals } from '../platform/shutdown.js';
import { cliConfig, fail, openCliDatabase } from './context.js';

/** `gatehouse worker`: runs background jobs only, beside `serve --no-worker` nodes on one PostgreSQL. */
async function runWorker(): Promise<void> {
  const config = cliConfig();
  if (!config.databaseUrl) {
    fail(
      'worker needs DATABASE_URL (PostgreSQL); with the embedded database, `gatehouse serve` runs the jobs itself',
      2,
    );
  }
  // An HTTP-less Fastify instance only for its logger: the same pino setup and redaction as `serve`.
  const logger = Fastify({ logger: loggerOptions(config.logLevel) });
  const database = await openCliDatabase(config, { poolSize: 5 });
  let worker: Awaited<ReturnType<typeof startJobs>>;
  try {
    await migrate(database.db);
    await installJobs(database);
    worker = await startJobs(database, { config, log: logger.log });
  } catch (err) {
    await database.close();
    throw err;
  }
  logger.log.info({ queues: worker.queues }, 'gatehouse worker is running');

  const running = worker;
  stopOnSignals(logger.log, 'worker', async () => {
    await running.stop();
    await database.close();
    await logger.close();
  });
}

export function registerWorkerCommand(program: Command): void {
  program
    .command('worker')
    .description('Run only the background-job worker (PostgreSQL only; pair with `serve --no-worker`)')
    .action(runWorker);
}
