import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { isUserFacingError } from '../modules/auth/auth.service.js';
import { applySetupFile } from '../modules/rbac/setup-file.apply.js';
import { describePlan, planSetupFile, withReferenceProblems } from '../modules/rbac/setup-file.js';
import { parseSetupFile, type SetupFile, SetupFileError } from '../modules/rbac/setup-file.parse.js';
import { applyUserTypeTemplate, TEMPLATES } from '../modules/user-types/user-types.service.js';
import { COMMAND_LINE, fail, withDatabase } from './context.js';

interface SetupOptions {
  template?: string;
  file?: string;
  dryRun?: boolean;
}

export function registerSetupCommand(program: Command): void {
  program
    .command('setup')
    .description(
      'Apply a built-in template of global user types, or an RBAC setup file (organizations, modules, ' +
        'permissions, roles); both are safe to run again',
    )
    .option('--template <name>', `template to apply: ${Object.keys(TEMPLATES).join(', ')}`)
    .option('--file <path>', 'RBAC setup file (YAML or JSON) to apply; see examples/rbac.yaml')
    .option('--dry-run', 'with --file: print what would change and write nothing')
    .action(async (options: SetupOptions) => {
      if ((options.template === undefined) === (options.file === undefined))
        fail('setup: give exactly one of --template <name> or --file <path>');
      if (options.file !== undefined) return setupFromFile(options.file, options.dryRun === true);
      if (options.dryRun) fail('setup: --dry-run goes with --file');
      return setupFromTemplate(options.template as string);
    });
}

async function setupFromTemplate(template: string): Promise<void> {
  let refusal: string | undefined;
  await withDatabase(async (database) => {
    try {
      const { created, unchanged } = await applyUserTypeTemplate(database.db, template);
      if (created.length > 0) console.log(`setup ${template}: created user types ${created.join(', ')}`);
      if (unchanged.length > 0) console.log(`setup ${template}: already present, unchanged: ${unchanged.join(', ')}`);
      if (created.length === 0) console.log(`setup ${template}: nothing to do`);
    } catch (err) {
      if (!isUserFacingError(err)) throw err;
      refusal = err.errors?.map((e) => `${e.field}: ${e.message}`).join('; ') || err.message;
    }
  });
  if (refusal) fail(`setup: ${refusal}`);
}

/** Checks the whole file first (shape, then references against the database); a bad file writes nothing. */
async function setupFromFile(path: string, dryRun: boolean): Promise<void> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    fail(`setup: cannot read ${path}: ${(err as Error).message}`);
  }
  let refused: SetupFileError | undefined;
  let file: SetupFile | undefined;
  try {
    file = parseSetupFile(text, path);
  } catch (err) {
    if (!(err instanceof SetupFileError)) throw err;
    refused = err;
  }
  // A malformed file still has its well-formed entries' references checked, so one run reports all.
  if (file || refused?.validPart) {
    await withDatabase(async (database) => {
      if (!file) {
        refused = await withReferenceProblems(database.db, refused as SetupFileError);
        return;
      }
      try {
        const plan = dryRun
          ? await planSetupFile(database.db, file)
          : await applySetupFile(database.db, file, COMMAND_LINE);
        for (const line of describePlan(plan, dryRun ? 'dry-run' : 'applied')) console.log(line);
      } catch (err) {
        if (!(err instanceof SetupFileError)) throw err;
        refused = err;
      }
    });
  }
  if (refused) {
    for (const line of refused.lines()) console.error(line);
    const count = refused.problems.length;
    fail(`setup: ${path} refused (${count} problem${count === 1 ? '' : 's'}), nothing written`);
  }
}
