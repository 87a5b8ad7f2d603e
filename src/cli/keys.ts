import type { Command } from 'commander';
import { listAllSigningKeys } from '../modules/signing-keys/signing-keys.queries.js';
import { rotateSigningKey } from '../modules/signing-keys/signing-keys.service.js';
import { COMMAND_LINE, withDatabase } from './context.js';

function keyStatus(key: { retiredAt: Date | null; publishUntil: Date | null }, now: Date): string {
  if (!key.retiredAt) return 'active';
  if (key.publishUntil && key.publishUntil > now) return `retired, in JWKS until ${key.publishUntil.toISOString()}`;
  return 'retired';
}

export function registerKeysCommands(program: Command): void {
  const keys = program.command('keys').description('Manage the keys that sign access tokens');

  keys
    .command('list')
    .description('List signing keys, newest first')
    .action(async () => {
      await withDatabase(async (database) => {
        const now = new Date();
        const all = await listAllSigningKeys(database.db);
        if (all.length === 0) console.log('no signing keys yet (the server creates one when it starts)');
        for (const key of all) {
          console.log(`${key.kid}  ${key.algorithm}  created ${key.createdAt.toISOString()}  ${keyStatus(key, now)}`);
        }
      });
    });

  keys
    .command('rotate')
    .description('Make a new signing key active; the old one stays in the JWKS until the tokens it signed expire')
    .action(async () => {
      await withDatabase(async (database, config) => {
        const result = await rotateSigningKey(database.db, config, COMMAND_LINE);
        console.log(`active signing key: ${result.kid}`);
        for (const old of result.retired)
          console.log(`retired ${old.kid} (in JWKS until ${old.publishUntil.toISOString()})`);
      });
    });
}
