// The provisioning core as other modules (SCIM, the admin API) call it, without HTTP.
import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedOrganization } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import type { Actor } from '../../platform/http/auth.js';
import { users } from '../users/users.table.js';
import { deactivateUser, findProvisionedUser, listProvisionedUsers, readUserRows } from './provisioning.lookup.js';
import { type ProvisionOutcome, provisionUsers } from './provisioning.service.js';

const platform: Actor = {
  kind: 'api_key',
  apiKeyId: 'env:PROVISIONING_API_KEY',
  organizationId: null,
  scopes: [],
  ceilingUserId: null,
};
const keyOf = (organizationId: string): Actor => ({
  kind: 'api_key',
  apiKeyId: '01a20568-ebe5-7959-8be2-4ac6be73e028',
  organizationId,
  scopes: ['scim'],
  ceilingUserId: null,
});

function ok(r: ProvisionOutcome | undefined) {
  if (!r?.ok)
    throw new Error(`expected success, got ${r && !r.ok ? `${r.error.code}: ${r.error.message}` : 'nothing'}`);
  return r;
}
function err(r: ProvisionOutcome | undefined) {
  if (!r || r.ok) throw new Error('expected an error');
  return r.error;
}

describe('provisioning core', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('reads users by id with their organization code, only within an organization when one is named', async () => {
    const [a, b] = [await seedOrganization(t), await seedOrganization(t)];
    const create = async (organization: string) =>
      ok(
        (await provisionUsers(t.database.db, platform, [{ organization, email: `${unique('r')}@example.com` }]))
          .results[0],
      ).user.id as string;
    const [inA, inB] = [await create(a.code), await create(b.code)];
    const everywhere = await readUserRows(t.database.db, [inA, inB, '01a20568-ebe5-7959-8be2-000000000000']);
    expect(everywhere.map((r) => [r.id, r.organizationCode]).sort()).toEqual(
      [
        [inA, a.code],
        [inB, b.code],
      ].sort(),
    );
    const withinA = await readUserRows(t.database.db, [inA, inB], a.id);
    expect(withinA.map((r) => r.id)).toEqual([inA]);
    expect(withinA[0]?.dateJoined).toBeInstanceOf(Date);
    expect(await readUserRows(t.database.db, [])).toEqual([]);
  });

  it('stores the same values whether a call inserts its new users or copies them in (50 or more)', async () => {
    const org = await seedOrganization(t);
    const item = (run: string, i: number) => ({
      organization: org.code,
      externalId: `${run}-${i}`,
      email: `${run}-${i}@example.com`,
      username: i % 2 ? `${run}.u+${i}` : null,
      firstName: `Zoë ${'😀'.repeat(i % 3)}`,
      lastName: i % 4 ? 'Ölçü\ttab\\slash' : '',
      attributes: i % 3 ? { note: 'ünï "q"', list: [1, null, { deep: true }], empty: {} } : {},
      active: i % 5 !== 0,
    });
    const run = async (name: string, n: number) => {
      const { results } = await provisionUsers(
        t.database.db,
        platform,
        Array.from({ length: n }, (_, i) => item(name, i)),
      );
      expect(results.filter((r) => !r.ok || r.action !== 'created')).toEqual([]);
      const rows = await t.database.db.select().from(users).where(eq(users.organizationId, org.id));
      return rows
        .filter((r) => r.externalId?.startsWith(`${name}-`))
        .map(({ id, externalId, email, username, dateJoined, updatedAt, ...rest }) => ({
          ...rest,
          i: Number(externalId?.split('-').pop()),
          username: username === null ? null : username.replace(name, ''),
          email: email.replace(name, ''),
          fresh: Date.now() - dateJoined.getTime() < 60_000 && updatedAt.getTime() === dateJoined.getTime(),
        }))
        .sort((a, b) => a.i - b.i);
    };
    const inserted = await run(unique('ins'), 10);
    const copied = (await run(unique('cop'), 60)).slice(0, 10);
    expect(copied).toEqual(inserted);
    expect(copied[7]).toMatchObject({
      username: '.u+7',
      firstName: 'Zoë 😀',
      lastName: 'Ölçü\ttab\\slash',
      attributes: { note: 'ünï "q"', list: [1, null, { deep: true }], empty: {} },
      status: 'active',
      fresh: true,
    });
    expect(copied[5]).toMatchObject({ username: '.u+5', firstName: 'Zoë 😀😀', status: 'deactivated' });
    expect(copied[6]).toMatchObject({ username: null, lastName: 'Ölçü\ttab\\slash', attributes: {} });
  });

  it("creates users without an external id in a confined caller's own organization", async () => {
    const org = await seedOrganization(t);
    const actor = keyOf(org.id);
    const { results } = await provisionUsers(t.database.db, actor, [
      { email: 'ada@example.com', username: 'ada', scimExternalId: 'scim-1', firstName: 'Ada' },
    ]);
    const r = ok(results[0]);
    expect(r).toMatchObject({
      action: 'created',
      user: { organizationId: org.id, username: 'ada', scimExternalId: 'scim-1', externalId: null, active: true },
    });
    expect(await findProvisionedUser(t.database.db, actor, { id: r.user.id as string })).toMatchObject({
      email: 'ada@example.com',
    });
  });

  it('updates a user by id, keeping fields left undefined and clearing those set to null', async () => {
    const org = await seedOrganization(t);
    const actor = keyOf(org.id);
    const created = ok(
      (
        await provisionUsers(t.database.db, actor, [
          { email: 'b@example.com', username: 'bee', firstName: 'B', lastName: 'Z', scimExternalId: 's-b' },
        ])
      ).results[0],
    );
    const id = created.user.id as string;
    const updated = ok(
      (await provisionUsers(t.database.db, actor, [{ id, lastName: 'Y', scimExternalId: null }])).results[0],
    );
    expect(updated.action).toBe('updated');
    expect(updated.changes).toEqual([
      { field: 'scim_external_id', from: 's-b', to: null },
      { field: 'last_name', from: 'Z', to: 'Y' },
    ]);
    expect(updated.user).toMatchObject({ id, email: 'b@example.com', username: 'bee', firstName: 'B', lastName: 'Y' });
  });

  it('refuses taken usernames, emails and SCIM external ids within the organization, per item', async () => {
    const org = await seedOrganization(t);
    const actor = keyOf(org.id);
    await provisionUsers(t.database.db, actor, [{ email: 'c@example.com', username: 'cee', scimExternalId: 's-c' }]);
    const { results } = await provisionUsers(t.database.db, actor, [
      { email: 'C@EXAMPLE.com' },
      { email: 'c2@example.com', username: 'CEE' },
      { email: 'c3@example.com', scimExternalId: 's-c' },
      { email: 'c4@example.com', username: 'dup' },
      { email: 'c5@example.com', username: 'dup' },
      { email: 'c6@example.com' },
    ]);
    expect(results.map((r) => (r.ok ? r.action : r.error.code))).toEqual([
      'email_taken',
      'username_taken',
      'scim_external_id_taken',
      'created',
      'username_taken',
      'created',
    ]);
    // Another organization may hold the same values.
    const other = await seedOrganization(t);
    const again = await provisionUsers(t.database.db, keyOf(other.id), [
      { email: 'c@example.com', username: 'cee', scimExternalId: 's-c' },
    ]);
    expect(ok(again.results[0]).action).toBe('created');
  });

  it("does not reach another organization's users by id or external id", async () => {
    const a = await seedOrganization(t);
    const b = await seedOrganization(t);
    const inB = ok(
      (
        await provisionUsers(t.database.db, platform, [
          { externalId: unique('kc-'), email: 'x@example.com', organization: b.code },
        ])
      ).results[0],
    );
    const id = inB.user.id as string;
    const { results } = await provisionUsers(t.database.db, keyOf(a.id), [
      { id, lastName: 'Hacked' },
      { externalId: inB.user.externalId, email: 'y@example.com' },
      { email: 'z@example.com', organization: b.code },
    ]);
    expect(results.map((r) => (r.ok ? r.action : r.error.status))).toEqual([404, 404, 403]);
    expect(await findProvisionedUser(t.database.db, keyOf(a.id), { id })).toBeUndefined();
    await expect(deactivateUser(t.database.db, keyOf(a.id), { id })).rejects.toMatchObject({ status: 404 });
    await expect(listProvisionedUsers(t.database.db, keyOf(a.id), b.code)).rejects.toMatchObject({ status: 404 });
    const [row] = await t.database.db.select().from(users).where(eq(users.id, id));
    expect(row).toMatchObject({ lastName: '', status: 'active' });
  });

  it('requires an organization for a new user of a platform caller, and an email', async () => {
    const { results } = await provisionUsers(t.database.db, platform, [
      { externalId: unique('kc-'), email: 'n@example.com' },
      { externalId: unique('kc-'), organization: unique('org-') },
      { email: 'not-an-email', organization: 'x' },
    ]);
    expect(results.map((r) => err(r).code)).toEqual([
      'organization_required',
      'validation_failed',
      'validation_failed',
    ]);
    expect(err(results[2]).errors).toEqual([{ field: 'email', message: expect.any(String) }]);
  });

  it('plans without writing: the same outcomes, organizations to create listed', async () => {
    const code = unique('planned-');
    const report = await provisionUsers(
      t.database.db,
      platform,
      [{ externalId: unique('kc-'), email: 'p@example.com', organization: code }],
      { dryRun: true },
    );
    expect(report.createdOrganizations).toEqual([code]);
    expect(ok(report.results[0])).toMatchObject({ action: 'created', user: { id: null, organizationCode: code } });
    const applied = await provisionUsers(t.database.db, platform, [
      { externalId: unique('kc-'), email: 'p@example.com', organization: code },
    ]);
    expect(applied.createdOrganizations).toEqual([code]);
  });

  it('deactivates by id idempotently and reactivates with active: true', async () => {
    const org = await seedOrganization(t);
    const actor = keyOf(org.id);
    const id = ok((await provisionUsers(t.database.db, actor, [{ email: 'd@example.com' }])).results[0]).user
      .id as string;
    expect(await deactivateUser(t.database.db, actor, { id })).toMatchObject({
      changed: true,
      user: { active: false },
    });
    expect(await deactivateUser(t.database.db, actor, { id })).toMatchObject({ changed: false });
    const back = ok((await provisionUsers(t.database.db, actor, [{ id, active: true }])).results[0]);
    expect(back.changes).toEqual([
      { field: 'is_active', from: false, to: true },
      { field: 'status', from: 'deactivated', to: 'active' },
    ]);
  });
});
