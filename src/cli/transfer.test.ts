import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, eq, inArray, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { gatehouse } from '../../test/cli.js';
import { seedOrganization, seedUser } from '../../test/seed.js';
import { startTestApp, type TestApp } from '../../test/test-app.js';
import { activities } from '../modules/activity/activity.table.js';
import { organizations } from '../modules/organizations/organizations.table.js';
import { users } from '../modules/users/users.table.js';
import { type Database, openDatabase } from '../platform/db/client.js';
import { migrate } from '../platform/db/migrate.js';

// Each case runs `gatehouse` as a process (a build, then migrations on a fresh database): slow on a busy machine.
vi.setConfig({ testTimeout: 180_000 });

/** Opens the command line's embedded database, runs `work`, and closes it so a command can open it. */
async function onDatabase<T>(dataDir: string, work: (database: Database) => Promise<T>): Promise<T> {
  const database = await openDatabase({ dataDir });
  try {
    await migrate(database.db);
    return await work(database);
  } finally {
    await database.close();
  }
}

describe('gatehouse export and import on the command line', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-transfer-test-'));
  const file = join(dataDir, '..', `${dataDir.split('/').pop()}-users.ndjson`);
  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(file, { force: true });
  });

  beforeAll(async () => {
    await onDatabase(dataDir, async ({ db }) => {
      const [from] = await db.insert(organizations).values({ code: 'from', name: 'From' }).returning();
      await db.insert(organizations).values([
        { code: 'into', name: 'Into' },
        { code: 'csvinto', name: 'Into from CSV' },
      ]);
      const organizationId = from?.id as string;
      await db.insert(users).values([
        {
          organizationId,
          email: 'ada@example.com',
          username: 'ada',
          firstName: 'Ada',
          attributes: { tv_service: true },
        },
        { organizationId, email: 'bob@example.com', lastName: '=SUM(A1)' },
        { organizationId, email: 'gone@example.com', status: 'deactivated' },
      ]);
    });
  });

  it('exports to a file and imports it into another organization, skipping users already there', async () => {
    const exported = await gatehouse(['export', '--organization', 'from', '--output', file], dataDir);
    expect(exported.stderr).toBe('');
    expect(exported.code).toBe(0);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.map((l) => JSON.parse(l).email)).toEqual(['ada@example.com', 'bob@example.com']);

    const csv = await gatehouse(
      ['export', '--organization', 'from', '--format', 'csv', '--flag', 'tv_service'],
      dataDir,
    );
    expect(csv.code).toBe(0);
    const rows = csv.stdout.trim().split('\r\n');
    expect(rows[0]).toMatch(/^id,username,email,/);
    expect(rows).toHaveLength(2);
    expect(rows[1]).toContain('"ada@example.com"');

    const imported = await gatehouse(['import', '--organization', 'into', '--file', file], dataDir);
    expect(imported.stderr).toBe('');
    expect(imported.code).toBe(0);
    expect(imported.stdout.trim()).toBe('into: 2 users created, 0 skipped (already there), 0 failed');

    const again = await gatehouse(['import', '--organization', 'into', '--file', file], dataDir);
    expect(again.stdout.trim()).toBe('into: 0 users created, 2 skipped (already there), 0 failed');

    await onDatabase(dataDir, async ({ db }) => {
      const [into] = await db.select().from(organizations).where(eq(organizations.code, 'into'));
      const copied = await db
        .select()
        .from(users)
        .where(eq(users.organizationId, into?.id as string))
        .orderBy(users.email);
      expect(copied.map((u) => [u.email, u.username, u.lastName])).toEqual([
        ['ada@example.com', 'ada', ''],
        // A user without a username is exported under the email, and arrives without one again.
        ['bob@example.com', null, '=SUM(A1)'],
      ]);
      expect(copied[0]?.attributes).toEqual({ tv_service: true });
      // The command line's writes are audited, naming it as the actor.
      const created = await db
        .select()
        .from(activities)
        .where(and(eq(activities.activityType, 'user.created'), eq(activities.userId, copied[0]?.id as string)));
      expect(created[0]).toMatchObject({ actorType: 'api_key', apiKeyId: null });
      expect(created[0]?.details).toMatchObject({ via: 'cli:gatehouse' });
      const exports = await db.select().from(activities).where(eq(activities.activityType, 'users.exported'));
      expect(exports).toHaveLength(2);
    });
  });

  it('exports users an older version stored with attributes nested deeper than writes now take, as stored', async () => {
    // Written as SQL, as no command takes it any more: 3000 levels, as the command line once stored.
    const stored = `{"kept":${'{"a":'.repeat(3000)}"bottom"${'}'.repeat(3000)}}`;
    await onDatabase(dataDir, async ({ db }) => {
      const [deep] = await db.insert(organizations).values({ code: 'deepfrom', name: 'Deep' }).returning();
      const organizationId = deep?.id as string;
      await db.insert(users).values([
        { organizationId, email: 'shallow-1@example.com' },
        { organizationId, email: 'deep@example.com' },
        { organizationId, email: 'shallow-2@example.com' },
      ]);
      await db.execute(sql`update users set attributes = ${stored}::jsonb where email = 'deep@example.com'`);
    });
    const exported = await gatehouse(['export', '--organization', 'deepfrom'], dataDir);
    expect(exported.stderr).toBe('');
    expect(exported.code).toBe(0);
    const lines = exported.stdout.trim().split('\n');
    expect(lines.map((l) => JSON.parse(l).email)).toEqual([
      'shallow-1@example.com',
      'deep@example.com',
      'shallow-2@example.com',
    ]);
    // Compared as text: a deep equality recurses further than the stack allows.
    expect(lines[1]?.includes(`"attributes":${stored}`)).toBe(true);
  });

  it('refuses export options the API refuses, and an output it cannot write, in one line', async () => {
    for (const [args, message] of [
      [['--flag', 'bad flag!'], '--flag: '],
      [['--user-type', ''], '--user-type: '],
      [['--output', join(dataDir, 'no-such-dir', 'x.json')], 'cannot write'],
    ] as const) {
      const res = await gatehouse(['export', ...args], dataDir);
      expect(res.code, args.join(' ')).not.toBe(0);
      expect(res.stderr.trim().split('\n')).toHaveLength(1);
      expect(res.stderr).toContain(`gatehouse: export: ${message}`);
    }
  });

  it('imports a CSV export as it imports the JSON one', async () => {
    const csvFile = `${file}.csv`;
    try {
      const exported = await gatehouse(
        ['export', '--organization', 'from', '--format', 'csv', '--include-inactive', '--output', csvFile],
        dataDir,
      );
      expect(exported.code, exported.stderr).toBe(0);
      const imported = await gatehouse(['import', '--organization', 'csvinto', '--file', csvFile], dataDir);
      expect(imported.stderr).toBe('');
      expect(imported.stdout.trim()).toBe('csvinto: 3 users created, 0 skipped (already there), 0 failed');
    } finally {
      rmSync(csvFile, { force: true });
    }
    await onDatabase(dataDir, async ({ db }) => {
      const [into] = await db.select().from(organizations).where(eq(organizations.code, 'csvinto'));
      const copied = await db
        .select()
        .from(users)
        .where(eq(users.organizationId, into?.id as string))
        .orderBy(users.email);
      expect(copied.map((u) => [u.email, u.username, u.firstName, u.lastName, u.status, u.userType])).toEqual([
        ['ada@example.com', 'ada', 'Ada', '', 'active', null],
        ['bob@example.com', null, '', '=SUM(A1)', 'active', null],
        ['gone@example.com', null, '', '', 'deactivated', null],
      ]);
      expect(copied[0]?.attributes).toEqual({ tv_service: true });
    });
  });

  it('reports entries it cannot import, with a non-zero exit, and refuses bad options in one line', async () => {
    const bad = join(dataDir, 'bad.json');
    // Written as text: 1e400 (beyond a double, which JSON.parse reads as Infinity) has no JavaScript value.
    writeFileSync(
      bad,
      '{"users": [{"email": "fine@example.com"}, {"email": "not-an-address"},' +
        ' {"email": "huge@example.com", "attributes": {"n": 1e400}}]}',
    );
    const partial = await gatehouse(['import', '--organization', 'into', '--file', bad, '--dry-run'], dataDir);
    expect(partial.code).toBe(1);
    expect(partial.stdout).toContain('failed #1 not-an-address: validation_failed: email:');
    expect(partial.stdout).toContain('failed #2 huge@example.com: validation_failed: attributes.n: must be a number');
    expect(partial.stdout).toContain('into: 1 users would be created, 0 skipped (already there), 2 failed');

    const both = await gatehouse(['import', '--organization', 'into', '--file', bad, '--from', 'http://x'], dataDir);
    expect(both.code).not.toBe(0);
    expect(both.stderr.trim()).toBe('gatehouse: import: give either --file or --from');

    const unknown = await gatehouse(['import', '--organization', 'nope', '--file', bad], dataDir);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr.trim()).toBe('gatehouse: import: Organization nope was not found.');

    writeFileSync(bad, '{"email": "a@example.com"}\nnot json\n');
    const garbled = await gatehouse(['import', '--organization', 'into', '--file', bad], dataDir);
    expect(garbled.stderr).toContain('line 2: not JSON');
  });

  it('fails a SCIM externalId or external id the file repeats, naming the field, whether or not the entries share a call', async () => {
    await onDatabase(dataDir, ({ db }) => db.insert(organizations).values({ code: 'twice', name: 'Twice' }));
    const twice = join(dataDir, 'twice.ndjson');
    writeFileSync(
      twice,
      [
        { email: 'one@example.com', scim_external_id: 'scim-1', external_id: 'kc-1' },
        { email: 'two@example.com', scim_external_id: 'scim-2' },
        { email: 'three@example.com', scim_external_id: 'scim-1' },
        { email: 'four@example.com', external_id: 'kc-1' },
      ]
        .map((u) => JSON.stringify(u))
        .join('\n'),
    );
    const expectTwiceFailed = (stdout: string) => {
      expect(stdout).toContain(
        'failed #2 three@example.com: duplicate_in_request: scim_external_id: An earlier entry of this import gives the same SCIM externalId.',
      );
      expect(stdout).toContain(
        'failed #3 four@example.com: duplicate_in_request: external_id: An earlier entry of this import gives the same external id.',
      );
    };
    // One call for the whole file, then calls of two entries (the repeats arrive in a later call).
    for (const env of [{}, { BULK_MAX_ITEMS: '2' }] as Record<string, string>[]) {
      const dry = await gatehouse(['import', '--organization', 'twice', '--file', twice, '--dry-run'], dataDir, {
        env,
      });
      expect(dry.code, dry.stderr).toBe(1);
      expectTwiceFailed(dry.stdout);
      expect(dry.stdout).toContain('twice: 2 users would be created, 0 skipped (already there), 2 failed');
    }
    const imported = await gatehouse(['import', '--organization', 'twice', '--file', twice], dataDir, {
      env: { BULK_MAX_ITEMS: '2' },
    });
    expect(imported.code, imported.stderr).toBe(1);
    expectTwiceFailed(imported.stdout);
    expect(imported.stdout).toContain('twice: 2 users created, 0 skipped (already there), 2 failed');
    await onDatabase(dataDir, async ({ db }) => {
      const [org] = await db.select().from(organizations).where(eq(organizations.code, 'twice'));
      const stored = await db
        .select()
        .from(users)
        .where(eq(users.organizationId, org?.id as string))
        .orderBy(users.email);
      expect(stored.map((u) => [u.email, u.scimExternalId])).toEqual([
        ['one@example.com', 'scim-1'],
        ['two@example.com', 'scim-2'],
      ]);
    });
  });

  it("refuses an entry nested beyond the API's limit alone, a file that is not UTF-8 whole, and a URL holding a password", async () => {
    const deep = join(dataDir, 'deep.ndjson');
    let attributes: unknown = 'bottom';
    for (let i = 0; i < 3000; i++) attributes = { a: attributes };
    writeFileSync(
      deep,
      `${JSON.stringify({ email: 'shallow@example.com' })}\n${JSON.stringify({ email: 'deep@example.com', attributes })}\n`,
    );
    const nested = await gatehouse(['import', '--organization', 'into', '--file', deep, '--dry-run'], dataDir);
    expect(nested.code).toBe(1);
    expect(nested.stdout).toMatch(
      /failed #1 deep@example\.com: validation_failed: attributes(\.a)+: must not nest deeper than 64 levels\./,
    );
    expect(nested.stdout).toContain('into: 1 users would be created, 0 skipped (already there), 1 failed');

    const excel = join(dataDir, 'excel.csv');
    writeFileSync(
      excel,
      Buffer.concat([
        Buffer.from('email,first_name\r\n"jurgen@example.com","J'),
        Buffer.from([0xfc, 0x72, 0x22, 0x0d, 0x0a]),
      ]),
    );
    const cp1252 = await gatehouse(['import', '--organization', 'into', '--file', excel], dataDir);
    expect(cp1252.code).not.toBe(0);
    expect(cp1252.stderr.trim()).toBe(
      `gatehouse: import: ${excel}, line 2: holds bytes that are not UTF-8 (save the file as UTF-8).`,
    );
    await onDatabase(dataDir, async ({ db }) => {
      expect(await db.select().from(users).where(eq(users.email, 'jurgen@example.com'))).toEqual([]);
    });

    const secret = await gatehouse(
      ['import', '--organization', 'into', '--from', 'http://admin:Secret-In-Url@127.0.0.1:9/', '--token-env', 'HOME'],
      dataDir,
    );
    expect(secret.code).not.toBe(0);
    expect(secret.stderr).toContain('must not hold a user name or password');
    expect(`${secret.stdout}${secret.stderr}`).not.toContain('Secret-In-Url');
  });

  describe('from a running system, signed in as seed 003 does', () => {
    let source: TestApp;
    let url: string;
    let sourceCode: string;
    beforeAll(async () => {
      source = await startTestApp();
      const org = await seedOrganization(source);
      sourceCode = org.code;
      await seedUser(source, org.id, { username: 'exporter', isStaff: true, password: 'the source password' });
      await seedUser(source, org.id, { email: 'remote@example.com', firstName: 'Remote' });
      await seedUser(source, org.id, { email: 'remote-gone@example.com', status: 'deactivated' });
      url = await source.app.listen({ host: '127.0.0.1', port: 0 });
    });
    afterAll(() => source.close());

    it("logs in with a staff user's password from the environment and imports the export", async () => {
      const env = { SOURCE_PASSWORD: 'the source password' };
      const importAs = (password: string, ...more: string[]) =>
        gatehouse(
          [
            'import',
            '--organization',
            'into',
            '--from',
            url,
            '--username',
            'exporter',
            '--password-env',
            'SOURCE_PASSWORD',
            ...more,
          ],
          dataDir,
          { env: { SOURCE_PASSWORD: password } },
        );
      const res = await importAs(env.SOURCE_PASSWORD);
      expect(res.stderr).toBe('');
      // Every status arrives: the deactivated user as well.
      expect(res.stdout.trim()).toBe('into: 3 users created, 0 skipped (already there), 0 failed');
      await onDatabase(dataDir, async ({ db }) => {
        const [row] = await db.select().from(users).where(eq(users.email, 'remote@example.com'));
        expect(row?.firstName).toBe('Remote');
        const [gone] = await db.select().from(users).where(eq(users.email, 'remote-gone@example.com'));
        expect(gone?.status).toBe('deactivated');
      });
      // One organization of the source, by code.
      const again = await importAs(env.SOURCE_PASSWORD, '--source-organization', sourceCode, '--dry-run');
      expect(again.stdout.trim()).toBe('into: 0 users would be created, 3 skipped (already there), 0 failed');

      const wrong = await importAs('not it at all');
      expect(wrong.code).not.toBe(0);
      expect(wrong.stderr).toMatch(/^gatehouse: import: The source’s login answered 401/);

      // A port nothing listens on any more.
      const probe = createServer();
      await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
      const { port } = probe.address() as AddressInfo;
      await new Promise((resolve) => probe.close(resolve));
      const closed = await gatehouse(
        ['import', '--organization', 'into', '--from', `http://127.0.0.1:${port}`, '--token-env', 'SOURCE_PASSWORD'],
        dataDir,
        { env },
      );
      expect(closed.code).not.toBe(0);
      expect(closed.stderr).toContain('The source’s export failed: ECONNREFUSED');
    });
  });

  describe('from a source whose export is not UTF-8', () => {
    let latin1: Server;
    let url: string;
    beforeAll(async () => {
      latin1 = createHttpServer((_req, res) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        // "Jürgen" as Windows-1252 writes it, after a user that would import on its own.
        res.end(
          Buffer.concat([
            Buffer.from(
              '{"users": [{"email": "latin-ok@example.com"}, {"email": "latin-j@example.com", "first_name": "J',
            ),
            Buffer.from([0xfc]),
            Buffer.from('rgen"}]}'),
          ]),
        );
      });
      await new Promise<void>((resolve) => latin1.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(latin1.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((resolve) => latin1.close(() => resolve())));

    it('refuses the whole answer naming the source, and imports nothing', async () => {
      const res = await gatehouse(
        ['import', '--organization', 'into', '--from', url, '--token-env', 'LATIN1_TOKEN'],
        dataDir,
        { env: { LATIN1_TOKEN: 'token' } },
      );
      expect(res.code).toBe(1);
      expect(res.stderr.trim()).toBe(
        `gatehouse: import: The source’s export (${url}/api/admin/export-users/) answered bytes that are not UTF-8.`,
      );
      expect(res.stdout).toBe('');
      await onDatabase(dataDir, async ({ db }) => {
        const emails = ['latin-ok@example.com', 'latin-j@example.com'];
        expect(await db.select().from(users).where(inArray(users.email, emails))).toEqual([]);
      });
    });
  });

  describe('from a source that echoes what it was sent when it refuses', () => {
    // A quote, a backslash and a letter beyond ASCII: a JSON echo of the request escapes them.
    const password = 'Import-Secret-"PW"\\7788-é';
    const token = 'Import-Secret-Token-"99"\\x';
    // As Python's json.dumps writes JSON by default.
    const asciiOnly = (json: string) =>
      json.replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
    let echo: Server;
    let url: string;
    beforeAll(async () => {
      echo = createHttpServer((req, res) => {
        let body = '';
        req.on('data', (chunk: Buffer) => {
          body += chunk.toString('utf8');
        });
        req.on('end', () => {
          const login = req.url?.startsWith('/api/login/');
          res.writeHead(login ? 400 : 401, { 'content-type': 'application/json' });
          res.end(
            JSON.stringify(
              login
                ? { error: `could not log in with ${asciiOnly(body)} (password ${JSON.parse(body).password})` }
                : { detail: `no user for ${req.headers.authorization}` },
            ),
          );
        });
      });
      await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
      url = `http://127.0.0.1:${(echo.address() as AddressInfo).port}`;
    });
    afterAll(() => new Promise<void>((resolve) => echo.close(() => resolve())));

    it('prints the refusal without the password or token, as sent or JSON-escaped', async () => {
      const secretForms = (secret: string) => [
        secret,
        JSON.stringify(secret).slice(1, -1),
        asciiOnly(JSON.stringify(secret).slice(1, -1)),
      ];
      const byPassword = await gatehouse(
        ['import', '--organization', 'into', '--from', url, '--username', 'staff', '--password-env', 'IMPPW'],
        dataDir,
        { env: { IMPPW: password } },
      );
      expect(byPassword.code).toBe(1);
      expect(byPassword.stderr.trim()).toBe(
        'gatehouse: import: The source’s login answered 400: could not log in with ' +
          '{"username":"staff","password":"[REDACTED]"} (password [REDACTED]).',
      );

      const byToken = await gatehouse(
        ['import', '--organization', 'into', '--from', url, '--token-env', 'IMPTOKEN'],
        dataDir,
        {
          env: { IMPTOKEN: token },
        },
      );
      expect(byToken.code).toBe(1);
      expect(byToken.stderr.trim()).toBe(
        'gatehouse: import: The source’s export answered 401: no user for Bearer [REDACTED].',
      );
      for (const secret of [...secretForms(password), ...secretForms(token)]) {
        expect(byPassword.stderr + byPassword.stdout + byToken.stderr + byToken.stdout).not.toContain(secret);
      }
    });
  });
});
