import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { gatehouse } from '../../test/cli.js';
import { startTestApp, type TestApp } from '../../test/test-app.js';
import { createApiKey, OPERATOR } from '../modules/api-keys/api-keys.service.js';
import { createIntegration } from '../modules/integrations/integrations.service.js';
import { organizations } from '../modules/organizations/organizations.table.js';
import { users } from '../modules/users/users.table.js';
import { createEnvelope } from '../platform/crypto/envelope.js';
import { openDatabase } from '../platform/db/client.js';
import { migrate } from '../platform/db/migrate.js';

// Each case runs `gatehouse` as a process (a build, then migrations on a fresh database): slow on a busy machine.
vi.setConfig({ testTimeout: 180_000 });

describe('gatehouse sync on the command line', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-sync-test-'));
  const masterKey = randomBytes(32);
  const env = { MASTER_KEY: masterKey.toString('base64') };
  let downstream: TestApp;
  let integrationId: string;

  beforeAll(async () => {
    downstream = await startTestApp();
    const url = await downstream.app.listen({ host: '127.0.0.1', port: 0 });
    const { key } = await createApiKey(downstream.database.db, OPERATOR, {
      name: 'upstream',
      organization: null,
      scopes: ['provisioning'],
    });
    const database = await openDatabase({ dataDir });
    try {
      await migrate(database.db);
      const [org] = await database.db.insert(organizations).values({ code: 'clinic', name: 'Clinic' }).returning();
      await database.db.insert(users).values([
        { organizationId: org?.id as string, email: 'ann@example.com', externalId: 'kc-ann' },
        { organizationId: org?.id as string, email: 'ben@example.com', externalId: 'kc-ben' },
      ]);
      const integration = await createIntegration(
        database.db,
        createEnvelope(masterKey),
        { loopback: true },
        { organizationId: undefined, homeOrganizationId: org?.id, userId: null },
        {
          name: 'Debt collection',
          service_type: 'user_provisioning',
          auth_type: 'api_key',
          base_url: `${url}/api/provisioning`,
          credentials: { api_key: key },
        },
      );
      integrationId = integration.id;
    } finally {
      await database.close();
    }
  });
  afterAll(async () => {
    await downstream.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('counts on a dry run, sends the users, then has nothing left to send', async () => {
    const dry = await gatehouse(['sync', '--dry-run'], dataDir, { env });
    expect(dry.stderr).toBe('');
    expect(dry.stdout.trim()).toBe(`${integrationId}: 2 users would be sent`);

    const sent = await gatehouse(['sync', '--organization', 'clinic'], dataDir, { env });
    expect(sent.code).toBe(0);
    expect(sent.stdout.trim()).toBe(`${integrationId}: 2 pending, 2 upserted, 0 deactivated, 0 failed`);
    const [ann] = await downstream.database.db.select().from(users).where(eq(users.externalId, 'kc-ann'));
    expect(ann?.email).toBe('ann@example.com');

    const again = await gatehouse(['sync', '--integration', integrationId], dataDir, { env });
    expect(again.stdout.trim()).toBe(`${integrationId}: 0 pending, 0 upserted, 0 deactivated, 0 failed`);

    // Another run holds the integration: said on stderr, and the exit status is not 0.
    const database = await openDatabase({ dataDir });
    try {
      await database.db.execute(sql`
        insert into downstream_sync_leases (organization_id, integration_id, holder, lease_until)
        select organization_id, id, gen_random_uuid(), now() + interval '1 hour' from integrations`);
    } finally {
      await database.close();
    }
    const held = await gatehouse(['sync'], dataDir, { env });
    expect(held.code).toBe(1);
    expect(held.stderr).toContain(`gatehouse: sync ${integrationId}: A sync of users`);
    // There was an integration to sync: its failure is not reported as there being none.
    expect(held.stdout).not.toContain('no active user_provisioning integrations');

    const unknown = await gatehouse(['sync', '--organization', 'nope'], dataDir, { env });
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr.trim()).toBe('gatehouse: sync: Organization nope was not found.');
  });
});
