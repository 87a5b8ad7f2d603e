import { Type } from '@sinclair/typebox';
import type { Command } from 'commander';
import { apiKeyErrors } from '../modules/api-keys/api-keys.errors.js';
import { type ApiKeyWithOrganization, listApiKeys } from '../modules/api-keys/api-keys.queries.js';
import { API_KEY_SCOPES, ApiKeyName } from '../modules/api-keys/api-keys.schemas.js';
import { createApiKey, type KeyManager, OPERATOR, revokeApiKey } from '../modules/api-keys/api-keys.service.js';
import { findOrganizationByCode } from '../modules/organizations/organizations.queries.js';
import type { Db } from '../platform/db/client.js';
import { parseDateTime } from '../platform/http/date-time.js';
import { toPage } from '../platform/http/pagination.js';
import { COMMAND_LINE, checkOptions, fail, runRefusing } from './context.js';

// Unbounded as the operator is, and named in the audit events as the command line.
const OPERATOR_ON_COMMAND_LINE: KeyManager = { ...OPERATOR, actor: COMMAND_LINE };

const run = (command: string, work: (db: Db) => Promise<void>) => runRefusing(`apikey ${command}`, work);

function status(key: ApiKeyWithOrganization, now: Date): string {
  if (key.revokedAt) return `revoked ${key.revokedAt.toISOString()}`;
  if (key.expiresAt && key.expiresAt <= now) return `expired ${key.expiresAt.toISOString()}`;
  return key.expiresAt ? `active until ${key.expiresAt.toISOString()}` : 'active';
}

interface CreateOptions {
  name: string;
  organization?: string;
  platform?: boolean;
  scope: string[];
  expiresAt?: string;
}

export function registerApiKeyCommands(program: Command): void {
  const apikey = program.command('apikey').description('Manage API keys for provisioning, SCIM and other machines');

  apikey
    .command('create')
    .description('Create an API key and print it once (only its hash is stored)')
    .requiredOption('--name <name>', 'what the key is for')
    .option('--organization <code>', 'the organization the key acts in')
    .option('--platform', 'a platform-wide key, acting across organizations')
    .option(
      '--scope <scope>',
      `a scope to grant (repeat for more): ${API_KEY_SCOPES.join(', ')}`,
      (value: string, previous: string[]) => [...previous, value],
      [] as string[],
    )
    .option('--expires-at <iso>', 'when the key stops working (ISO 8601)')
    .action(async (options: CreateOptions) => {
      checkOptions('apikey create', Type.Object({ name: ApiKeyName }), { name: options.name });
      if ((options.organization === undefined) === (options.platform !== true)) {
        fail('apikey create: give either --organization <code> or --platform');
      }
      let expiresAt: Date | undefined;
      if (options.expiresAt !== undefined) {
        // Read as the API reads `expires_at`: a real calendar date and time with its offset, years 0001 to 9999.
        expiresAt = parseDateTime(options.expiresAt);
        if (expiresAt === undefined) {
          fail(`apikey create: --expires-at "${options.expiresAt}" is not a date and time (e.g. 2030-01-31T12:00:00Z)`);
        }
      }
      await run('create', async (db) => {
        const { apiKey, key } = await createApiKey(db, OPERATOR_ON_COMMAND_LINE, {
          name: options.name,
          organization: options.platform ? null : options.organization,
          scopes: options.scope,
          expires_at: expiresAt,
        });
        console.log(`key: ${key}`);
        console.log(`id: ${apiKey.id}`);
        console.log(`prefix: ${apiKey.prefix}`);
        console.log(`organization: ${apiKey.organizationCode ?? '(platform-wide)'}`);
        console.log(`scopes: ${apiKey.scopes.join(', ')}`);
        console.log('The key is shown only now; store it safely.');
      });
    });

  apikey
    .command('list')
    .description('List API keys, newest first (never the keys themselves)')
    .option('--organization <code>', 'only keys of this organization')
    .action(async (options: { organization?: string }) => {
      await run('list', async (db) => {
        let organizationId: string | undefined;
        if (options.organization !== undefined) {
          const org = await findOrganizationByCode(db, options.organization);
          if (!org) throw apiKeyErrors.organizationNotFound(options.organization);
          organizationId = org.id;
        }
        const now = new Date();
        let cursor: string | undefined;
        let count = 0;
        do {
          const page = toPage(await listApiKeys(db, { organizationId, limit: 500, cursor }), 500, (k) => [k.id]);
          for (const k of page.results) {
            count++;
            console.log(
              [
                k.id,
                `${k.prefix}…`,
                k.name,
                k.organizationCode ?? '(platform-wide)',
                k.scopes.join(','),
                status(k, now),
                `last used ${k.lastUsedAt?.toISOString() ?? 'never'}`,
              ].join('  '),
            );
          }
          cursor = page.next ?? undefined;
        } while (cursor);
        if (count === 0) console.log('no API keys');
      });
    });

  apikey
    .command('revoke')
    .description('Revoke an API key; it stops working at once')
    .argument('<id>', 'the key id (see apikey list)')
    .action(async (id: string) => {
      await run('revoke', async (db) => {
        await revokeApiKey(db, OPERATOR_ON_COMMAND_LINE, id);
        console.log(`revoked ${id}`);
      });
    });
}
