import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loginAs, seedOrganization, seedUser } from '../../test/seed.js';
import { startTestApp, type TestApp, testConfig } from '../../test/test-app.js';
import { buildApp } from '../app.js';
import { applyUserTypeTemplate } from '../modules/user-types/user-types.service.js';
import { userTypes } from '../modules/user-types/user-types.table.js';
import { openDatabase } from '../platform/db/client.js';

const BIN = join(dirname(fileURLToPath(import.meta.url)), '../../bin/gatehouse.js');

function gatehouse(args: string[], dataDir: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const env: NodeJS.ProcessEnv = { ...process.env, DATA_DIR: dataDir };
  delete env.DATABASE_URL;
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr });
    });
  });
}

describe('setup --template school', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('creates student, staff and admin types once; a second run changes nothing', async () => {
    expect(await applyUserTypeTemplate(t.database.db, 'school')).toEqual({
      created: ['student', 'staff', 'admin'],
      unchanged: [],
    });
    const before = await t.database.db.select().from(userTypes);
    expect(await applyUserTypeTemplate(t.database.db, 'school')).toEqual({
      created: [],
      unchanged: ['student', 'staff', 'admin'],
    });
    expect(await t.database.db.select().from(userTypes)).toEqual(before);
    expect(before.map((r) => r.plural).sort()).toEqual(['admins', 'staff', 'students']);
  });

  it('refuses an unknown template naming the field', async () => {
    await expect(applyUserTypeTemplate(t.database.db, 'zoo')).rejects.toMatchObject({
      status: 400,
      errors: [{ field: 'template' }],
    });
  });
});

describe('gatehouse setup on the command line', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-setup-test-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('applies the template, says so the second time, and /api/v1/users/students/ then works', async () => {
    const first = await gatehouse(['setup', '--template', 'school'], dataDir);
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    expect(first.stdout).toContain('created user types student, staff, admin');
    const second = await gatehouse(['setup', '--template', 'school'], dataDir);
    expect(second.code).toBe(0);
    expect(second.stdout).toContain('nothing to do');

    const database = await openDatabase({ dataDir });
    const config = testConfig({ DATA_DIR: dataDir });
    const app = await buildApp({ config, database, logger: false });
    await app.ready();
    try {
      const local: TestApp = {
        app,
        database,
        config,
        request: (o) => app.inject(o),
        close: async () => {},
      };
      const org = await seedOrganization(local);
      const admin = await loginAs(local, await seedUser(local, org.id, { isSuperuser: true, isStaff: true }));
      const created = await admin.post('/api/v1/users/students/', {
        email: 'pupil@example.com',
        profile: { student_id: 'S-1', grade: 7, session_year: '2025-2026', gender: 'female' },
      });
      expect(created.statusCode).toBe(201);
      const list = await admin.get('/api/v1/users/students/?profile.grade=7');
      expect(list.json().results).toHaveLength(1);
      const bad = await admin.post('/api/v1/users/students/', { email: 'p2@example.com', profile: { gender: 'x' } });
      expect(bad.json().errors[0].field).toBe('profile.gender');
    } finally {
      await app.close();
      await database.close();
    }
  });
});
