import { randomBytes } from 'node:crypto';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedOrganization } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { createEnvelope } from '../../platform/crypto/envelope.js';
import { oauth2TokenContext } from '../integrations/credentials.js';
import { createIntegration } from '../integrations/integrations.service.js';
import { integrationOAuth2Tokens } from '../integrations/integrations.table.js';
import { countSealedSecrets, resealSecrets } from './master-key.service.js';

describe('re-sealing secrets under a new master key', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('leaves OAuth2 tokens whose renewal is under way, and re-seals them once it is over', async () => {
    const org = await seedOrganization(t);
    const old = createEnvelope(t.config.masterKey);
    const integration = await createIntegration(
      t.database.db,
      old,
      { loopback: true },
      { organizationId: undefined, homeOrganizationId: org.id, userId: null },
      {
        name: 'Crm',
        service_type: 'crm',
        auth_type: 'oauth2',
        base_url: 'https://crm.example.com',
        oauth2: { token_url: 'https://crm.example.com/token', client_id: 'gatehouse' },
        credentials: {},
      },
    );
    await t.database.db.insert(integrationOAuth2Tokens).values({
      organizationId: org.id,
      integrationId: integration.id,
      accessTokenSealed: old.seal('access', oauth2TokenContext(integration.id, 'access')),
      refreshTokenSealed: null,
      renewalLeaseUntil: sql`now() + interval '1 minute'`,
    });
    const rotated = createEnvelope(randomBytes(32), [t.config.masterKey]);

    const during = await resealSecrets(t.database.db, rotated);
    expect(during.find((r) => r.kind === 'OAuth2 tokens')).toEqual({
      kind: 'OAuth2 tokens',
      resealed: 0,
      changed: 1,
      unreadable: 0,
    });
    expect(during.find((r) => r.kind === 'signing keys')?.resealed).toBe(1);

    await t.database.db
      .update(integrationOAuth2Tokens)
      .set({ renewalLeaseUntil: null })
      .where(eq(integrationOAuth2Tokens.integrationId, integration.id));
    const after = await resealSecrets(t.database.db, rotated);
    expect(after.find((r) => r.kind === 'OAuth2 tokens')?.resealed).toBe(1);
    expect(after.find((r) => r.kind === 'signing keys')?.resealed).toBe(0);

    const [row] = await t.database.db
      .select()
      .from(integrationOAuth2Tokens)
      .where(eq(integrationOAuth2Tokens.integrationId, integration.id));
    expect(rotated.needsReseal(row?.accessTokenSealed as string)).toBe(false);
    expect(rotated.openText(row?.accessTokenSealed as string, oauth2TokenContext(integration.id, 'access'))).toBe(
      'access',
    );
    const counts = await countSealedSecrets(t.database.db);
    expect(counts.find((c) => c.kind === 'OAuth2 tokens')?.byKey).toEqual([{ keyId: rotated.currentKeyId, values: 1 }]);
  });
});
