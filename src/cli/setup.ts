import type { Command } from 'commander';
import { isUserFacingError } from '../modules/auth/auth.service.js';
import { applyUserTypeTemplate, TEMPLATES } from '../modules/user-types/user-types.service.js';
import { fail, withDatabase } from './context.js';

export function registerSetupCommand(program: Command): void {
  program
    .command('setup')
    .description('Create a built-in set of global user types; safe to run again (existing types are kept)')
    .requiredOption('--template <name>', `template to apply: ${Object.keys(TEMPLATES).join(', ')}`)
    .action(async (options: { template: string }) => {
      let refusal: string | undefined;
      await withDatabase(async (database) => {
        try {
          const { created, unchanged } = await applyUserTypeTemplate(database.db, options.template);
          if (created.length > 0) console.log(`setup ${options.template}: created user types ${created.join(', ')}`);
          if (unchanged.length > 0)
            console.log(`setup ${options.template}: already present, unchanged: ${unchanged.join(', ')}`);
          if (created.length === 0) console.log(`setup ${options.template}: nothing to do`);
        } catch (err) {
          if (!isUserFacingError(err)) throw err;
          refusal = err.errors?.map((e) => `${e.field}: ${e.message}`).join('; ') || err.message;
        }
      });
      if (refusal) fail(`setup: ${refusal}`);
    });
}
