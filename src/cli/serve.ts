import type { Command } from 'commander';
import { main } from '../main.js';

export function registerServeCommands(program: Command): void {
  program
    .command('serve')
    .description('Serve the API, docs and admin console (with the job worker unless --no-worker)')
    .option('--no-worker', 'do not run background jobs in this process (PostgreSQL only)')
    .action(async (options: { worker: boolean }) => {
      await main({ worker: options.worker });
    });
}
