import { randomBytes, randomUUID } from 'node:crypto';
import type { FastifyInstance, FastifyPluginAsync, InjectOptions, LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { buildApp } from '../src/app.js';
import { type Config, loadConfig } from '../src/config.js';
import { type Database, openDatabase } from '../src/platform/db/client.js';
import { dropDatabase } from '../src/platform/db/drop-database.js';
import { migrate } from '../src/platform/db/migrate.js';

/**
 * A fresh database per test file: in-memory PGlite by default; with TEST_DATABASE_URL, a new
 * database created on that server and dropped at close.
 */
export async function openTestDatabase(): Promise<{ database: Database; url?: string; drop(): Promise<void> }> {
  const serverUrl = process.env.TEST_DATABASE_URL;
  if (!serverUrl) {
    const database = await openDatabase({});
    await migrate(database.db);
    return { database, drop: () => database.close() };
  }
  const name = `gatehouse_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const database = await openDatabase({ databaseUrl: url.toString(), poolSize: 10 });
  await migrate(database.db);
  return {
    database,
    url: url.toString(),
    drop: async () => {
      await database.close();
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      try {
        await dropDatabase(client, name);
      } finally {
        await client.end();
      }
    },
  };
}

export function testConfig(overrides: Record<string, string> = {}): Config {
  return loadConfig({
    MASTER_KEY: randomBytes(32).toString('base64'),
    DATA_DIR: '/nonexistent-test-data-dir',
    PUBLIC_URL: 'http://gatehouse.test',
    RATE_LIMITS: 'off',
    ...overrides,
  });
}

export interface TestApp {
  app: FastifyInstance;
  database: Database;
  config: Config;
  request(options: InjectOptions): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export async function startTestApp(
  envOverrides: Record<string, string> = {},
  options: { logStream?: NodeJS.WritableStream; plugins?: FastifyPluginAsync[] } = {},
): Promise<TestApp> {
  const { database, drop } = await openTestDatabase();
  const config = testConfig(envOverrides);
  const app = await buildApp({ config, database, logger: options.logStream ? { stream: options.logStream } : false });
  // Probe routes a test adds beside the product's own.
  for (const plugin of options.plugins ?? []) await app.register(plugin);
  await app.ready();
  return {
    app,
    database,
    config,
    request: (options) => app.inject(options),
    close: async () => {
      await app.close();
      await drop();
    },
  };
}

/** A short unique suffix so every test's organizations and users are its own. */
export function unique(prefix = 't'): string {
  return `${prefix}${randomUUID().slice(0, 8)}`;
}
