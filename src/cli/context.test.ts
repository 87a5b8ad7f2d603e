import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { gatehouse, gatehouseIntoHead } from '../../test/cli.js';
import { organizations } from '../modules/organizations/organizations.table.js';
import { users } from '../modules/users/users.table.js';
import { openDatabase } from '../platform/db/client.js';
import { migrate } from '../platform/db/migrate.js';

// Each case runs `gatehouse` as a process (a build, then migrations on a fresh database): slow on a busy machine.
vi.setConfig({ testTimeout: 300_000 });

/** A loopback port with nothing listening: connecting to it is refused at once. */
async function closedPort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as AddressInfo;
  await new Promise<void>((resolve) => probe.close(() => resolve()));
  return port;
}

describe('the command line', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-cli-test-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('says in one line, without the password, that the database cannot be reached, for every command that opens it', async () => {
    const port = await closedPort();
    const env = {
      DATABASE_URL: `postgres://u:Db-Secret-pw-5521@127.0.0.1:${port}/db`,
      MASTER_KEY: randomBytes(32).toString('base64'),
      PORT: '0',
      HOST: '127.0.0.1',
    };
    for (const args of [['keys', 'list'], ['migrate'], ['export'], ['worker'], ['serve']]) {
      const res = await gatehouse(args, dataDir, { env });
      const command = args.join(' ');
      expect(res.code, command).toBe(1);
      expect(res.stderr.trim().split('\n'), command).toEqual([
        `gatehouse: cannot connect to the database at 127.0.0.1:${port}/db: connect ECONNREFUSED 127.0.0.1:${port}`,
      ]);
      expect(res.stdout + res.stderr, command).not.toContain('Db-Secret-pw-5521');
    }
  });

  it('reports a database error after opening in one line, with its SQLSTATE and no stack trace', async () => {
    const broken = join(dataDir, 'broken');
    const database = await openDatabase({ dataDir: broken });
    try {
      await migrate(database.db);
      // A table gone from under the migrations: every command that reads it fails at its first query.
      await database.db.execute(sql`drop table api_keys cascade`);
    } finally {
      await database.close();
    }
    const masterKey = randomBytes(32).toString('base64');
    const res = await gatehouse(['apikey', 'list'], broken, { env: { MASTER_KEY: masterKey } });
    expect(res.code).toBe(1);
    expect(res.stderr.trim().split('\n')).toEqual([
      'gatehouse: database error 42P01: relation "api_keys" does not exist',
    ]);
    expect(res.stdout + res.stderr).not.toContain(masterKey);

    // Asked for, the stack follows the line.
    const debug = await gatehouse(['apikey', 'list'], broken, { env: { LOG_LEVEL: 'debug' } });
    expect(debug.code).toBe(1);
    expect(debug.stderr).toMatch(/\n\s+at /);
    expect(debug.stderr.trim().split('\n').at(-1)).toBe(
      'gatehouse: database error 42P01: relation "api_keys" does not exist',
    );
  });

  it('ends an export quietly when the reader of its output leaves, with the status of a broken pipe', async () => {
    // More than a pipe holds (64 KiB on Linux), so the export is still writing when the reader leaves.
    const database = await openDatabase({ dataDir });
    try {
      await migrate(database.db);
      const [org] = await database.db.insert(organizations).values({ code: 'many', name: 'Many' }).returning();
      const rows = Array.from({ length: 3000 }, (_, i) => ({
        organizationId: org?.id as string,
        email: `user-${i}@example.com`,
        firstName: `User number ${i}`,
      }));
      for (let i = 0; i < rows.length; i += 500) await database.db.insert(users).values(rows.slice(i, i + 500));
    } finally {
      await database.close();
    }

    const res = await gatehouseIntoHead(['export', '--organization', 'many'], dataDir);
    // What `yes | head -c 1` does: killed by SIGPIPE, which a shell reports as 128 + 13, and says nothing.
    expect(res).toMatchObject({ code: 141, stderr: '' });

    // The embedded database was closed on the way out: the next command opens it.
    const after = await gatehouse(['keys', 'list'], dataDir);
    expect(after).toMatchObject({ code: 0, stderr: '' });
  });
});
