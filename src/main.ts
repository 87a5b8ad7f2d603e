import { ConfigError, loadConfig } from './config.js';
import { DatabaseUnreachableError, DataDirInUseError } from './platform/db/client.js';
import { stopOnSignals } from './platform/shutdown.js';
import { startServer } from './server.js';

/** `npm start`: serve the API with the job worker in this process, stop cleanly on SIGTERM/SIGINT. */
export async function main(options: { worker?: boolean } = {}): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      console.error(`gatehouse: invalid configuration: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  if (options.worker === false && !config.databaseUrl) {
    // No other process can open the embedded database, so its jobs would never run.
    console.error(
      'gatehouse: --no-worker needs DATABASE_URL (PostgreSQL); the embedded database runs its jobs in this process',
    );
    process.exit(2);
  }
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(config, { worker: options.worker ?? true });
  } catch (err) {
    if (err instanceof DataDirInUseError || err instanceof DatabaseUnreachableError) {
      console.error(`gatehouse: ${err.message}`);
      process.exit(1);
    }
    // DATA_DIR is created when the embedded database opens (when MASTER_KEY is given, not before).
    if (err instanceof ConfigError) {
      console.error(`gatehouse: invalid configuration: ${err.message}`);
      process.exit(2);
    }
    throw err;
  }
  server.app.log.info({ address: server.address, database: server.database.kind }, 'gatehouse is serving');
  stopOnSignals(server.app.log, 'gatehouse', () => server.stop());
  void server.database.lost?.then((err) => {
    server.app.log.fatal({ err }, 'the embedded database stopped; exiting');
    process.exit(1);
  });
}

if (import.meta.url === `file://${process.argv[1]}`) {
  // With arguments (`--help`, `apikey list`, `serve --no-worker`…) this file is the `gatehouse`
  // command line rather than a server that ignores them.
  const started =
    process.argv.length > 2 ? import('./cli/index.js').then(({ runCli }) => runCli(process.argv)) : main();
  started.catch((err) => {
    console.error('gatehouse: failed to start:', err instanceof Error ? err.message : err);
    process.exit(1);
  });
}
