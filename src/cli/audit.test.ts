import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { gatehouse } from '../../test/cli.js';
import { recordAudit } from '../modules/activity/audit.js';
import { openDatabase } from '../platform/db/client.js';
import { migrate } from '../platform/db/migrate.js';

// Each case runs `gatehouse` as a process (a build, then migrations on a fresh database): slow on a busy machine.
vi.setConfig({ testTimeout: 180_000 });

async function withDb(dataDir: string, work: (db: Awaited<ReturnType<typeof openDatabase>>['db']) => Promise<void>) {
  const database = await openDatabase({ dataDir });
  try {
    await migrate(database.db);
    await work(database.db);
  } finally {
    await database.close();
  }
}

describe('gatehouse audit on the command line', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-audit-test-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('seals, verifies, and names the seal whose rows were edited after sealing', async () => {
    await withDb(dataDir, async (db) => {
      for (let i = 0; i < 3; i++) {
        await recordAudit(db, {
          type: 'user.created',
          category: 'user_management',
          organizationId: null,
          description: `u${i}`,
        });
      }
    });
    const sealed = await gatehouse(['audit', 'seal'], dataDir);
    expect(sealed.stderr).toBe('');
    expect(sealed.stdout).toMatch(/^seal \d+: 3 event\(s\), hash [0-9a-f]{64}$/m);
    const verified = await gatehouse(['audit', 'verify'], dataDir);
    expect(verified.code).toBe(0);
    expect(verified.stdout).toContain('audit trail intact: 1 seal(s), 3 event(s)');
    const latest = /^latest seal: (\d+:[0-9a-f]{64})$/m.exec(verified.stdout)?.[1];
    expect(latest).toBeDefined();
    expect((await gatehouse(['audit', 'verify', '--expect', latest as string], dataDir)).code).toBe(0);
    const unknown = await gatehouse(['audit', 'verify', '--expect', `99:${'a'.repeat(64)}`], dataDir);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(
      /audit trail broken in seal 99: chain broken — seal 99 with hash a+ is not in the chain/,
    );
    const malformed = await gatehouse(['audit', 'verify', '--expect', 'latest'], dataDir);
    expect(malformed).toMatchObject({ code: 2, stderr: expect.stringContaining('--expect takes <seal id>:<hash>') });

    await withDb(dataDir, async (db) => {
      await db.execute(sql`update activities set success = false where description = 'u1'`);
    });
    const broken = await gatehouse(['audit', 'verify'], dataDir);
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/audit trail broken in seal \d+ .*rows edited after sealing/);
  });

  it('names a seal marked expired while its events are within retention, with their rows edited or deleted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-audit-expired-'));
    try {
      await withDb(dir, async (db) => {
        for (const description of ['kept', 'changed']) {
          await recordAudit(db, {
            type: 'user.created',
            category: 'user_management',
            organizationId: null,
            description,
          });
        }
      });
      expect((await gatehouse(['audit', 'seal'], dir)).code).toBe(0);
      const latest = /^latest seal: (\d+:[0-9a-f]{64})$/m.exec((await gatehouse(['audit', 'verify'], dir)).stdout)?.[1];
      expect(latest).toBeDefined();

      await withDb(dir, async (db) => {
        await db.execute(sql`update audit_seals set rows_expired = true`);
        await db.execute(sql`update activities set description = 'forged' where description = 'changed'`);
      });
      const edited = await gatehouse(['audit', 'verify'], dir);
      expect(edited.code).toBe(1);
      expect(edited.stderr).toMatch(/audit trail broken in seal 1 .*seal altered — seal 1 is marked expired/);

      await withDb(dir, async (db) => {
        await db.execute(sql`delete from activities where kind = 'audit'`);
      });
      const deleted = await gatehouse(['audit', 'verify', '--expect', latest as string], dir);
      expect(deleted.code).toBe(1);
      expect(deleted.stderr).toMatch(/audit trail broken in seal 1 .*seal altered/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
