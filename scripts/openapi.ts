// `npm run openapi`: writes the OpenAPI document generated from the route schemas to
// docs/openapi.json, so API changes show up in review. A test fails when the two disagree.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { openDatabase } from '../src/platform/db/client.js';
import { migrate } from '../src/platform/db/migrate.js';

export const OPENAPI_FILE = join(import.meta.dirname, '../docs/openapi.json');

/** The document as served, with the server URL fixed so it does not depend on the environment. */
export async function generateOpenApi(): Promise<string> {
  const database = await openDatabase({});
  try {
    await migrate(database.db);
    const config = loadConfig({ MASTER_KEY: Buffer.alloc(32).toString('base64'), PUBLIC_URL: 'http://127.0.0.1:8080' });
    const app = await buildApp({ config, database, logger: false });
    await app.ready();
    const document = app.swagger();
    await app.close();
    return `${JSON.stringify(document, null, 2)}\n`;
  } finally {
    await database.close();
  }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  writeFileSync(OPENAPI_FILE, await generateOpenApi());
  console.log(`openapi: wrote ${OPENAPI_FILE}`);
}
