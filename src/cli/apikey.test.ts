import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { gatehouse } from '../../test/cli.js';
import { apiKeys } from '../modules/api-keys/api-keys.table.js';
import { sha256Hex } from '../platform/crypto/tokens.js';
import { openDatabase, queryRows } from '../platform/db/client.js';

// Each case runs `gatehouse` as a process (a build, then migrations on a fresh database): slow on a busy machine.
vi.setConfig({ testTimeout: 180_000 });

describe('gatehouse apikey on the command line', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-apikey-test-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('creates a key printed once, lists it without the key, and revokes it', async () => {
    const created = await gatehouse(
      ['apikey', 'create', '--name', 'HR feed', '--platform', '--scope', 'provisioning', '--scope', 'read:users'],
      dataDir,
    );
    expect(created.stderr).toBe('');
    expect(created.code).toBe(0);
    const key = /^key: (gh_\S+)$/m.exec(created.stdout)?.[1] as string;
    const id = /^id: (\S+)$/m.exec(created.stdout)?.[1] as string;
    expect(key).toMatch(/^gh_[A-Za-z0-9_-]{43}$/);
    expect(created.stdout).toContain(`prefix: ${key.slice(0, 12)}`);

    const listed = await gatehouse(['apikey', 'list'], dataDir);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toContain(id);
    expect(listed.stdout).toContain('provisioning,read:users');
    expect(listed.stdout).toContain('active');
    expect(listed.stdout).not.toContain(key);

    const revoked = await gatehouse(['apikey', 'revoke', id], dataDir);
    expect(revoked.code).toBe(0);
    expect((await gatehouse(['apikey', 'list'], dataDir)).stdout).toMatch(new RegExp(`${id}.*revoked`));

    const database = await openDatabase({ dataDir });
    try {
      const [row] = await database.db.select().from(apiKeys);
      expect(row).toMatchObject({ id, keyHash: sha256Hex(key), scopes: ['provisioning', 'read:users'] });
      expect(row?.revokedAt).toBeInstanceOf(Date);
      const events = await queryRows<{
        activity_type: string;
        actor_type: string;
        api_key_id: string | null;
        details: Record<string, unknown>;
      }>(
        database.db,
        sql`select activity_type, actor_type, api_key_id, details from activities
          where activity_type like 'api_key.%' order by timestamp, id`,
      );
      expect(events.map((e) => e.activity_type)).toEqual(['api_key.created', 'api_key.revoked']);
      for (const event of events) {
        expect(event).toMatchObject({ actor_type: 'api_key', api_key_id: null });
        expect(event.details).toMatchObject({ via: 'cli:gatehouse' });
      }
    } finally {
      await database.close();
    }
  });

  it('records a signing-key rotation with the command line as its actor, never the key itself', async () => {
    const rotated = await gatehouse(['keys', 'rotate'], dataDir);
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    const kid = /^active signing key: (\S+)$/m.exec(rotated.stdout)?.[1] as string;

    const database = await openDatabase({ dataDir });
    try {
      const events = await queryRows<{
        actor_type: string;
        object_id: string | null;
        details: Record<string, unknown>;
      }>(
        database.db,
        sql`select actor_type, object_id, details from activities where activity_type = 'signing_key.rotated'`,
      );
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ actor_type: 'api_key', object_id: kid });
      expect(events[0]?.details).toMatchObject({ via: 'cli:gatehouse', kid });
      expect(JSON.stringify(events[0]?.details)).not.toMatch(/"d"|private/);
    } finally {
      await database.close();
    }
  });

  it('refuses bad requests in one line with a non-zero exit', async () => {
    const unknownOrg = await gatehouse(
      ['apikey', 'create', '--name', 'x', '--organization', 'nope', '--scope', 'scim'],
      dataDir,
    );
    expect(unknownOrg.code).not.toBe(0);
    expect(unknownOrg.stderr.trim()).toBe('gatehouse: apikey create: organization: No organization has this code.');

    const platformScim = await gatehouse(['apikey', 'create', '--name', 'x', '--platform', '--scope', 'scim'], dataDir);
    expect(platformScim.code).not.toBe(0);
    expect(platformScim.stderr.trim()).toBe(
      'gatehouse: apikey create: organization: A key with the scim scope acts within one organization: name it.',
    );

    const badScope = await gatehouse(['apikey', 'create', '--name', 'x', '--platform', '--scope', 'root'], dataDir);
    expect(badScope.code).not.toBe(0);
    expect(badScope.stderr).toContain('Unknown scope "root"');

    // The name as the API takes it: 1 to 200 characters, not blank.
    for (const name of ['', '   ', 'x'.repeat(100_000)]) {
      const badName = await gatehouse(
        ['apikey', 'create', '--name', name, '--platform', '--scope', 'provisioning'],
        dataDir,
      );
      expect(badName.code, name.slice(0, 10)).not.toBe(0);
      expect(badName.stderr.trim()).toMatch(/^gatehouse: apikey create: --name: [^\n]+$/);
    }

    const neither = await gatehouse(['apikey', 'create', '--name', 'x', '--scope', 'scim'], dataDir);
    expect(neither.code).not.toBe(0);
    expect(neither.stderr.trim().split('\n')).toHaveLength(1);

    // Dates as the API reads expires_at: no rollover of February 30th, no year beyond 9999.
    for (const expiresAt of ['2030-02-30T00:00:00Z', '+275760-09-13T00:00:00Z', 'soon']) {
      const badDate = await gatehouse(
        ['apikey', 'create', '--name', 'x', '--platform', '--scope', 'scim', '--expires-at', expiresAt],
        dataDir,
      );
      expect(badDate.code, expiresAt).not.toBe(0);
      expect(badDate.stderr.trim()).toBe(
        `gatehouse: apikey create: --expires-at "${expiresAt}" is not a date and time (e.g. 2030-01-31T12:00:00Z)`,
      );
    }

    const unknownKey = await gatehouse(['apikey', 'revoke', '00000000-0000-7000-8000-000000000000'], dataDir);
    expect(unknownKey.code).not.toBe(0);
    expect(unknownKey.stderr).toContain('was not found');
  });
});
