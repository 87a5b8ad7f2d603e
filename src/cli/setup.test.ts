import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { gatehouse } from '../../test/cli.js';
import { loginAs, seedOrganization, seedUser } from '../../test/seed.js';
import { startTestApp, type TestApp, testConfig } from '../../test/test-app.js';
import { buildApp } from '../app.js';
import { activities } from '../modules/activity/activity.table.js';
import { applyUserTypeTemplate } from '../modules/user-types/user-types.service.js';
import { userTypes } from '../modules/user-types/user-types.table.js';
import { openDatabase } from '../platform/db/client.js';

// Each case runs `gatehouse` as a process (a build, then migrations on a fresh database): slow on a busy machine.
vi.setConfig({ testTimeout: 180_000 });

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');

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

describe('gatehouse setup --file on the command line', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-setup-file-test-'));
  const work = mkdtempSync(join(tmpdir(), 'gatehouse-setup-file-work-'));
  copyFileSync(join(ROOT, 'examples/rbac.yaml'), join(work, 'rbac.yaml'));
  afterAll(() => {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(work, { recursive: true, force: true });
  });

  it('prints the plan on --dry-run, applies it, then has nothing to change', { timeout: 180_000 }, async () => {
    const dry = await gatehouse(['setup', '--file', 'rbac.yaml', '--dry-run'], dataDir, { cwd: work });
    expect(dry.stderr).toBe('');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('  create module PID\n');
    expect(dry.stdout).toContain(
      '  create role engineer (global): permissions +pfd.view +pid.create +pid.view; modules +PFD +PID\n',
    );
    expect(dry.stdout).toContain(
      'setup rbac.yaml: would create 20, update 0, leave 0 unchanged (dry run, nothing written)',
    );

    const applied = await gatehouse(['setup', '--file', 'rbac.yaml'], dataDir, { cwd: work });
    expect(applied.stderr).toBe('');
    expect(applied.code).toBe(0);
    expect(applied.stdout).toContain('  created permission qhse.delete\n');
    expect(applied.stdout).toContain('setup rbac.yaml: created 20, updated 0, 0 unchanged');

    const again = await gatehouse(['setup', '--file', 'rbac.yaml'], dataDir, { cwd: work });
    expect(again.code).toBe(0);
    expect(again.stdout).toBe('setup rbac.yaml: nothing to change (20 objects already as described)\n');
  });

  it('records the audit event of each object it creates or changes, naming the command line', async () => {
    const auditDir = mkdtempSync(join(tmpdir(), 'gatehouse-setup-audit-test-'));
    const events = async () => {
      const database = await openDatabase({ dataDir: auditDir });
      try {
        return await database.db.select().from(activities).where(eq(activities.kind, 'audit')).orderBy(activities.id);
      } finally {
        await database.close();
      }
    };
    try {
      const applied = await gatehouse(['setup', '--file', 'rbac.yaml'], auditDir, { cwd: work });
      expect(applied.stderr).toBe('');
      const created = await events();
      const count = (type: string) => created.filter((e) => e.activityType === type).length;
      expect([
        count('organization.created'),
        count('module.created'),
        count('permission.created'),
        count('role.created'),
      ]).toEqual([1, 3, 12, 4]);
      for (const event of created) {
        expect(event).toMatchObject({ actorType: 'api_key', actorId: null, apiKeyId: null });
        expect(event.details).toMatchObject({ via: 'cli:gatehouse' });
      }
      const engineer = created.find((e) => e.activityType === 'role.created' && e.details.code === 'engineer');
      expect(engineer?.details).toMatchObject({
        level: 4,
        permissions: ['pfd.view', 'pid.create', 'pid.view'],
        modules: ['PFD', 'PID'],
      });

      writeFileSync(
        join(work, 'changed.yaml'),
        'modules:\n  - {code: PID, name: P&ID Analysis}\n' +
          'roles:\n  - {code: engineer, name: Engineer, level: 4, permissions: [pid.view], modules: [PID, PFD]}\n',
      );
      const changed = await gatehouse(['setup', '--file', 'changed.yaml'], auditDir, { cwd: work });
      expect(changed.stderr).toBe('');
      const after = (await events()).filter((e) => !created.some((c) => c.id === e.id));
      expect(after.map((e) => e.activityType)).toEqual(['module.updated', 'role.grants_changed']);
      expect(after[0]?.details).toMatchObject({
        code: 'PID',
        fields: ['name'],
        changes: [{ field: 'name', from: 'PID Analysis', to: 'P&ID Analysis' }],
        via: 'cli:gatehouse',
      });
      expect(after[1]?.details).toMatchObject({
        fields: ['permissions'],
        permissions: { from: ['pfd.view', 'pid.create', 'pid.view'], to: ['pid.view'] },
        via: 'cli:gatehouse',
      });

      const again = await gatehouse(['setup', '--file', 'changed.yaml'], auditDir, { cwd: work });
      expect(again.code).toBe(0);
      expect(await events()).toHaveLength(created.length + after.length);
    } finally {
      rmSync(auditDir, { recursive: true, force: true });
    }
  });

  it('refuses a bad file with one line per problem on stderr and a non-zero exit', async () => {
    writeFileSync(
      join(work, 'bad.yaml'),
      'roles:\n  - code: engineer\n    name: Engineer\n    level: four\n    colour: blue\n',
    );
    const bad = await gatehouse(['setup', '--file', 'bad.yaml'], dataDir, { cwd: work });
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr.split('\n')).toEqual([
      'bad.yaml:4:12 roles[0].level: must be an integer',
      'bad.yaml:5:5 roles[0].colour: unknown key (expected one of: code, name, level, organization, description, permissions, modules)',
      'gatehouse: setup: bad.yaml refused (2 problems), nothing written',
      '',
    ]);
  });

  it('reports the unknown references of the valid entries in the same run as the malformed ones', async () => {
    writeFileSync(
      join(work, 'mixed.yaml'),
      [
        'modules:',
        '  - {code: FINE, name: Fine}',
        '  - {code: BAD, name: Bad, order: lots}',
        'permissions:',
        '  - {code: x.view, module: NOPE, name: View}',
        '  - {code: bad.view, module: BAD, name: View}',
        'roles:',
        '  - {code: r1, name: R1, level: 5, organization: NOWHERE, permissions: [pid.nope, bad.view]}',
        '  - {code: r2, name: R2, level: high, organization: ALSO_NOWHERE}',
        '',
      ].join('\n'),
    );
    const refused = await gatehouse(['setup', '--file', 'mixed.yaml'], dataDir, { cwd: work });
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    // A reference to an entry refused for its own problem (BAD, bad.view) is not reported again, nor
    // are the references of a refused entry (r2's organization).
    expect(refused.stderr.split('\n')).toEqual([
      'mixed.yaml:3:35 modules[1].order: must be an integer',
      'mixed.yaml:5:28 permissions[0].module: unknown module NOPE (neither in this file nor in the database)',
      'mixed.yaml:8:50 roles[0].organization: unknown organization NOWHERE (neither in this file nor in the database)',
      'mixed.yaml:8:73 roles[0].permissions[0]: unknown permission pid.nope (neither in this file nor in the database)',
      'mixed.yaml:9:33 roles[1].level: must be an integer',
      'gatehouse: setup: mixed.yaml refused (5 problems), nothing written',
      '',
    ]);
  });

  it('wants exactly one of --template and --file', async () => {
    for (const args of [['setup'], ['setup', '--template', 'school', '--file', 'rbac.yaml']]) {
      const res = await gatehouse(args, dataDir, { cwd: work });
      expect(res.code).toBe(1);
      expect(res.stderr).toBe('gatehouse: setup: give exactly one of --template <name> or --file <path>\n');
    }
  });
});
