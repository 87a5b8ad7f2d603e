import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { Readable, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Command } from 'commander';
import { recordAudit } from '../modules/activity/audit.js';
import { findOrganizationByCode } from '../modules/organizations/organizations.queries.js';
import { usersOfFile, usersOfRemoteExport } from '../modules/user-transfer/import-sources.js';
import { scimFilterOf } from '../modules/user-transfer/user-export.queries.js';
import { type ExportFormat, exportDocument } from '../modules/user-transfer/user-export.stream.js';
import {
  type ImportReport,
  type ImportResult,
  importUsers,
  newImportClaims,
} from '../modules/user-transfer/user-import.js';
import { ExportUsersQuery } from '../modules/user-transfer/user-transfer.schemas.js';
import type { Db } from '../platform/db/client.js';
import { commonErrors } from '../platform/http/errors.js';
import { COMMAND_LINE, checkOptions, fail, runRefusing } from './context.js';

async function organizationIdOf(db: Db, code: string): Promise<string> {
  const organization = await findOrganizationByCode(db, code);
  if (!organization) throw commonErrors.notFound(`Organization ${code}`);
  return organization.id;
}

interface ExportOptions {
  organization?: string;
  format: string;
  filter?: string;
  userType?: string;
  flag?: string;
  includeInactive?: boolean;
  output?: string;
}

interface ImportOptions {
  organization: string;
  file?: string;
  from?: string;
  username?: string;
  passwordEnv?: string;
  tokenEnv?: string;
  sourceOrganization?: string;
  dryRun?: boolean;
  sendInvite?: boolean;
}

const FORMATS: ExportFormat[] = ['json', 'csv', 'ndjson'];

function describe(result: ImportResult): string {
  if (result.action === 'created') return '';
  const fields = result.errors?.map((e) => `${e.field}: ${e.message}`).join('; ');
  return `${result.action} #${result.index} ${result.email ?? '(no email)'}: ${result.code}: ${fields || result.error}`;
}

/** Reads the secret an option names from the environment, so it never shows in a process list. */
function secretFrom(variable: string | undefined, option: string): string | undefined {
  if (variable === undefined) return undefined;
  const value = process.env[variable];
  if (value === undefined) fail(`import: ${option} names ${variable}, which is not set`);
  return value;
}

/** A file to export into, open; a path that cannot be written ends the command with one line. */
async function openOutput(path: string): Promise<Writable> {
  const file = createWriteStream(path);
  try {
    await once(file, 'open');
  } catch (err) {
    fail(`export: cannot write ${path}: ${(err as Error).message}`);
  }
  return file;
}

