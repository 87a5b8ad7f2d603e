import type { Command } from 'commander';
import { migrate } from '../platform/db/migrate.js';
import { withDatabase } from './context.js';

export function registerMigrateCommand(program: Command): void {
  program
    .command('migrate')
    .description('Apply pending database migrations and exit (start-up also applies them)')
    .action(async () => {
      await withDatabase(
        async (database) => {
          const applied = await migrate(database.db);
          console.log(applied.length === 0 ? 'migrations: up to date' : `migrations: applied ${applied.join(', ')}`);
        },
        { migrate: false },
      );
    });
}
