import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { and, eq } from 'drizzle-orm';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { gatehouse } from '../../test/cli.js';
import { activities } from '../modules/activity/activity.table.js';
import { organizations } from '../modules/organizations/organizations.table.js';
import { openDatabase } from '../platform/db/client.js';
import { migrate } from '../platform/db/migrate.js';

// Each case runs `gatehouse` as a process (a build, then migrations on a fresh database): slow on a busy machine.
vi.setConfig({ testTimeout: 180_000 });

describe('gatehouse createsuperuser on the command line', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-createsuperuser-test-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
  const args = ['createsuperuser', '--email', 'root@example.com', '--password', 'Quartz-Lantern-9417'];

  it('refuses a username the API refuses, in one line, and creates the superuser with a good one', async () => {
    const refused = await gatehouse([...args, '--username', 'bad name'], dataDir);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim()).toBe(
      "gatehouse: createsuperuser: --username: Use letters, digits and _ . @ + - ' # only.",
    );

    const created = await gatehouse([...args, '--username', 'root.admin'], dataDir);
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    expect(created.stdout).toMatch(/^created superuser root@example\.com \(/);

    // The command line is its actor, as on every write a command makes as the platform operator.
    const id = /\(([0-9a-f-]{36})\)/.exec(created.stdout)?.[1] as string;
    const database = await openDatabase({ dataDir });
    try {
      const recorded = await database.db
        .select()
        .from(activities)
        .where(and(eq(activities.activityType, 'user.created'), eq(activities.userId, id)));
      expect(recorded).toEqual([
        expect.objectContaining({
          category: 'user_management',
          severity: 'warning',
          actorType: 'api_key',
          apiKeyId: null,
          objectType: 'user',
          objectId: id,
          details: expect.objectContaining({ source: 'createsuperuser', via: 'cli:gatehouse', is_superuser: true }),
        }),
      ]);
    } finally {
      await database.close();
    }
  });

  it('refuses a deactivated organization, whose users cannot sign in, in one line', async () => {
    const database = await openDatabase({ dataDir });
    try {
      await migrate(database.db);
      await database.db.insert(organizations).values({ code: 'closed', name: 'Closed', isActive: false });
    } finally {
      await database.close();
    }
    const refused = await gatehouse(
      [
        'createsuperuser',
        '--email',
        'other@example.com',
        '--password',
        'Quartz-Lantern-9417',
        '--organization',
        'closed',
      ],
      dataDir,
    );
    expect(refused.code).toBe(1);
    expect(refused.stderr.trim()).toBe('gatehouse: createsuperuser: organization: "closed" is deactivated.');
  });
});