export function registerTransferCommands(program: Command): void {
  program
    .command('export')
    .description(
      'Export users as seed 003’s export endpoint gives them (active users, in the order they were created here)',
    )
    .option('--organization <code>', 'only this organization (default: every organization)')
    .option('--format <format>', `${FORMATS.join(', ')}`, 'ndjson')
    .option('--filter <expression>', 'a SCIM filter over the users, e.g. \'title eq "Teacher"\'')
    .option('--user-type <code>', 'only users of this type')
    .option('--flag <attribute>', 'only users whose attribute of this name is true (e.g. tv_service)')
    .option('--include-inactive', 'also deactivated, suspended and locked users')
    .option('--output <file>', 'write to this file instead of standard output')
    .action(async (options: ExportOptions) => {
      if (!FORMATS.includes(options.format as ExportFormat))
        fail(`export: --format must be one of ${FORMATS.join(', ')}`);
      const format = options.format as ExportFormat;
      checkOptions('export', ExportUsersQuery, {
        filter: options.filter,
        user_type: options.userType,
        flag: options.flag,
      });
      // The file is opened before anything is read or recorded: a path that cannot be written is one line.
      const out: Writable = options.output ? await openOutput(options.output) : process.stdout;
      let readerLeft = false;
      await runRefusing('export', async (db) => {
        const organizationId = options.organization ? await organizationIdOf(db, options.organization) : undefined;
        const scim = options.filter === undefined ? undefined : scimFilterOf(options.filter);
        await recordAudit(db, {
          type: 'users.exported',
          category: 'user_management',
          organizationId: organizationId ?? null,
          description: `Users exported as ${format} on the command line`,
          details: { format, filter: options.filter ?? null, source: 'command line' },
          tags: ['export'],
        });
        const filter = {
          organizationId,
          scim,
          userType: options.userType,
          flag: options.flag,
          includeInactive: options.includeInactive === true,
        };
        const document = Readable.from(exportDocument(db, filter, format), { objectMode: false });
        try {
          // Standard output stays open for whatever the process writes next; a file is closed.
          await pipeline(document, out, { end: Boolean(options.output) });
        } catch (err) {
          if (out !== process.stdout || (err as NodeJS.ErrnoException).code !== 'EPIPE') throw err;
          // The reader of standard output left (`gatehouse export | head`): nobody wants the rest.
          readerLeft = true;
        }
      });
      // Then end as a Unix tool ends on SIGPIPE (`yes | head -1`): no message, and the status a
      // shell shows for that signal, 128 + 13, so that `set -o pipefail` scripts see it alike.
      if (readerLeft) process.exit(141);
    });

  program
    .command('import')
    .description('Create users exported by another system in one organization; users it already has are skipped')
    .requiredOption('--organization <code>', 'the organization to import into')
    .option('--file <path>', 'an export: its JSON answer, a JSON array of users, NDJSON, or CSV')
    .option('--from <url>', 'a running system to take its export from (seed 003’s /api/admin/export-users/)')
    .option('--username <name>', 'with --from: a staff user of the source, signed in as seed 003 does')
    .option('--password-env <variable>', 'with --username: the environment variable holding the password')
    .option('--token-env <variable>', 'with --from: the environment variable holding a Bearer token instead')
    .option('--source-organization <code>', 'with --from: only this organization of the source (a Gatehouse source)')
    .option('--dry-run', 'report what would happen and write nothing')
    .option('--send-invite', 'mail each created active user an invitation to set a password')
    .action(async (options: ImportOptions) => {
      if ((options.file === undefined) === (options.from === undefined)) fail('import: give either --file or --from');
      const password = secretFrom(options.passwordEnv, '--password-env');
      const token = secretFrom(options.tokenEnv, '--token-env');
      let report: ImportReport | undefined;
      await runRefusing('import', async (db, config) => {
        await organizationIdOf(db, options.organization);
        const users = options.file
          ? await usersOfFile(options.file)
          : await usersOfRemoteExport({
              url: options.from as string,
              username: options.username,
              password,
              token,
              ...(options.sourceOrganization !== undefined ? { organization: options.sourceOrganization } : {}),
            });
        const total: ImportReport = { created: 0, skipped: 0, failed: 0, results: [] };
        // One import however many calls it takes: an entry repeating an earlier call's user fails alike.
        const claims = newImportClaims();
        // In calls of the size the HTTP import takes, each in its own transaction.
        for (let start = 0; start < users.length; start += config.bulkMaxItems) {
          const part = await importUsers(db, COMMAND_LINE, users.slice(start, start + config.bulkMaxItems), {
            organization: options.organization,
            dryRun: options.dryRun,
            sendInvite: options.sendInvite,
            config,
            source: options.from ? `import from ${new URL(options.from).origin}` : 'import from a file',
            claims,
          });
          total.created += part.created;
          total.skipped += part.skipped;
          total.failed += part.failed;
          for (const result of part.results) total.results.push({ ...result, index: result.index + start });
        }
        report = total;
      });
      if (!report) return;
      for (const result of report.results) if (result.action === 'failed') console.log(describe(result));
      const verb = options.dryRun ? 'would be created' : 'created';
      console.log(
        `${options.organization}: ${report.created} users ${verb}, ${report.skipped} skipped (already there), ${report.failed} failed`,
      );
      if (report.failed > 0) process.exitCode = 1;
    });
}
