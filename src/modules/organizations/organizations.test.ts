import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, loginAs, seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { queryRows } from '../../platform/db/client.js';

describe('organizations admin API', () => {
  let t: TestApp;
  let admin: Client;
  beforeAll(async () => {
    t = await startTestApp();
    admin = await superuserClient(t);
  });
  afterAll(() => t.close());

  it('creates an organization and finds it by code or id', async () => {
    const code = unique('acme-');
    const res = await admin.post('/api/v1/organizations/', {
      code,
      name: 'Acme',
      description: 'Main',
      settings: { theme: 'dark', features: ['analytics'] },
    });
    expect(res.statusCode).toBe(201);
    const org = res.json();
    expect(org).toMatchObject({ code, name: 'Acme', is_active: true, settings: { theme: 'dark' } });
    expect((await admin.get(`/api/v1/organizations/${code}`)).json().id).toBe(org.id);
    expect((await admin.get(`/api/v1/organizations/${org.id}/`)).json().code).toBe(code);
  });

  it('answers 409 naming code for a duplicate code', async () => {
    const code = unique('dup-');
    await admin.post('/api/v1/organizations', { code, name: 'One' });
    const res = await admin.post('/api/v1/organizations', { code, name: 'Two' });
    expect(res.json()).toMatchObject({ status: 409, code: 'organization_code_taken', errors: [{ field: 'code' }] });
  });

  it('refuses a code with spaces and a missing name, naming both fields', async () => {
    const res = await admin.post('/api/v1/organizations', { code: 'has space' });
    expect(res.statusCode).toBe(400);
    const fields = (res.json().errors as { field: string }[]).map((e) => e.field);
    expect(fields).toEqual(expect.arrayContaining(['code', 'name']));
  });

  it('lists with prefix search and a cursor', async () => {
    const prefix = unique('list-');
    for (let i = 0; i < 3; i++) await admin.post('/api/v1/organizations', { code: `${prefix}${i}`, name: `L${i}` });
    const first = (await admin.get(`/api/v1/organizations?search=${prefix}&limit=2`)).json();
    expect(first.results.map((o: { code: string }) => o.code)).toEqual([`${prefix}0`, `${prefix}1`]);
    const second = (await admin.get(`/api/v1/organizations?search=${prefix}&limit=2&cursor=${first.next}`)).json();
    expect(second).toEqual({ results: [expect.objectContaining({ code: `${prefix}2` })], next: null });
  });

  it('deactivating an organization stops its users logging in and ends their sessions', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const client = await loginAs(t, user);
    const res = await admin.post(`/api/v1/organizations/${org.code}/deactivate`);
    expect(res.json()).toMatchObject({ is_active: false });
    expect((await client.get('/api/v1/users/validate-token/')).statusCode).toBe(401);
    // The password matched, so the caller may learn why: 401 account_inactive.
    await expect(loginAs(t, user)).rejects.toThrow(/login failed: 401 .*account_inactive/);
  });

  it('updates name and settings, and refuses an empty patch', async () => {
    const org = await seedOrganization(t);
    const res = await admin.patch(`/api/v1/organizations/${org.code}`, { name: 'Renamed', settings: { a: 1 } });
    expect(res.json()).toMatchObject({ name: 'Renamed', settings: { a: 1 } });
    expect((await admin.patch(`/api/v1/organizations/${org.code}`, {})).statusCode).toBe(400);
  });

  it('refuses a setting Gatehouse reads with a value it would ignore, naming it, and keeps the stored ones', async () => {
    const org = await seedOrganization(t);
    const url = `/api/v1/organizations/${org.code}`;
    const good = { password_min_length: 14, self_registration: false, require_mfa: true, theme: 'dark' };
    expect((await admin.patch(url, { settings: good })).json().settings).toEqual(good);
    const bad = await admin.patch(url, {
      settings: { password_min_length: 3, self_registration: 'no', require_email_verification: 'yes' },
    });
    expect(bad.statusCode).toBe(400);
    expect((bad.json().errors as { field: string }[]).map((e) => e.field).sort()).toEqual([
      'settings.password_min_length',
      'settings.require_email_verification',
      'settings.self_registration',
    ]);
    expect((await admin.get(url)).json().settings).toEqual(good);
    const created = await admin.post('/api/v1/organizations/', {
      code: unique('strict-'),
      name: 'Strict',
      settings: { password_min_length: 'x' },
    });
    expect(created.statusCode).toBe(400);
    expect(created.json().errors).toEqual([expect.objectContaining({ field: 'settings.password_min_length' })]);
  });

  it('refuses settings over 64 KiB as JSON with 400 naming settings, on create and update, storing nothing', async () => {
    const org = await seedOrganization(t);
    const url = `/api/v1/organizations/${org.code}`;
    // 64 KiB of JSON exactly is taken: {"note":"…"} is 11 bytes besides the text.
    const fits = { note: 'x'.repeat(64 * 1024 - 11) };
    const patched = await admin.patch(url, { settings: fits });
    expect(patched.statusCode, patched.body).toBe(200);
    const over = { note: 'x'.repeat(64 * 1024 - 10) };
    const huge = { blob: 'x'.repeat(9 * 1024 * 1024) };
    for (const settings of [over, huge]) {
      const refused = await admin.patch(url, { settings });
      expect(refused.statusCode).toBe(400);
      expect(refused.headers['content-type']).toContain('application/problem+json');
      expect(refused.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'settings' }] });
      const code = unique('big-');
      const created = await admin.post('/api/v1/organizations/', { code, name: 'Big', settings });
      expect(created.json()).toMatchObject({ status: 400, errors: [{ field: 'settings' }] });
      expect((await admin.get(`/api/v1/organizations/${code}`)).statusCode).toBe(404);
    }
    expect((await admin.get(url)).json().settings).toEqual(fits);
    // A body over the server's limit is still refused as such, before any route reads it.
    const tooLarge = await admin.patch(url, { settings: { blob: 'x'.repeat(11 * 1024 * 1024) } });
    expect(tooLarge.statusCode).toBe(413);
  });

  it('answers 400 naming code, which cannot be changed, and a body with nothing to change with the organization as it is', async () => {
    const org = await seedOrganization(t);
    const url = `/api/v1/organizations/${org.code}`;
    const before = (await admin.get(url)).json();
    const refused = await admin.patch(url, { code: unique('other-'), name: 'Renamed' });
    expect(refused.statusCode).toBe(400);
    expect(refused.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'code' }] });
    expect(refused.json().errors[0].message).toMatch(/cannot be changed/);

    const unchanged = await admin.patch(url, { id: before.id, code: before.code });
    expect(unchanged.statusCode).toBe(200);
    expect(unchanged.json()).toEqual(before);
    expect((await admin.get(url)).json()).toEqual(before);
    const events = await queryRows<{ activity_type: string }>(
      t.database.db,
      sql`select activity_type from activities where object_id = ${org.id} and activity_type like 'organization.%'`,
    );
    expect(events).toEqual([]);

    // The whole object sent back, read-only fields unchanged and the name changed: only the name counts.
    const roundTrip = await admin.patch(url, { ...before, name: 'Renamed' });
    expect(roundTrip.statusCode, roundTrip.body).toBe(200);
    expect(roundTrip.json()).toMatchObject({ code: org.code, name: 'Renamed' });
    const changedId = await admin.patch(url, { ...before, id: '01a20a6e-0000-7000-8000-000000000000' });
    expect(changedId.json()).toMatchObject({ code: 'validation_failed', errors: [{ field: 'id' }] });
  });

  it('deletes an empty organization and refuses one that still has users', async () => {
    const empty = await seedOrganization(t);
    expect((await admin.delete(`/api/v1/organizations/${empty.code}`)).statusCode).toBe(204);
    expect((await admin.get(`/api/v1/organizations/${empty.code}`)).statusCode).toBe(404);
    const busy = await seedOrganization(t);
    await seedUser(t, busy.id);
    expect((await admin.delete(`/api/v1/organizations/${busy.code}`)).json()).toMatchObject({
      status: 409,
      code: 'organization_not_empty',
    });
  });

  it('is refused to users who are not superusers', async () => {
    const org = await seedOrganization(t);
    const plain = await loginAs(t, await seedUser(t, org.id));
    expect((await plain.get('/api/v1/organizations')).statusCode).toBe(403);
    expect((await plain.post('/api/v1/organizations', { code: unique('x'), name: 'x' })).statusCode).toBe(403);
  });
});
