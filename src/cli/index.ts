import { Command } from 'commander';
import { registerApiKeyCommands } from './apikey.js';
import { registerAuditCommands } from './audit.js';
import { failUnexpected } from './context.js';
import { registerCreateSuperuserCommand } from './createsuperuser.js';
import { registerKeysCommands } from './keys.js';
import { registerMigrateCommand } from './migrate.js';
import { registerResealCommand } from './reseal.js';
import { registerServeCommands } from './serve.js';
import { registerSetupCommand } from './setup.js';
import { registerSyncCommand } from './sync.js';
import { registerTransferCommands } from './transfer.js';
import { registerWorkerCommand } from './worker.js';

/** The `gatehouse` command line; each command calls the same services as the HTTP routes. */
export function buildCli(): Command {
  const program = new Command('gatehouse')
    .description('Gatehouse: multi-tenant user management and provisioning')
    .showHelpAfterError()
    .configureOutput({ outputError: (str, write) => write(str) });
  registerServeCommands(program);
  registerMigrateCommand(program);
  registerWorkerCommand(program);
  registerKeysCommands(program);
  registerCreateSuperuserCommand(program);
  registerSetupCommand(program);
  registerApiKeyCommands(program);
  registerAuditCommands(program);
  registerTransferCommands(program);
  registerSyncCommand(program);
  registerResealCommand(program);
  return program;
}

export async function runCli(argv: string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (err) {
    failUnexpected(err);
  }
}
