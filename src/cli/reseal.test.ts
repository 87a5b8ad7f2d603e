import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { eq, sql } from 'drizzle-orm';
import * as OTPAuth from 'otpauth';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { gatehouse } from '../../test/cli.js';
import { loginAs, seedOrganization, seedUser, superuserClient, TEST_PASSWORD } from '../../test/seed.js';
import { type TestApp, testConfig } from '../../test/test-app.js';
import { buildApp } from '../app.js';
import { oauth2TokenContext, openCredentials } from '../modules/integrations/credentials.js';
import { createIntegration } from '../modules/integrations/integrations.service.js';
import { integrationOAuth2Tokens, integrations } from '../modules/integrations/integrations.table.js';
import { mfaTotp } from '../modules/mfa/mfa.table.js';
import type { User } from '../modules/users/users.table.js';
import { createEnvelope, envelopeFor, masterKeyId } from '../platform/crypto/envelope.js';
import { openDatabase, queryRows } from '../platform/db/client.js';
import { migrate } from '../platform/db/migrate.js';

// Runs `gatehouse` as a process (a build, then migrations) several times: slow on a busy machine.
vi.setConfig({ testTimeout: 400_000 });

describe('rotating the master key with gatehouse reseal', () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-reseal-test-'));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));
  const keyA = randomBytes(32);
  const keyB = randomBytes(32);
  const [idA, idB] = [masterKeyId(keyA), masterKeyId(keyB)];
  const onlyA = { MASTER_KEY: keyA.toString('base64') };
  const bAfterA = { MASTER_KEY: keyB.toString('base64'), MASTER_KEY_PREVIOUS: keyA.toString('base64') };
  const onlyB = { MASTER_KEY: keyB.toString('base64') };

  /** The app on the embedded database in `dataDir`, as a node restarted with `env` would run it. */
  async function withApp<T>(env: Record<string, string>, work: (t: TestApp) => Promise<T>): Promise<T> {
    const database = await openDatabase({ dataDir });
    await migrate(database.db);
    const config = testConfig(env);
    const app = await buildApp({ config, database, logger: false });
    await app.ready();
    const t: TestApp = { app, database, config, request: (o) => app.inject(o), close: async () => {} };
    try {
      return await work(t);
    } finally {
      await app.close();
      await database.close();
    }
  }

  const totpOf = (secret: string) =>
    new OTPAuth.TOTP({ secret: OTPAuth.Secret.fromBase32(secret), digits: 6, period: 30, algorithm: 'SHA1' });

  /** Logs in with password and TOTP; the code's time step is forgotten first, as each check reuses the current one. */
  async function loginWithTotp(t: TestApp, user: User, secret: string) {
    await t.database.db.update(mfaTotp).set({ lastUsedStep: null }).where(eq(mfaTotp.userId, user.id));
    const first = await t.request({
      method: 'POST',
      url: '/api/v1/users/login/',
      payload: { email: user.email, password: TEST_PASSWORD },
    });
    const { mfa_token } = first.json() as { mfa_token: string };
    return t.request({
      method: 'POST',
      url: '/api/v1/users/login/mfa/',
      payload: { mfa_token, code: totpOf(secret).generate() },
    });
  }

  /** Every kind of secret opens with the app's configuration: a token is signed, TOTP and credentials open. */
  async function expectEverythingOpens(t: TestApp) {
    const tokenUser = await seedUser(t, seeded.organizationId);
    expect((await loginAs(t, tokenUser)).token).toMatch(/^ey/);
    const mfa = await loginWithTotp(t, seeded.totpUser, seeded.totpSecret);
    expect(mfa.statusCode).toBe(200);
    expect(mfa.json().access).toEqual(expect.any(String));
    const envelope = envelopeFor(t.config);
    const [integration] = await t.database.db
      .select()
      .from(integrations)
      .where(eq(integrations.id, seeded.integrationId));
    expect(openCredentials(envelope, seeded.integrationId, integration?.credentialsSealed ?? null)).toEqual({
      api_key: 'sk_live_0123456789abcdef',
    });
    const [tokens] = await t.database.db
      .select()
      .from(integrationOAuth2Tokens)
      .where(eq(integrationOAuth2Tokens.integrationId, seeded.integrationId));
    expect(
      envelope.openText(tokens?.refreshTokenSealed as string, oauth2TokenContext(seeded.integrationId, 'refresh')),
    ).toBe('refresh-1');
  }

  /** The key ids the sealed values of the database name, by column. */
  async function keyIdsInDatabase(): Promise<string[]> {
    const database = await openDatabase({ dataDir });
    try {
      const { rows } = (await database.db.execute(
        sql.raw(`select split_part(private_key_sealed, '.', 2) as k from signing_keys
         union all select split_part(secret_sealed, '.', 2) from mfa_totp
         union all select split_part(credentials_sealed, '.', 2) from integrations where credentials_sealed is not null
         union all select split_part(access_token_sealed, '.', 2) from integration_oauth2_tokens
         union all select split_part(refresh_token_sealed, '.', 2) from integration_oauth2_tokens`),
      )) as unknown as { rows: { k: string }[] };
      return [...new Set(rows.map((r) => r.k))];
    } finally {
      await database.close();
    }
  }

  let seeded: { organizationId: string; totpUser: User; totpSecret: string; integrationId: string };

  it('seals every kind of secret under MASTER_KEY A', async () => {
    seeded = await withApp(onlyA, async (t) => {
      const org = await seedOrganization(t);
      const totpUser = await seedUser(t, org.id);
      const client = await loginAs(t, totpUser);
      const enrol = await client.post('/api/v1/users/mfa/totp/', { password: TEST_PASSWORD });
      const secret = (enrol.json() as { secret: string }).secret;
      const confirm = await client.post('/api/v1/users/mfa/totp/confirm/', { code: totpOf(secret).generate() });
      expect(confirm.statusCode).toBe(200);
      const envelope = envelopeFor(t.config);
      const integration = await createIntegration(
        t.database.db,
        envelope,
        { loopback: true },
        { organizationId: undefined, homeOrganizationId: org.id, userId: null },
        {
          name: 'Payments',
          service_type: 'payment_gateway',
          auth_type: 'api_key',
          base_url: 'https://payments.example.com',
          credentials: { api_key: 'sk_live_0123456789abcdef' },
        },
      );
      await t.database.db.insert(integrationOAuth2Tokens).values({
        organizationId: org.id,
        integrationId: integration.id,
        accessTokenSealed: envelope.seal('access-1', oauth2TokenContext(integration.id, 'access')),
        refreshTokenSealed: envelope.seal('refresh-1', oauth2TokenContext(integration.id, 'refresh')),
      });
      return { organizationId: org.id, totpUser, totpSecret: secret, integrationId: integration.id };
    });
    expect(await keyIdsInDatabase()).toEqual([idA]);
  });

  it('keeps working after a restart with MASTER_KEY B and A in MASTER_KEY_PREVIOUS', async () => {
    await withApp(bAfterA, async (t) => {
      await expectEverythingOpens(t);
      // B alone could not open what A sealed.
      const [row] = await t.database.db.select().from(mfaTotp).where(eq(mfaTotp.userId, seeded.totpUser.id));
      expect(() => createEnvelope(keyB).open(row?.secretSealed as string, `mfa_totp:${seeded.totpUser.id}`)).toThrow(
        /unknown master key/,
      );
    });
  });

  it('counts per key, re-seals everything under B, and finds nothing to do the second time', async () => {
    const check = await gatehouse(['reseal', '--check'], dataDir, { env: bAfterA });
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
    expect(check.stdout).toContain(`current master key: ${idB}`);
    expect(check.stdout).toContain(`signing keys: 1 under ${idA} (previous)`);
    expect(check.stdout).toContain(`TOTP secrets: 1 under ${idA} (previous)`);
    expect(check.stdout).toContain(`integration credentials: 1 under ${idA} (previous)`);
    expect(check.stdout).toContain(`OAuth2 tokens: 2 under ${idA} (previous)`);
    expect(check.stdout).toContain('OAuth2 pending authorizations: none');
    expect(check.stdout).toContain('5 values under previous master keys, 0 under unknown master keys');
    expect(await keyIdsInDatabase()).toEqual([idA]);

    const run = await gatehouse(['reseal', '--batch-size', '1'], dataDir, { env: bAfterA });
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout.trim().split('\n')).toEqual([
      'signing keys: 1 resealed, 0 changed meanwhile, 0 unreadable',
      'TOTP secrets: 1 resealed, 0 changed meanwhile, 0 unreadable',
      'integration credentials: 1 resealed, 0 changed meanwhile, 0 unreadable',
      'OAuth2 tokens: 2 resealed, 0 changed meanwhile, 0 unreadable',
      'OAuth2 pending authorizations: 0 resealed, 0 changed meanwhile, 0 unreadable',
      '0 values left under previous master keys, 0 under unknown master keys',
    ]);
    expect(await keyIdsInDatabase()).toEqual([idB]);

    const again = await gatehouse(['reseal'], dataDir, { env: bAfterA });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('signing keys: 0 resealed');
    expect(again.stdout).toContain('OAuth2 tokens: 0 resealed');

    // One event for the run that re-sealed, none for the run that found nothing to do.
    const events = await withApp(onlyB, (t) =>
      queryRows<{ actor_type: string; api_key_id: string | null; details: Record<string, unknown> }>(
        t.database.db,
        sql`select actor_type, api_key_id, details from activities where activity_type = 'master_key.resealed'`,
      ),
    );
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ actor_type: 'api_key', api_key_id: null });
    expect(events[0]?.details).toMatchObject({
      via: 'cli:gatehouse',
      key_id: idB,
      resealed: 5,
      unreadable: 0,
      kinds: expect.arrayContaining([{ kind: 'OAuth2 tokens', resealed: 2, changed: 0, unreadable: 0 }]),
    });
    expect(JSON.stringify(events[0]?.details)).not.toContain(bAfterA.MASTER_KEY);
  });

  it('opens everything with MASTER_KEY B alone once re-sealed', async () => {
    await withApp(onlyB, (t) => expectEverythingOpens(t));
  });

  it('answers a clear error, not a crash, for a secret sealed under a key no longer configured', async () => {
    const keyC = randomBytes(32);
    let integrationId = '';
    await withApp(onlyB, async (t) => {
      const integration = await createIntegration(
        t.database.db,
        createEnvelope(keyC),
        { loopback: true },
        { organizationId: undefined, homeOrganizationId: seeded.organizationId, userId: null },
        {
          name: 'Sms',
          service_type: 'sms_provider',
          auth_type: 'api_key',
          base_url: 'https://sms.example.com',
          credentials: { api_key: 'sms_0123456789abcdef' },
        },
      );
      integrationId = integration.id;
      const admin = await superuserClient(t);
      const check = await admin.post(`/api/v1/integrations/${integration.id}/health-check/`);
      expect(check.statusCode).toBe(500);
      // The code names the kind of fault; which setting is at fault is the log's business, not the client's.
      expect(check.json()).toMatchObject({ code: 'sealed_secret_unreadable' });
      expect(check.body).not.toMatch(/MASTER_KEY/);

      // A TOTP secret sealed under C: the second login step answers a problem naming the cause.
      await t.database.db
        .update(mfaTotp)
        .set({ secretSealed: createEnvelope(keyC).seal('JBSWY3DPEHPK3PXP', `mfa_totp:${seeded.totpUser.id}`) })
        .where(eq(mfaTotp.userId, seeded.totpUser.id));
      const mfa = await loginWithTotp(t, seeded.totpUser, seeded.totpSecret);
      expect(mfa.statusCode).toBe(500);
      expect(mfa.json()).toMatchObject({ code: 'sealed_secret_unreadable' });
    });

    const run = await gatehouse(['reseal'], dataDir, { env: onlyB });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`integrations ${integrationId} credentials_sealed does not open`);
    expect(run.stdout).toContain('integration credentials: 0 resealed, 0 changed meanwhile, 1 unreadable');
    expect(run.stdout).toContain('0 values left under previous master keys, 2 under unknown master keys');
  });
});
