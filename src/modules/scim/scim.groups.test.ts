import { eq } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { scimClient } from '../../../test/scim-client.js';
import { clientWithRole, loginAs, seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { activities } from '../activity/activity.table.js';
import { createApiKey, OPERATOR } from '../api-keys/api-keys.service.js';
import { roles, userRoles } from '../rbac/rbac.table.js';
import { type User, users } from '../users/users.table.js';

const ERROR = 'urn:ietf:params:scim:api:messages:2.0:Error';
const GROUP = 'urn:ietf:params:scim:schemas:core:2.0:Group';
const PATCH = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

describe("SCIM Groups (the organization's roles)", () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  it('creates a group as a role of level 1000 without grants, with members, and audits it', async () => {
    const { org, scim } = await scimClient(t);
    const ada = await seedUser(t, org.id, { username: unique('ada') });
    const res = await scim('POST', '/Groups', {
      schemas: [GROUP],
      displayName: 'Engineering Team',
      members: [{ value: ada.id }],
    });
    expect(res.statusCode).toBe(201);
    const group = res.json();
    expect(group).toMatchObject({
      schemas: [GROUP],
      displayName: 'Engineering Team',
      members: [{ value: ada.id, type: 'User' }],
      meta: { resourceType: 'Group' },
    });
    expect(res.headers.etag).toBe(group.meta.version);
    const [role] = await t.database.db.select().from(roles).where(eq(roles.id, group.id));
    expect(role).toMatchObject({ organizationId: org.id, code: 'engineering_team', level: 1000 });
    const [held] = await t.database.db.select().from(userRoles).where(eq(userRoles.userId, ada.id));
    expect(held).toMatchObject({ roleId: group.id, isPrimary: true });
    const events = await t.database.db.select().from(activities).where(eq(activities.organizationId, org.id));
    expect(
      events
        .map((e) => e.activityType)
        .filter((type) => type.startsWith('group.') || type.startsWith('role.'))
        .sort(),
    ).toEqual(['group.created', 'role.assigned']);
    // A member added is a role assigned to that user, as through the admin API: their history shows it.
    expect(events.find((e) => e.activityType === 'role.assigned')).toMatchObject({
      userId: ada.id,
      objectType: 'role',
      objectId: group.id,
      details: { role: 'engineering_team', role_id: group.id },
      tags: ['scim'],
    });

    const user = (await scim('GET', `/Users/${ada.id}`)).json();
    expect(user.groups).toEqual([expect.objectContaining({ value: group.id, display: 'Engineering Team' })]);
    const members = (await scim('GET', `/Users?filter=${encodeURIComponent(`groups.value eq "${group.id}"`)}`)).json();
    expect(members).toMatchObject({ totalResults: 1, Resources: [{ id: ada.id }] });
    // Every way of listing users shows each one's groups: the look-up by userName (its own
    // statement), a filter, and the whole organization.
    const listed = [
      (await scim('GET', `/Users?filter=${encodeURIComponent(`userName eq "${ada.username}"`)}`)).json(),
      members,
      (await scim('GET', '/Users')).json(),
    ];
    for (const list of listed) {
      const found = (list.Resources as { id: string; groups: unknown }[]).find((r) => r.id === ada.id);
      expect(found?.groups).toEqual([
        { value: group.id, display: 'Engineering Team', $ref: expect.any(String), type: 'direct' },
      ]);
    }
    const byName = (await scim('GET', `/Users?filter=${encodeURIComponent('groups.display co "engineering"')}`)).json();
    expect(byName.totalResults).toBe(1);
  });

  it('leaves no id of an erased member in the organization’s events of group changes', async () => {
    const { org, scim } = await scimClient(t);
    const bo = await seedUser(t, org.id, { username: unique('bo') });
    const group = (
      await scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Erasable', members: [{ value: bo.id }] })
    ).json();
    const removed = await scim('PATCH', `/Groups/${group.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'remove', path: `members[value eq "${bo.id}"]` }],
    });
    expect(removed.statusCode, removed.body).toBe(200);
    expect((await scim('DELETE', `/Users/${bo.id}`)).statusCode).toBe(204);

    const rows = await t.database.db.select().from(activities).where(eq(activities.organizationId, org.id));
    expect(
      rows
        .filter((r) => r.activityType.startsWith('role.'))
        .map((r) => r.activityType)
        .sort(),
    ).toEqual(['role.assigned', 'role.unassigned']);
    for (const row of rows) expect(JSON.stringify(row), row.activityType).not.toContain(bo.id);
  });

  it('refuses a taken displayName (409 uniqueness), a missing one and members from elsewhere (400)', async () => {
    const a = await scimClient(t);
    const b = await scimClient(t);
    const stranger = await seedUser(t, b.org.id);
    expect((await a.scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Ops' })).statusCode).toBe(201);
    const dup = await a.scim('POST', '/Groups', { schemas: [GROUP], displayName: 'ops' });
    expect(dup.statusCode).toBe(409);
    expect(dup.json()).toMatchObject({ schemas: [ERROR], scimType: 'uniqueness' });
    const noName = await a.scim('POST', '/Groups', { schemas: [GROUP] });
    expect(noName.json()).toMatchObject({ status: '400', scimType: 'invalidValue' });
    const foreign = await a.scim('POST', '/Groups', {
      schemas: [GROUP],
      displayName: 'X',
      members: [{ value: stranger.id }],
    });
    expect(foreign.json()).toMatchObject({ status: '400', scimType: 'invalidValue' });
    expect((await a.scim('GET', '/Groups?filter=displayName%20eq%20%22X%22')).json().totalResults).toBe(0);
    // Another organization may use the same name.
    expect((await b.scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Ops' })).statusCode).toBe(201);
  });

  it('gives a group named like a global role (org_admin, viewer, any other) a code of its own, so it never stands in for that role', async () => {
    const { org, scim } = await scimClient(t);
    // An administrator may give an organization's role a global role's code; a group's name does not.
    const global = unique('eng').replace(/-/g, '_');
    const root = await superuserClient(t);
    expect((await root.post('/api/v1/roles/', { code: global, name: 'Engineer', level: 5 })).statusCode).toBe(201);
    for (const [displayName, code] of [
      ['org_admin', 'org_admin_2'],
      ['Viewer', 'viewer_2'],
      ['super admin', 'super_admin_2'],
      [global, `${global}_2`],
    ]) {
      const res = await scim('POST', '/Groups', { schemas: [GROUP], displayName });
      expect(res.statusCode, res.body).toBe(201);
      const [role] = await t.database.db.select().from(roles).where(eq(roles.id, res.json().id));
      expect(role).toMatchObject({ organizationId: org.id, code, level: 1000 });
    }
  });

  it('patches membership (add, remove by value filter, replace) and the name, with If-Match', async () => {
    const { org, scim } = await scimClient(t);
    const [u1, u2, u3] = [await seedUser(t, org.id), await seedUser(t, org.id), await seedUser(t, org.id)];
    const group = (
      await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), members: [{ value: u1.id }] })
    ).json();

    const added = await scim(
      'PATCH',
      `/Groups/${group.id}`,
      {
        schemas: [PATCH],
        Operations: [{ op: 'add', path: 'members', value: [{ value: u2.id }, { value: u3.id }] }],
      },
      { 'if-match': group.meta.version },
    );
    expect(added.statusCode).toBe(200);
    expect(
      added
        .json()
        .members.map((m: { value: string }) => m.value)
        .sort(),
    ).toEqual([u1.id, u2.id, u3.id].sort());

    const stale = await scim(
      'PATCH',
      `/Groups/${group.id}`,
      {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'displayName', value: 'Nope' }],
      },
      { 'if-match': group.meta.version },
    );
    expect(stale.statusCode).toBe(412);
    expect(stale.json()).toMatchObject({ schemas: [ERROR], status: '412' });

    const removed = await scim('PATCH', `/Groups/${group.id}`, {
      schemas: [PATCH],
      Operations: [
        { op: 'remove', path: `members[value eq "${u1.id}"]` },
        { op: 'replace', path: 'displayName', value: 'Renamed' },
      ],
    });
    expect(removed.json()).toMatchObject({ displayName: 'Renamed' });
    expect(
      removed
        .json()
        .members.map((m: { value: string }) => m.value)
        .sort(),
    ).toEqual([u2.id, u3.id].sort());

    const azureStyle = await scim('PATCH', `/Groups/${group.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'Remove', path: 'members', value: [{ value: u2.id }] }],
    });
    expect(azureStyle.json().members).toEqual([expect.objectContaining({ value: u3.id })]);

    const replaced = await scim('PUT', `/Groups/${group.id}`, {
      schemas: [GROUP],
      displayName: 'Renamed',
      members: [{ value: u1.id }],
    });
    expect(replaced.json().members).toEqual([expect.objectContaining({ value: u1.id })]);

    const filtered = (
      await scim(
        'GET',
        `/Groups?filter=${encodeURIComponent(`members.value eq "${u1.id}"`)}&excludedAttributes=members`,
      )
    ).json();
    expect(filtered).toMatchObject({ totalResults: 1, Resources: [{ id: group.id, displayName: 'Renamed' }] });
    expect(filtered.Resources[0].members).toBeUndefined();
  });

  it('moves the version when the admin API changes membership, so a PUT with the old If-Match answers 412 (RFC 7644 §3.14)', async () => {
    const { org, scim } = await scimClient(t);
    const root = await superuserClient(t);
    const [u1, u2] = [await seedUser(t, org.id), await seedUser(t, org.id)];
    const group = (
      await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), members: [{ value: u1.id }] })
    ).json();
    const read = async () => (await scim('GET', `/Groups/${group.id}`)).json();
    const before = await read();

    expect((await root.post(`/api/v1/users/${u2.id}/roles/`, { role: group.id })).statusCode).toBe(201);
    const assigned = await read();
    expect(assigned.meta.version).not.toBe(before.meta.version);
    expect(assigned.meta.lastModified).not.toBe(before.meta.lastModified);

    const stale = await scim(
      'PUT',
      `/Groups/${group.id}`,
      { schemas: [GROUP], displayName: before.displayName, members: [{ value: u1.id }] },
      { 'if-match': before.meta.version },
    );
    expect(stale.statusCode).toBe(412);
    const kept = await read();
    expect(kept.members.map((m: { value: string }) => m.value).sort()).toEqual([u1.id, u2.id].sort());
    expect(kept.meta.version).toBe(assigned.meta.version);

    expect((await root.delete(`/api/v1/users/${u2.id}/roles/${group.id}/`)).statusCode).toBe(204);
    const unassigned = await read();
    expect(unassigned.meta.version).not.toBe(assigned.meta.version);
    expect(unassigned.members).toEqual([expect.objectContaining({ value: u1.id })]);

    // Deleting a member takes their assignment with them: the group changes too.
    expect((await root.delete(`/api/v1/users/${u1.id}/`)).statusCode).toBe(204);
    const emptied = await read();
    expect(emptied.meta.version).not.toBe(unassigned.meta.version);
    expect(emptied.members ?? []).toEqual([]);
  });

  it("moves a member's User version when its groups change by either API, so no stale 304 or If-Match (RFC 7232 §2.3)", async () => {
    const { org, scim } = await scimClient(t);
    const root = await superuserClient(t);
    const [u1, u2] = [await seedUser(t, org.id), await seedUser(t, org.id)];
    const versionOf = async (id: string) => (await scim('GET', `/Users/${id}`)).json().meta.version as string;
    const seen = new Set<string>();
    // Each step must give the user a version it never had, with the groups it now has.
    const expectMoved = async (id: string, step: string, groups: string[]) => {
      const user = (await scim('GET', `/Users/${id}`)).json();
      expect((user.groups ?? []).map((g: { value: string }) => g.value).sort(), step).toEqual(groups.sort());
      expect(seen.has(`${id} ${user.meta.version}`), step).toBe(false);
      seen.add(`${id} ${user.meta.version}`);
    };
    const first = await versionOf(u1.id);
    seen.add(`${u1.id} ${first}`);
    seen.add(`${u2.id} ${await versionOf(u2.id)}`);

    const g1 = (
      await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), members: [{ value: u1.id }] })
    ).json();
    await expectMoved(u1.id, 'SCIM group created with the user', [g1.id]);
    const fresh = await scim('GET', `/Users/${u1.id}`, undefined, { 'if-none-match': first });
    expect(fresh.statusCode).toBe(200);
    expect(fresh.json().groups).toEqual([expect.objectContaining({ value: g1.id })]);
    const stale = await scim(
      'PATCH',
      `/Users/${u1.id}`,
      { schemas: [PATCH], Operations: [{ op: 'replace', path: 'title', value: 'x' }] },
      { 'if-match': first },
    );
    expect(stale.statusCode).toBe(412);

    const g2 = (await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g') })).json();
    expect((await root.post(`/api/v1/users/${u1.id}/roles/`, { role: g2.id })).statusCode).toBe(201);
    await expectMoved(u1.id, 'admin API assigned', [g1.id, g2.id]);
    expect((await root.delete(`/api/v1/users/${u1.id}/roles/${g2.id}/`)).statusCode).toBe(204);
    await expectMoved(u1.id, 'admin API removed', [g1.id]);

    const patchMembers = (op: object) =>
      scim('PATCH', `/Groups/${g1.id}`, { schemas: [PATCH], Operations: [op] }).then((r) => r.statusCode);
    expect(await patchMembers({ op: 'add', path: 'members', value: [{ value: u2.id }] })).toBe(200);
    await expectMoved(u2.id, 'SCIM member added', [g1.id]);
    const u1Before = await versionOf(u1.id);
    expect(await patchMembers({ op: 'remove', path: `members[value eq "${u2.id}"]` })).toBe(200);
    await expectMoved(u2.id, 'SCIM member removed', []);
    // A member the change does not concern keeps its version.
    expect(await versionOf(u1.id)).toBe(u1Before);
    expect(await patchMembers({ op: 'replace', path: 'members', value: [{ value: u2.id }] })).toBe(200);
    await expectMoved(u1.id, 'SCIM members replaced (left)', []);
    await expectMoved(u2.id, 'SCIM members replaced (joined)', [g1.id]);

    expect((await scim('DELETE', `/Groups/${g1.id}`)).statusCode).toBe(204);
    await expectMoved(u2.id, 'SCIM group deleted', []);
    expect((await root.post(`/api/v1/users/${u2.id}/roles/`, { role: g2.id })).statusCode).toBe(201);
    await expectMoved(u2.id, 'admin API assigned', [g2.id]);
    expect((await root.delete(`/api/v1/roles/${g2.id}`)).statusCode).toBe(204);
    await expectMoved(u2.id, 'admin API deleted the role', []);
  });

  it("moves a Group's version when a member's display changes, and only then", async () => {
    const { org, scim } = await scimClient(t);
    const u1 = await seedUser(t, org.id, { username: unique('before') });
    const group = (
      await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), members: [{ value: u1.id }] })
    ).json();
    const read = async () => (await scim('GET', `/Groups/${group.id}`)).json();
    const patchUser = (value: object) =>
      scim('PATCH', `/Users/${u1.id}`, { schemas: [PATCH], Operations: [{ op: 'replace', value }] });

    const before = await read();
    expect((await patchUser({ title: 'Engineer', 'name.givenName': 'Ada' })).statusCode).toBe(200);
    expect((await read()).meta.version).toBe(before.meta.version);

    const renamedTo = unique('after');
    expect((await patchUser({ userName: renamedTo })).statusCode).toBe(200);
    const renamed = await read();
    expect(renamed.members).toEqual([expect.objectContaining({ value: u1.id, display: renamedTo })]);
    expect(renamed.meta.version).not.toBe(before.meta.version);
    const stale = await scim('GET', `/Groups/${group.id}`, undefined, { 'if-none-match': before.meta.version });
    expect(stale.statusCode).toBe(200);

    // The user renaming themselves counts as well.
    const self = await loginAs(t, (await t.database.db.select().from(users).where(eq(users.id, u1.id)))[0] as User);
    const selfNamed = unique('self');
    expect((await self.patch('/api/v1/users/profile', { username: selfNamed })).statusCode).toBe(200);
    const again = await read();
    expect(again.members).toEqual([expect.objectContaining({ display: selfNamed })]);
    expect(again.meta.version).not.toBe(renamed.meta.version);
  });

  it('answers only members.value when asked for it, or members without it (RFC 7644 §3.9)', async () => {
    const { org, scim } = await scimClient(t);
    const [u1, u2] = [await seedUser(t, org.id), await seedUser(t, org.id)];
    const group = (
      await scim('POST', '/Groups', {
        schemas: [GROUP],
        displayName: unique('g'),
        members: [{ value: u1.id }, { value: u2.id }],
      })
    ).json();
    const values = [u1.id, u2.id].sort().map((value) => ({ value }));

    const one = (await scim('GET', `/Groups/${group.id}?attributes=members.value`)).json();
    expect(one).toEqual({ schemas: [GROUP], id: group.id, members: values });
    const listed = (
      await scim(
        'GET',
        `/Groups?attributes=displayName,members.value&filter=${encodeURIComponent(`id eq "${group.id}"`)}`,
      )
    ).json();
    expect(listed.Resources).toEqual([
      { schemas: [GROUP], id: group.id, displayName: group.displayName, members: values },
    ]);

    const without = (await scim('GET', `/Groups/${group.id}?excludedAttributes=members.$ref,members.display`)).json();
    expect(without.members).toEqual(values.map((v) => ({ ...v, type: 'User' })));
    expect(without.displayName).toBe(group.displayName);
  });

  it('stores externalId: on create, found by filter, kept by PATCH, changed and cleared by PUT, unique per organization', async () => {
    const a = await scimClient(t);
    const b = await scimClient(t);
    const ext = unique('ext');
    const created = await a.scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), externalId: ext });
    expect(created.statusCode).toBe(201);
    const group = created.json();
    expect(group.externalId).toBe(ext);
    const [role] = await t.database.db.select().from(roles).where(eq(roles.id, group.id));
    expect(role?.scimExternalId).toBe(ext);
    expect((await a.scim('GET', `/Groups/${group.id}`)).json().externalId).toBe(ext);

    const byExt = (await a.scim('GET', `/Groups?filter=${encodeURIComponent(`externalId eq "${ext}"`)}`)).json();
    expect(byExt).toMatchObject({ totalResults: 1, Resources: [{ id: group.id, externalId: ext }] });
    // Case-exact, as for Users (RFC 7643 §3.1: externalId is caseExact).
    const upper = `/Groups?filter=${encodeURIComponent(`externalId eq "${ext.toUpperCase()}"`)}`;
    expect((await a.scim('GET', upper)).json().totalResults).toBe(0);
    // Another organization neither sees it nor is kept from using the same value.
    expect(
      (await b.scim('GET', `/Groups?filter=${encodeURIComponent(`externalId eq "${ext}"`)}`)).json().totalResults,
    ).toBe(0);
    expect(
      (await b.scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), externalId: ext })).statusCode,
    ).toBe(201);

    const dup = await a.scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), externalId: ext });
    expect(dup.statusCode).toBe(409);
    expect(dup.json()).toMatchObject({ schemas: [ERROR], scimType: 'uniqueness' });
    const bad = await a.scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), externalId: 42 });
    expect(bad.json()).toMatchObject({ status: '400', scimType: 'invalidValue' });

    const renamed = await a.scim('PATCH', `/Groups/${group.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'displayName', value: unique('renamed') }],
    });
    expect(renamed.json().externalId).toBe(ext);
    const ext2 = unique('ext');
    const patched = await a.scim('PATCH', `/Groups/${group.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'externalId', value: ext2 }],
    });
    expect(patched.statusCode).toBe(200);
    expect(patched.json().externalId).toBe(ext2);
    const other = (
      await a.scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), externalId: ext })
    ).json();
    const clash = await a.scim('PUT', `/Groups/${other.id}`, {
      schemas: [GROUP],
      displayName: other.displayName,
      externalId: ext2,
    });
    expect(clash.statusCode).toBe(409);

    const cleared = await a.scim('PUT', `/Groups/${group.id}`, {
      schemas: [GROUP],
      displayName: renamed.json().displayName,
    });
    expect(cleared.statusCode).toBe(200);
    expect(cleared.json().externalId).toBeUndefined();
    const [after] = await t.database.db.select().from(roles).where(eq(roles.id, group.id));
    expect(after?.scimExternalId).toBeNull();
    const updates = await t.database.db.select().from(activities).where(eq(activities.organizationId, a.org.id));
    expect(updates.filter((e) => e.activityType === 'group.updated').map((e) => e.details)).toContainEqual(
      expect.objectContaining({ external_id: { from: ext, to: ext2 } }),
    );
  });

  it('finds groups without an externalId by "not (externalId eq …)" (RFC 7644 §3.4.2.2)', async () => {
    const { scim } = await scimClient(t);
    const ext = unique('ext');
    const keyed = (
      await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), externalId: ext })
    ).json();
    const bare = (await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g') })).json();
    const ids = async (filter: string) =>
      (await scim('GET', `/Groups?filter=${encodeURIComponent(filter)}`))
        .json()
        .Resources.map((g: { id: string }) => g.id);
    expect(await ids(`not (externalId eq "${ext}")`)).toEqual([bare.id]);
    expect(await ids('not (externalId eq "other")')).toEqual([keyed.id, bare.id].sort());
  });

  it('answers 400 invalidSyntax to a POST or PUT without "schemas" (RFC 7643 §3: it is required), writing nothing', async () => {
    const { org, scim } = await scimClient(t);
    const displayName = unique('g');
    const created = await scim('POST', '/Groups', { displayName });
    expect(created.statusCode).toBe(400);
    expect(created.json()).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidSyntax' });
    expect(await t.database.db.select().from(roles).where(eq(roles.organizationId, org.id))).toEqual([]);

    const group = (await scim('POST', '/Groups', { schemas: [GROUP], displayName })).json();
    const replaced = await scim('PUT', `/Groups/${group.id}`, { displayName: unique('renamed') });
    expect(replaced.statusCode).toBe(400);
    expect(replaced.json()).toMatchObject({ schemas: [ERROR], status: '400', scimType: 'invalidSyntax' });
    expect((await scim('GET', `/Groups/${group.id}`)).json().displayName).toBe(displayName);

    // URNs compare case-insensitively (RFC 7643 §2.1), as for Users.
    const upper = await scim('PUT', `/Groups/${group.id}`, { schemas: [GROUP.toUpperCase()], displayName });
    expect(upper.statusCode, upper.body).toBe(200);
  });

  it('deletes a group: its role and assignments go, and it answers 404 afterwards', async () => {
    const { org, scim } = await scimClient(t);
    const u = await seedUser(t, org.id);
    const group = (
      await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), members: [{ value: u.id }] })
    ).json();
    expect((await scim('DELETE', `/Groups/${group.id}`)).statusCode).toBe(204);
    expect((await scim('GET', `/Groups/${group.id}`)).statusCode).toBe(404);
    expect(await t.database.db.select().from(userRoles).where(eq(userRoles.userId, u.id))).toEqual([]);
  });

  it('gives a member who leaves their primary group, or whose primary group is deleted, another primary role', async () => {
    const { org, scim } = await scimClient(t);
    const u = await seedUser(t, org.id);
    const create = async () =>
      (
        await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), members: [{ value: u.id }] })
      ).json();
    const [first, second, third] = [await create(), await create(), await create()];
    const primaryOf = async () =>
      (await t.database.db.select().from(userRoles).where(eq(userRoles.userId, u.id)))
        .filter((held) => held.isPrimary)
        .map((held) => held.roleId);
    expect(await primaryOf()).toEqual([first.id]);

    const left = await scim('PATCH', `/Groups/${first.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'remove', path: `members[value eq "${u.id}"]` }],
    });
    expect(left.statusCode, left.body).toBe(200);
    // Groups share level 1000: the lower code is the more powerful.
    const [next, last] = [second, third].sort((a, b) => (a.displayName < b.displayName ? -1 : 1));
    expect(await primaryOf()).toEqual([next.id]);

    expect((await scim('DELETE', `/Groups/${next.id}`)).statusCode).toBe(204);
    expect(await primaryOf()).toEqual([last.id]);
  });

  it("never shows or changes another organization's groups, nor global roles", async () => {
    const a = await scimClient(t);
    const b = await scimClient(t);
    const theirs = (await b.scim('POST', '/Groups', { schemas: [GROUP], displayName: 'Theirs' })).json();
    for (const [method, body] of [
      ['GET'],
      ['PUT', { schemas: [GROUP], displayName: 'Mine' }],
      ['PATCH', { schemas: [PATCH], Operations: [{ op: 'replace', path: 'displayName', value: 'Mine' }] }],
      ['DELETE'],
    ] as const) {
      expect((await a.scim(method, `/Groups/${theirs.id}`, body)).statusCode, method).toBe(404);
    }
    const [globalRole] = await t.database.db.select().from(roles).where(eq(roles.code, 'org_admin'));
    if (globalRole) expect((await a.scim('GET', `/Groups/${globalRole.id}`)).statusCode).toBe(404);
    const list = (await a.scim('GET', '/Groups')).json();
    expect(list.totalResults).toBe(0);
  });

  it('answers 400 invalidPath for an unknown attribute and 400 mutability for a read-only one, changing nothing', async () => {
    const { org, scim } = await scimClient(t);
    const ada = await seedUser(t, org.id);
    const group = (
      await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g'), members: [{ value: ada.id }] })
    ).json();
    const cases: [unknown, string][] = [
      [{ op: 'replace', path: 'description', value: 'x' }, 'invalidPath'],
      [{ op: 'add', value: { owner: 'x' } }, 'invalidPath'],
      // displayName has no sub-attributes (RFC 7644 §3.5.2).
      [{ op: 'replace', path: 'displayName.x', value: 'x' }, 'invalidPath'],
      [{ op: 'remove', path: 'externalId.value' }, 'invalidPath'],
      [{ op: 'replace', path: 'id', value: ada.id }, 'mutability'],
      [{ op: 'replace', path: 'meta', value: {} }, 'mutability'],
      [{ op: 'replace', path: `members[value eq "${ada.id}"].display`, value: 'Someone' }, 'mutability'],
      [{ op: 'replace', path: `members[value eq "${ada.id}"].value`, value: ada.id }, 'mutability'],
    ];
    for (const [operation, scimType] of cases) {
      const res = await scim('PATCH', `/Groups/${group.id}`, {
        schemas: [PATCH],
        Operations: [{ op: 'replace', path: 'displayName', value: 'Renamed' }, operation],
      });
      expect(res.statusCode, JSON.stringify(operation)).toBe(400);
      expect(res.json()).toMatchObject({ schemas: [ERROR], status: '400', scimType });
    }
    const after = (await scim('GET', `/Groups/${group.id}`)).json();
    expect(after).toMatchObject({ displayName: group.displayName, meta: { version: group.meta.version } });
  });

  it('renames with a value holding the id, as Okta sends it, and ignores id and meta in a PUT body', async () => {
    const { scim } = await scimClient(t);
    const group = (await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g') })).json();
    const other = (await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('other') })).json();
    const renamed = await scim('PATCH', `/Groups/${group.id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', value: { id: group.id, displayName: `${group.displayName} 2` } }],
    });
    expect(renamed.statusCode).toBe(200);
    expect(renamed.json()).toMatchObject({ id: group.id, displayName: `${group.displayName} 2` });
    const put = await scim('PUT', `/Groups/${group.id}`, {
      schemas: [GROUP],
      id: other.id,
      meta: { version: 'W/"x"' },
      displayName: `${group.displayName} 3`,
    });
    expect(put.statusCode).toBe(200);
    expect(put.json()).toMatchObject({ id: group.id, displayName: `${group.displayName} 3` });
    expect((await scim('GET', `/Groups/${other.id}`)).json().displayName).toBe(other.displayName);
  });

  it('writes groups within the delegation ceiling of whoever created the key', async () => {
    const root = await superuserClient(t);
    const org = await seedOrganization(t);
    // A role of the organization above an organization admin: a lower level and a grant they lack.
    const boss = await root.post('/api/v1/roles/', {
      code: unique('boss_').replace(/-/g, '_'),
      name: 'Boss',
      level: 0,
      organization: org.code,
      permissions: ['modules.manage'],
      modules: [],
    });
    expect(boss.statusCode, boss.body).toBe(201);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    const colleague = await seedUser(t, org.id);
    const made = await admin.post('/api/v1/api-keys/', { name: 'idp', organization: org.code, scopes: ['scim'] });
    expect(made.statusCode, made.body).toBe(201);
    const asAdminKey = (method: 'PATCH' | 'DELETE' | 'POST', url: string, body?: unknown) =>
      t.request({
        method,
        url: `/scim/v2${url}`,
        headers: { authorization: `Bearer ${made.json().key}`, 'content-type': 'application/scim+json' },
        ...(body === undefined ? {} : { payload: JSON.stringify(body) }),
      });
    const add = (id: string) => ({
      schemas: [PATCH],
      Operations: [{ op: 'add', path: 'members', value: [{ value: id }] }],
    });

    // The admin cannot join (or hand out, or delete) the boss role through their own key…
    for (const res of [
      await asAdminKey('PATCH', `/Groups/${boss.json().id}`, add(admin.user.id)),
      await asAdminKey('PATCH', `/Groups/${boss.json().id}`, add(colleague.id)),
      await asAdminKey('DELETE', `/Groups/${boss.json().id}`),
    ]) {
      expect(res.statusCode, res.body).toBe(403);
      expect(res.json()).toMatchObject({ schemas: [ERROR], status: '403' });
    }
    expect((await admin.get('/api/v1/users/profile/permissions/')).json().permissions).not.toContain('modules.manage');
    // …but manages groups within their reach, themselves included, as an identity provider pushes them.
    const team = await asAdminKey('POST', '/Groups', { schemas: [GROUP], displayName: unique('Team ') });
    expect(team.statusCode, team.body).toBe(201);
    expect((await asAdminKey('PATCH', `/Groups/${team.json().id}`, add(admin.user.id))).statusCode).toBe(200);
    expect((await asAdminKey('PATCH', `/Groups/${team.json().id}`, add(colleague.id))).statusCode).toBe(200);
    // An operator's key has no ceiling.
    const { key } = await createApiKey(t.database.db, OPERATOR, {
      name: 'op',
      organization: org.code,
      scopes: ['scim'],
    });
    const operator = await t.request({
      method: 'PATCH',
      url: `/scim/v2/Groups/${boss.json().id}`,
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/scim+json' },
      payload: JSON.stringify(add(colleague.id)),
    });
    expect(operator.statusCode, operator.body).toBe(200);
  });

  it("refuses adding a member holding a grant the key's creator lacks, at a weaker level too", async () => {
    const root = await superuserClient(t);
    const org = await seedOrganization(t);
    // Weaker than an organization admin by level, but granting what they do not hold.
    const catalog = await root.post('/api/v1/roles/', {
      code: unique('catalog_').replace(/-/g, '_'),
      name: 'Catalog keeper',
      level: 5,
      organization: org.code,
      permissions: ['modules.manage'],
      modules: [],
    });
    expect(catalog.statusCode, catalog.body).toBe(201);
    const keeper = await seedUser(t, org.id);
    expect((await root.post(`/api/v1/users/${keeper.id}/roles/`, { role: catalog.json().code })).statusCode).toBe(201);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    const made = await admin.post('/api/v1/api-keys/', { name: 'idp', organization: org.code, scopes: ['scim'] });
    expect(made.statusCode, made.body).toBe(201);
    const asAdminKey = (method: 'PATCH' | 'POST', url: string, body: unknown) =>
      t.request({
        method,
        url: `/scim/v2${url}`,
        headers: { authorization: `Bearer ${made.json().key}`, 'content-type': 'application/scim+json' },
        payload: JSON.stringify(body),
      });
    const team = await asAdminKey('POST', '/Groups', { schemas: [GROUP], displayName: unique('Team ') });
    expect(team.statusCode, team.body).toBe(201);

    const added = await asAdminKey('PATCH', `/Groups/${team.json().id}`, {
      schemas: [PATCH],
      Operations: [{ op: 'add', path: 'members', value: [{ value: keeper.id }] }],
    });
    expect(added.statusCode, added.body).toBe(403);
    expect(added.json().detail).toMatch(/grants beyond the key's creator's/);
    const members = await t.database.db.select().from(userRoles).where(eq(userRoles.userId, keeper.id));
    expect(members).toHaveLength(1);
  });
  it('answers 412 to a GET whose If-Match is not the current version, and to writes whose If-None-Match is (RFC 7232)', async () => {
    const { scim } = await scimClient(t);
    const group = (await scim('POST', '/Groups', { schemas: [GROUP], displayName: unique('g') })).json();
    const url = `/Groups/${group.id}`;
    const stale = 'W/"stale"';

    const mismatch = await scim('GET', url, undefined, { 'if-match': stale });
    expect(mismatch.statusCode).toBe(412);
    expect(mismatch.json()).toMatchObject({ schemas: [ERROR], status: '412' });
    expect((await scim('GET', url, undefined, { 'if-match': group.meta.version })).statusCode).toBe(200);
    expect((await scim('GET', url, undefined, { 'if-none-match': group.meta.version })).statusCode).toBe(304);

    const put = { schemas: [GROUP], displayName: unique('renamed') };
    const patch = { schemas: [PATCH], Operations: [{ op: 'replace', path: 'displayName', value: unique('renamed') }] };
    for (const ifNoneMatch of [group.meta.version, '*']) {
      for (const [method, body] of [
        ['PUT', put],
        ['PATCH', patch],
        ['DELETE', undefined],
      ] as const) {
        const res = await scim(method, url, body, { 'if-none-match': ifNoneMatch });
        expect(res.statusCode, `${method} If-None-Match: ${ifNoneMatch}`).toBe(412);
        expect(res.json()).toMatchObject({ schemas: [ERROR], status: '412' });
      }
    }
    expect((await scim('GET', url)).json()).toMatchObject({ displayName: group.displayName, meta: group.meta });
    expect((await scim('PUT', url, put, { 'if-none-match': stale })).statusCode).toBe(200);
  });

  it('shapes the group that POST, PUT and PATCH answer by attributes and excludedAttributes (RFC 7644 §3.9)', async () => {
    const { org, scim } = await scimClient(t);
    const ada = await seedUser(t, org.id);
    const created = await scim('POST', '/Groups?attributes=displayName', {
      schemas: [GROUP],
      displayName: unique('g'),
      members: [{ value: ada.id }],
    });
    expect(created.statusCode, created.body).toBe(201);
    const { id, displayName } = created.json();
    expect(created.json()).toEqual({ schemas: [GROUP], id, displayName });
    expect(created.headers.location).toBe(`http://gatehouse.test/scim/v2/Groups/${id}`);

    const put = await scim('PUT', `/Groups/${id}?excludedAttributes=members`, {
      schemas: [GROUP],
      displayName,
      members: [{ value: ada.id }],
    });
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json().members).toBeUndefined();
    expect(put.json()).toMatchObject({ id, displayName, meta: { resourceType: 'Group' } });

    const patched = await scim('PATCH', `/Groups/${id}?attributes=members.value`, {
      schemas: [PATCH],
      Operations: [{ op: 'replace', path: 'displayName', value: `${displayName}-2` }],
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json()).toEqual({ schemas: [GROUP], id, members: [{ value: ada.id }] });
    expect(patched.headers.etag).toBe((await scim('GET', `/Groups/${id}`)).json().meta.version);
  });
});
