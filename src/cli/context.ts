import type { TObject } from '@sinclair/typebox';
import { type Config, ConfigError, loadConfig } from '../config.js';
import { COMMAND_LINE_KEY_ID } from '../modules/api-keys/env-key.js';
import {
  type Database,
  DatabaseUnreachableError,
  DataDirInUseError,
  type Db,
  openDatabase,
} from '../platform/db/client.js';
import { migrate } from '../platform/db/migrate.js';
import type { Actor } from '../platform/http/auth.js';
import { AppError, fieldErrorsFromValidation } from '../platform/http/errors.js';
import { validatorCompiler } from '../platform/http/validation.js';
import { withoutSecrets } from '../platform/secret-text.js';

/**
 * Who writes when a command writes as the platform operator (`import`, `setup --file`): its audit
 * events name the command line (`via: cli:gatehouse`), where none of the API's callers can be.
 */
export const COMMAND_LINE: Actor = {
  kind: 'api_key',
  apiKeyId: COMMAND_LINE_KEY_ID,
  organizationId: null,
  scopes: [],
  ceilingUserId: null,
};

/** Prints one line and exits: the CLI's answer to a bad configuration or a busy data folder. */
export function fail(message: string, code = 1): never {
  console.error(`gatehouse: ${message}`);
  process.exit(code);
}

/**
 * The answer to an error no command expected (a database error after opening it, a bug): one line
 * naming it, with a database error's SQLSTATE, never a password of DATABASE_URL or the MASTER_KEY.
 * The stack trace follows only with LOG_LEVEL=debug or trace.
 */
export function failUnexpected(err: unknown): never {
  const e = err as { stack?: unknown };
  // The query builder wraps a server error in one that quotes the query and its parameters: the
  // server's own error, further down the causes, says what went wrong without them.
  const cause = databaseErrorIn(err);
  const message = cause
    ? String(cause.message)
    : err instanceof Error && err.message !== ''
      ? err.message
      : String(err);
  const sqlState = cause?.code;
  const secrets = [process.env.MASTER_KEY, ...passwordsOf(process.env.DATABASE_URL)];
  if (/^(debug|trace)$/.test(process.env.LOG_LEVEL ?? '') && typeof e.stack === 'string') {
    console.error(withoutSecrets(e.stack, secrets));
  }
  fail(withoutSecrets(sqlState ? `database error ${sqlState}: ${message}` : message, secrets));
}

/** The server's error among `err` and its causes: both drivers give theirs a severity and a SQLSTATE code. */
function databaseErrorIn(err: unknown): { message: unknown; code: string } | undefined {
  for (let e = err as { message?: unknown; code?: unknown; severity?: unknown; cause?: unknown } | undefined; e; ) {
    if (typeof e.severity === 'string' && typeof e.code === 'string') return { message: e.message, code: e.code };
    e = typeof e.cause === 'object' && e.cause !== null ? (e.cause as typeof e) : undefined;
  }
  return undefined;
}

function passwordsOf(databaseUrl: string | undefined): string[] {
  if (!databaseUrl) return [];
  try {
    const { password } = new URL(databaseUrl);
    return [password, decodeURIComponent(password)];
  } catch {
    return [];
  }
}

/**
 * Checks options against the schema the HTTP route takes them with (as a query string, so `--x 3`
 * reads as the route's number), so that the command line refuses what the API refuses; a refusal
 * names the options (`user_type` → `--user-type`) in one line. Options absent from `values` are not
 * given.
 */
export function checkOptions(command: string, schema: TObject, values: Record<string, unknown>): void {
  const given = Object.fromEntries(Object.entries(values).filter(([, value]) => value !== undefined));
  const validate = validatorCompiler({ schema, httpPart: 'querystring', method: 'GET', url: command }) as ((
    data: unknown,
  ) => boolean) & { errors?: Parameters<typeof fieldErrorsFromValidation>[0] | null };
  if (validate(given)) return;
  const errors = fieldErrorsFromValidation(validate.errors ?? [], 'querystring');
  fail(`${command}: ${errors.map((e) => `--${e.field.replaceAll('_', '-')}: ${e.message}`).join('; ')}`);
}

export function cliConfig(): Config {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) fail(`invalid configuration: ${err.message}`, 2);
    throw err;
  }
}

/**
 * Opens the configured database for a command. What stops it from opening is reported in one line:
 * an embedded database held by a running server (instead of waiting), a PostgreSQL server that
 * cannot be reached (named without the password of DATABASE_URL).
 */
export async function openCliDatabase(config: Config, options: { poolSize?: number } = {}): Promise<Database> {
  try {
    return await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, ...options });
  } catch (err) {
    if (err instanceof DataDirInUseError || err instanceof DatabaseUnreachableError) fail(err.message);
    if (err instanceof ConfigError) fail(`invalid configuration: ${err.message}`, 2);
    throw err;
  }
}

/** Runs `work` against the configured database (migrated first) and closes it. */
export async function withDatabase<T>(
  work: (database: Database, config: Config) => Promise<T>,
  options: { migrate?: boolean } = {},
): Promise<T> {
  const config = cliConfig();
  const database = await openCliDatabase(config);
  try {
    if (options.migrate !== false) await migrate(database.db);
    return await work(database, config);
  } finally {
    await database.close();
  }
}

/**
 * Runs `work` on the database; a refusal (an AppError) is printed as one line, after the database
 * is closed, prefixed with the command, and exits non-zero.
 */
export async function runRefusing(command: string, work: (db: Db, config: Config) => Promise<void>): Promise<void> {
  let refusal: string | undefined;
  await withDatabase(async (database, config) => {
    try {
      await work(database.db, config);
    } catch (err) {
      if (!(err instanceof AppError)) throw err;
      refusal = err.errors?.map((e) => `${e.field}: ${e.message}`).join('; ') || err.message;
    }
  });
  if (refusal) fail(`${command}: ${refusal}`);
}
