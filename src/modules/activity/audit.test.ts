import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase } from '../../../test/test-app.js';
import { queryRows } from '../../platform/db/client.js';
import { recordAudit, recordAudits } from './audit.js';
import { REDACTED, redactDetails } from './redact.js';

let t: Awaited<ReturnType<typeof openTestDatabase>>;
beforeAll(async () => {
  t = await openTestDatabase();
});
afterAll(() => t.drop());

describe('audit events', () => {
  it("are written in the caller's transaction: a rolled-back change leaves no event", async () => {
    const db = t.database.db;
    await db
      .transaction(async (tx) => {
        await recordAudit(tx, {
          type: 'test.rolled_back',
          category: 'system',
          organizationId: null,
          description: 'never committed',
        });
        throw new Error('roll back');
      })
      .catch(() => {});
    await db.transaction((tx) =>
      recordAudit(tx, { type: 'test.committed', category: 'system', organizationId: null, description: 'kept' }),
    );
    const rows = await queryRows<{ activity_type: string; kind: string }>(
      db,
      sql`select activity_type, kind from activities where activity_type like 'test.%'`,
    );
    expect(rows).toEqual([{ activity_type: 'test.committed', kind: 'audit' }]);
  });

  it('records who acted, naming a key that has no row (the environment key) instead of referencing it', async () => {
    const db = t.database.db;
    const keyId = '0190a000-0000-7000-8000-000000000001';
    await recordAudits(db, [
      {
        type: 'test.by_key',
        category: 'provisioning',
        organizationId: null,
        actor: { kind: 'api_key', apiKeyId: keyId, organizationId: null, scopes: [] },
        description: 'by a stored key',
        tags: ['a', 'b'],
      },
      {
        type: 'test.by_env_key',
        category: 'provisioning',
        organizationId: null,
        actor: { kind: 'api_key', apiKeyId: 'env:PROVISIONING_API_KEY', organizationId: null, scopes: [] },
        description: 'by the environment key',
      },
    ]);
    const rows = await queryRows<{
      activity_type: string;
      actor_type: string;
      api_key_id: string | null;
      details: object;
      tags: string[];
    }>(
      db,
      sql`select activity_type, actor_type, api_key_id, details, tags from activities
          where activity_type in ('test.by_key', 'test.by_env_key') order by activity_type`,
    );
    expect(rows).toEqual([
      {
        activity_type: 'test.by_env_key',
        actor_type: 'api_key',
        api_key_id: null,
        details: { via: 'env:PROVISIONING_API_KEY' },
        tags: [],
      },
      { activity_type: 'test.by_key', actor_type: 'api_key', api_key_id: keyId, details: {}, tags: ['a', 'b'] },
    ]);
  });

  it('stores details with every sensitive value redacted', async () => {
    const db = t.database.db;
    await recordAudits(db, [
      {
        type: 'test.redacted',
        category: 'system',
        organizationId: null,
        description: 'secrets',
        details: {
          email: 'a@example.com',
          password: 'hunter2hunter2',
          nested: {
            access_token: 'abc',
            'X-Api-Key': 'k',
            list: [{ client_secret: 's' }, 'gh_0123456789abcdefghijkl'],
          },
          Authorization: 'Bearer abcdefghijkl',
          role: 'org_admin',
        },
      },
    ]);
    const [row] = await queryRows<{ details: Record<string, unknown> }>(
      db,
      sql`select details from activities where activity_type = 'test.redacted'`,
    );
    expect(row?.details).toEqual({
      email: 'a@example.com',
      password: REDACTED,
      nested: { access_token: REDACTED, 'X-Api-Key': REDACTED, list: [{ client_secret: REDACTED }, REDACTED] },
      Authorization: REDACTED,
      role: 'org_admin',
    });
    expect(JSON.stringify(row)).not.toMatch(/hunter2|abcdefghijkl|gh_0123/);
  });

  it('redacts credential-looking values under innocent keys', () => {
    expect(redactDetails({ note: 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig', n: 3 })).toEqual({ note: REDACTED, n: 3 });
  });
});
