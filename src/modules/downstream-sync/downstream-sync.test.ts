import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { eq, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listenOnLoopback } from '../../../test/loopback-server.js';
import { scimClient } from '../../../test/scim-client.js';
import {
  type Client,
  clientWithRole,
  createOrganizationRole,
  grantRole,
  loginAs,
  seedOrganization,
  seedUser,
  superuserClient,
} from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { buildApp } from '../../app.js';
import { queryRows } from '../../platform/db/client.js';
import { enqueueJob } from '../../platform/jobs/queue.js';
import { runPendingJobs } from '../../platform/jobs/worker.js';
import { REDACTED } from '../../platform/secret-text.js';
import { createApiKey, OPERATOR } from '../api-keys/api-keys.service.js';
import type { Organization } from '../organizations/organizations.table.js';
import { type User, users } from '../users/users.table.js';
import { SYNC_SWEEP_JOB } from './downstream-sync.jobs.js';

/**
 * Gatehouse syncing its users to a downstream system with seed 000's provisioning API: here another
 * Gatehouse, a real server on loopback, which speaks that API.
 */
describe('outbound user sync to a seed-000 downstream', () => {
  let t: TestApp;
  let downstream: TestApp;
  let downstreamUrl: string;
  let key: string;
  let root: Client;
  let org: Organization;
  let ada: User;
  let bob: User;

  beforeAll(async () => {
    t = await startTestApp({ DOWNSTREAM_SYNC_INTERVAL_SECONDS: '0' });
    downstream = await startTestApp();
    downstreamUrl = await downstream.app.listen({ host: '127.0.0.1', port: 0 });
    key = (
      await createApiKey(downstream.database.db, OPERATOR, {
        name: 'upstream',
        organization: null,
        scopes: ['provisioning'],
      })
    ).key;
    root = await superuserClient(t);
    org = await seedOrganization(t);
    ada = await seedUser(t, org.id, { externalId: unique('kc-ada-'), email: 'ada@example.com', firstName: 'Ada' });
    bob = await seedUser(t, org.id, { externalId: unique('kc-bob-'), email: 'bob@example.com' });
    // Without a keycloak_id, or never active: nothing to send.
    await seedUser(t, org.id, { email: 'no-id@example.com' });
    await seedUser(t, org.id, { externalId: unique('kc-gone-'), status: 'deactivated' });
  });
  afterAll(async () => {
    await t.close();
    await downstream.close();
  });

  async function target(baseUrl = `${downstreamUrl}/api/provisioning`, organization = org.code) {
    const res = await root.post('/api/v1/integrations/', {
      name: unique('downstream '),
      service_type: 'user_provisioning',
      auth_type: 'api_key',
      base_url: baseUrl,
      organization,
      credentials: { api_key: key },
    });
    expect(res.statusCode, res.body).toBe(201);
    return res.json().id as string;
  }

  const downstreamUser = async (externalId: string | null) => {
    const [row] = await downstream.database.db
      .select()
      .from(users)
      .where(eq(users.externalId, externalId as string));
    return row;
  };

  it('sends the active users with a keycloak_id, then only what changed, and deactivates who left', async () => {
    const id = await target();
    const first = await root.post(`/api/v1/integrations/${id}/sync/`, {});
    expect(first.statusCode, first.body).toBe(200);
    expect(first.json()).toMatchObject({ pending: 2, upserted: 2, deactivated: 0, failed: 0, stopped: null });
    expect(await downstreamUser(ada.externalId)).toMatchObject({ email: 'ada@example.com', firstName: 'Ada' });
    expect((await downstreamUser(bob.externalId))?.status).toBe('active');

    expect((await root.post(`/api/v1/integrations/${id}/sync/`)).json()).toMatchObject({ pending: 0, upserted: 0 });

    await root.patch(`/api/v1/users/${ada.id}`, { first_name: 'Augusta' });
    await root.patch(`/api/v1/users/${bob.id}`, { status: 'deactivated' });
    const dry = (await root.post(`/api/v1/integrations/${id}/sync/`, { dry_run: true })).json();
    expect(dry).toMatchObject({ dry_run: true, pending: 2, upserted: 0, deactivated: 0 });
    expect((await downstreamUser(ada.externalId))?.firstName).toBe('Ada');

    const status = (await root.get(`/api/v1/integrations/${id}/sync-status/`)).json();
    expect(status).toMatchObject({ synced: 2, pending: 2, failed: 0, failures: [] });
    expect(Date.parse(status.last_synced_at)).not.toBeNaN();

    const second = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
    expect(second).toMatchObject({ pending: 2, upserted: 1, deactivated: 1, failed: 0 });
    expect((await downstreamUser(ada.externalId))?.firstName).toBe('Augusta');
    expect((await downstreamUser(bob.externalId))?.status).toBe('deactivated');

    // Every call went through the registry: logged, with the key redacted.
    const logs = await queryRows<{ method: string; endpoint: string; request_headers: Record<string, string> }>(
      t.database.db,
      sql`select method, endpoint, request_headers from integration_logs where integration_id = ${id} order by created_at`,
    );
    expect(logs.map((l) => l.method)).toEqual(['POST', 'POST', 'PUT']);
    expect(logs[2]?.endpoint).toContain(`/api/provisioning/users/${bob.externalId}/deactivate`);
    expect(JSON.stringify(logs)).not.toContain(key);

    const events = await queryRows<{ actor_id: string; details: Record<string, unknown> }>(
      t.database.db,
      sql`select actor_id, details from activities where activity_type = 'integration.synced' and object_id = ${id} order by id`,
    );
    expect(events).toHaveLength(3);
    expect(events[2]).toMatchObject({ actor_id: root.user.id, details: { upserted: 1, deactivated: 1 } });
  });

  it("sends a deactivated organization's users as deactivated, and as active again once it is reactivated", async () => {
    const gamma = await seedOrganization(t);
    const cy = await seedUser(t, gamma.id, { externalId: unique('kc-cy-'), email: 'cy@example.com' });
    const di = await seedUser(t, gamma.id, { externalId: unique('kc-di-'), email: 'di@example.com' });
    const id = await target(undefined, gamma.code);
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, {})).json()).toMatchObject({ upserted: 2 });

    expect((await root.post(`/api/v1/organizations/${gamma.code}/deactivate/`)).statusCode).toBe(200);
    // Nothing changed on the users themselves: the organization's state alone makes them pending.
    expect((await root.get(`/api/v1/integrations/${id}/sync-status/`)).json()).toMatchObject({ pending: 2 });
    const off = (await root.post(`/api/v1/integrations/${id}/sync/`, { full: true })).json();
    expect(off).toMatchObject({ pending: 2, upserted: 0, deactivated: 2, failed: 0 });
    expect((await downstreamUser(cy.externalId))?.status).toBe('deactivated');
    expect((await downstreamUser(di.externalId))?.status).toBe('deactivated');
    const logs = await queryRows<{ method: string }>(
      t.database.db,
      sql`select method from integration_logs where integration_id = ${id} order by created_at`,
    );
    expect(logs.map((l) => l.method)).toEqual(['POST', 'PUT', 'PUT']);
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, {})).json()).toMatchObject({ pending: 0 });

    expect((await root.patch(`/api/v1/organizations/${gamma.code}/`, { is_active: true })).statusCode).toBe(200);
    const on = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
    expect(on).toMatchObject({ pending: 2, upserted: 2, deactivated: 0, failed: 0 });
    expect((await downstreamUser(cy.externalId))?.status).toBe('active');
    expect((await downstreamUser(di.externalId))?.status).toBe('active');
  });

  it('deactivates downstream the users deleted here, by the admin API or SCIM', async () => {
    const { org: gone, scim } = await scimClient(t);
    const id = await target(undefined, gone.code);
    const fay = await seedUser(t, gone.id, { externalId: unique('kc-fay-') });
    const gus = await seedUser(t, gone.id, { externalId: unique('kc-gus-') });
    const hal = await seedUser(t, gone.id, { externalId: unique('kc-hal-') });
    const ivy = await seedUser(t, gone.id, { externalId: unique('kc-ivy-') });
    // Never sent: deleting it sends nothing.
    const jon = await seedUser(t, gone.id, { externalId: unique('kc-jon-'), status: 'deactivated' });
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, {})).json()).toMatchObject({ upserted: 4 });

    expect((await root.delete(`/api/v1/users/${fay.id}/`)).statusCode).toBe(204);
    expect((await scim('DELETE', `/Users/${gus.id}`)).statusCode).toBe(204);
    expect((await root.delete(`/api/v1/users/${hal.id}/`)).statusCode).toBe(204);
    expect((await root.delete(`/api/v1/users/${jon.id}/`)).statusCode).toBe(204);
    // The downstream lost hal on its own: its 404 counts as done.
    await downstream.database.db.delete(users).where(eq(users.externalId, hal.externalId as string));

    expect((await root.get(`/api/v1/integrations/${id}/sync-status/`)).json()).toMatchObject({
      synced: 1,
      pending: 3,
      failed: 0,
    });
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, { dry_run: true })).json()).toMatchObject({
      pending: 3,
    });
    const res = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
    expect(res).toMatchObject({ pending: 3, upserted: 0, deactivated: 3, failed: 0, stopped: null });
    expect((await downstreamUser(fay.externalId))?.status).toBe('deactivated');
    expect((await downstreamUser(gus.externalId))?.status).toBe('deactivated');
    expect((await downstreamUser(ivy.externalId))?.status).toBe('active');

    // Done with: nothing is left of the deleted users, and nothing more is sent.
    expect((await root.get(`/api/v1/integrations/${id}/sync-status/`)).json()).toMatchObject({
      synced: 1,
      pending: 0,
      failed: 0,
    });
    const left = await queryRows<{ user_id: string }>(
      t.database.db,
      sql`select user_id from user_sync_states where integration_id = ${id}`,
    );
    expect(left).toEqual([{ user_id: ivy.id }]);
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, { full: true })).json()).toMatchObject({
      pending: 1,
      upserted: 1,
      deactivated: 0,
    });
  });

  it('keeps a deleted user for the next sync while the downstream does not take its deactivation', async () => {
    const other = await seedOrganization(t);
    const id = await target(undefined, other.code);
    const kim = await seedUser(t, other.id, { externalId: unique('kc-kim-') });
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, {})).json()).toMatchObject({ upserted: 1 });
    expect((await root.delete(`/api/v1/users/${kim.id}/`)).statusCode).toBe(204);

    // The downstream refuses the key for now.
    const wrongKey = await root.patch(`/api/v1/integrations/${id}/`, { credentials: { api_key: 'not-the-key' } });
    expect(wrongKey.statusCode, wrongKey.body).toBe(200);
    const refused = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
    expect(refused).toMatchObject({ pending: 1, deactivated: 0, failed: 1 });
    expect(refused.stopped).toMatch(/^The downstream did not take a deactivation: HTTP 401/);
    expect(refused.failures).toEqual([expect.objectContaining({ user_id: kim.id, keycloak_id: kim.externalId })]);
    const status = (await root.get(`/api/v1/integrations/${id}/sync-status/`)).json();
    expect(status).toMatchObject({ synced: 0, pending: 1, failed: 1 });
    expect(status.failures).toEqual([expect.objectContaining({ user_id: kim.id, keycloak_id: kim.externalId })]);
    expect((await downstreamUser(kim.externalId))?.status).toBe('active');

    expect((await root.patch(`/api/v1/integrations/${id}/`, { credentials: { api_key: key } })).statusCode).toBe(200);
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, {})).json()).toMatchObject({
      pending: 1,
      deactivated: 1,
      failed: 0,
    });
    expect((await downstreamUser(kim.externalId))?.status).toBe('deactivated');
    expect((await root.get(`/api/v1/integrations/${id}/sync-status/`)).json()).toMatchObject({
      synced: 0,
      pending: 0,
      failed: 0,
    });
  });

  it('deactivates the keycloak_id a user was sent under once it changes, then sends the new one', async () => {
    const other = await seedOrganization(t);
    const id = await target(undefined, other.code);
    const lea = await seedUser(t, other.id, { externalId: unique('kc-lea-'), email: 'lea@example.com' });
    const max = await seedUser(t, other.id, { externalId: unique('kc-max-'), email: 'max@example.com' });
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, {})).json()).toMatchObject({ upserted: 2 });

    const renamed = unique('kc-lea-new-');
    const patched = await root.patch(`/api/v1/users/${lea.id}`, { external_id: renamed, email: 'lea@new.example.com' });
    expect(patched.statusCode, patched.body).toBe(200);
    // Its keycloak_id taken away: the one the downstream holds is deactivated all the same.
    expect((await root.patch(`/api/v1/users/${max.id}`, { external_id: null })).statusCode).toBe(200);

    expect((await root.get(`/api/v1/integrations/${id}/sync-status/`)).json()).toMatchObject({ pending: 3 });
    const res = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
    expect(res).toMatchObject({ pending: 3, upserted: 1, deactivated: 2, failed: 0, stopped: null });
    expect((await downstreamUser(lea.externalId))?.status).toBe('deactivated');
    expect(await downstreamUser(renamed)).toMatchObject({ status: 'active', email: 'lea@new.example.com' });
    expect((await downstreamUser(max.externalId))?.status).toBe('deactivated');
    // The old keycloak_id went first.
    const calls = await queryRows<{ method: string }>(
      t.database.db,
      sql`select method from integration_logs where integration_id = ${id} order by created_at`,
    );
    expect(calls.map((c) => c.method)).toEqual(['POST', 'PUT', 'PUT', 'POST']);
    expect((await root.get(`/api/v1/integrations/${id}/sync-status/`)).json()).toMatchObject({
      synced: 1,
      pending: 0,
      failed: 0,
    });
  });

  it('records what the downstream refuses and sends it again next time', async () => {
    const other = await seedOrganization(t);
    const id = await target(undefined, other.code);
    // The downstream already has this address under another keycloak_id in that organization.
    await downstream.request({
      method: 'POST',
      url: '/api/provisioning/users',
      headers: { 'x-api-key': key },
      payload: { keycloak_id: unique('kc-theirs-'), email: 'taken@example.com', engagemx_client_id: other.code },
    });
    const clash = await seedUser(t, other.id, { externalId: unique('kc-clash-'), email: 'taken@example.com' });
    await seedUser(t, other.id, { externalId: unique('kc-fine-') });

    const res = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
    expect(res).toMatchObject({ pending: 2, upserted: 1, failed: 1, stopped: null });
    expect(res.failures).toEqual([expect.objectContaining({ user_id: clash.id, keycloak_id: clash.externalId })]);

    const status = (await root.get(`/api/v1/integrations/${id}/sync-status/`)).json();
    expect(status).toMatchObject({ synced: 1, failed: 1, pending: 1 });
    expect(status.failures[0]).toMatchObject({ user_id: clash.id });
    expect(status.failures[0].error).toMatch(/email/i);
  });

  it('stops when the downstream cannot be reached, and keeps the users pending', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise((resolve) => probe.close(resolve));
    const id = await target(`http://127.0.0.1:${port}/api/provisioning`);

    const res = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
    expect(res.stopped).toMatch(/^The downstream did not take the users: .*[^.]\.$/);
    expect(res).toMatchObject({ upserted: 0, failed: res.pending });
    expect((await root.get(`/api/v1/integrations/${id}/sync-status/`)).json()).toMatchObject({
      synced: 0,
      pending: res.pending,
    });
    const [integration] = await queryRows<{ health_status: string; failed_requests: number }>(
      t.database.db,
      sql`select health_status, failed_requests::int as failed_requests from integrations where id = ${id}`,
    );
    expect(integration).toMatchObject({ health_status: 'DEGRADED', failed_requests: 1 });
  });

  it('reports a downstream that never answers in one sentence, with one closing period', async () => {
    const sockets = new Set<Socket>();
    const silent = createServer((socket) => sockets.add(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as AddressInfo;
      const id = await target(`http://127.0.0.1:${port}/api/provisioning`);
      expect((await root.patch(`/api/v1/integrations/${id}/`, { timeout_ms: 200 })).statusCode).toBe(200);
      const res = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
      expect(res.stopped).toBe('The downstream did not take the users: No answer within 200 ms.');
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
  });

  it('syncs every active target from the scheduled job, through pg-boss', async () => {
    const scheduled = await seedOrganization(t);
    const id = await target(undefined, scheduled.code);
    const carol = await seedUser(t, scheduled.id, { externalId: unique('kc-carol-') });
    await enqueueJob(
      t.database.db,
      SYNC_SWEEP_JOB,
      {},
      { singletonKey: 'due-now', startAfter: new Date(Date.now() - 1000) },
    );
    const ran = await runPendingJobs(t.database, { config: t.config, log: t.app.log, names: [SYNC_SWEEP_JOB] });
    expect(ran).toEqual({ completed: 1, failed: 0 });
    expect((await downstreamUser(carol.externalId))?.email).toBe(carol.email);
    expect((await root.get(`/api/v1/integrations/${id}/sync-status/`)).json()).toMatchObject({ synced: 1, pending: 0 });
    // The run was the system's.
    const [event] = await queryRows<{ actor_type: string }>(
      t.database.db,
      sql`select actor_type from activities where activity_type = 'integration.synced' and object_id = ${id}`,
    );
    expect(event?.actor_type).toBe('system');
  });

  it('runs one sync per integration at a time: a held lease answers 409, a dry run still counts', async () => {
    const held = await seedOrganization(t);
    const id = await target(undefined, held.code);
    const dave = await seedUser(t, held.id, { externalId: unique('kc-dave-') });
    // Another node's run, in the middle of its work.
    await t.database.db.execute(sql`
      insert into downstream_sync_leases (organization_id, integration_id, holder, lease_until)
      values (${held.id}, ${id}, gen_random_uuid(), now() + interval '1 minute')`);

    const refused = await root.post(`/api/v1/integrations/${id}/sync/`, {});
    expect(refused.statusCode, refused.body).toBe(409);
    expect(refused.json()).toMatchObject({ code: 'sync_in_progress' });
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, { dry_run: true })).json()).toMatchObject({
      pending: 1,
    });
    // The scheduled job passes the held integration by without failing.
    await enqueueJob(
      t.database.db,
      SYNC_SWEEP_JOB,
      {},
      { singletonKey: 'while-held', startAfter: new Date(Date.now() - 1000) },
    );
    const ran = await runPendingJobs(t.database, { config: t.config, log: t.app.log, names: [SYNC_SWEEP_JOB] });
    expect(ran).toEqual({ completed: 1, failed: 0 });
    expect(await downstreamUser(dave.externalId)).toBeUndefined();

    // The holder died: once its lease ran out, the next run takes over, and gives the lease back.
    await t.database.db.execute(
      sql`update downstream_sync_leases set lease_until = now() - interval '1 second' where integration_id = ${id}`,
    );
    const res = await root.post(`/api/v1/integrations/${id}/sync/`, {});
    expect(res.json()).toMatchObject({ pending: 1, upserted: 1 });
    expect(await downstreamUser(dave.externalId)).toBeDefined();
    expect(
      await queryRows(t.database.db, sql`select 1 from downstream_sync_leases where integration_id = ${id}`),
    ).toEqual([]);
  });

  it('sends a user once when two syncs start together', async () => {
    const both = await seedOrganization(t);
    const id = await target(undefined, both.code);
    await seedUser(t, both.id, { externalId: unique('kc-erin-') });
    const answers = await Promise.all([
      root.post(`/api/v1/integrations/${id}/sync/`, {}),
      root.post(`/api/v1/integrations/${id}/sync/`, {}),
    ]);
    // One sends; the other either starts after it (and finds nothing left) or is told a sync runs.
    for (const res of answers) expect([200, 409], res.body).toContain(res.statusCode);
    expect(answers.reduce((n, res) => n + (res.statusCode === 200 ? res.json().upserted : 0), 0)).toBe(1);
    const [calls] = await queryRows<{ n: number }>(
      t.database.db,
      sql`select count(*)::int as n from integration_logs where integration_id = ${id} and method = 'POST'`,
    );
    expect(calls?.n).toBe(1);
  });

  it('needs users.view besides the integration permissions to set up, change, turn on or run a sync', async () => {
    const code = unique('integrator_').replace(/-/g, '_');
    const role = await root.post('/api/v1/roles/', {
      code,
      name: 'Integrator',
      level: 5,
      organization: org.code,
      permissions: ['integrations.manage', 'integrations.view'],
      modules: [],
    });
    expect(role.statusCode, role.body).toBe(201);
    const integrator = await seedUser(t, org.id);
    await grantRole(t, integrator, code);
    const as = await loginAs(t, integrator);
    const refusedForUsersView = (res: { statusCode: number; json(): unknown }) => {
      expect(res.statusCode).toBe(403);
      expect(res.json()).toMatchObject({ code: 'permission_denied', detail: expect.stringContaining('users.view') });
    };

    // Registering a downstream of their own (or turning another integration into one) is refused…
    const own = {
      name: unique('mine '),
      service_type: 'user_provisioning',
      auth_type: 'none',
      base_url: `${downstreamUrl}/collect`,
    };
    refusedForUsersView(await as.post('/api/v1/integrations/', own));
    const hook = await as.post('/api/v1/integrations/', { ...own, service_type: 'webhook' });
    expect(hook.statusCode, hook.body).toBe(201);
    refusedForUsersView(
      await as.patch(`/api/v1/integrations/${hook.json().id}/`, { service_type: 'user_provisioning' }),
    );
    // …as is repointing or turning on the organization's downstream; turning it off is not.
    const id = await target();
    refusedForUsersView(await as.patch(`/api/v1/integrations/${id}/`, { base_url: `${downstreamUrl}/collect` }));
    expect((await as.post(`/api/v1/integrations/${id}/deactivate/`)).statusCode).toBe(200);
    refusedForUsersView(await as.post(`/api/v1/integrations/${id}/activate/`));
    refusedForUsersView(await as.patch(`/api/v1/integrations/${id}/`, { is_active: true }));
    await root.post(`/api/v1/integrations/${id}/activate/`);

    // Running the sync, and reading its refusals (user ids and keycloak_ids), are refused and send nothing.
    refusedForUsersView(await as.post(`/api/v1/integrations/${id}/sync/`, { full: true }));
    refusedForUsersView(await as.get(`/api/v1/integrations/${id}/sync-status/`));
    expect(await queryRows(t.database.db, sql`select 1 from user_sync_states where integration_id = ${id}`)).toEqual(
      [],
    );
    const stored = await root.get(`/api/v1/integrations/${id}/`);
    expect(stored.json()).toMatchObject({ base_url: `${downstreamUrl}/api/provisioning`, is_active: true });

    // With users.view as well, the same caller runs it.
    await grantRole(t, integrator, 'viewer');
    const run = await as.post(`/api/v1/integrations/${id}/sync/`, { dry_run: true });
    expect(run.statusCode, run.body).toBe(200);
  });

  it('refuses other service types, deactivated targets and other organizations', async () => {
    const webhook = await root.post('/api/v1/integrations/', {
      name: unique('hook '),
      service_type: 'webhook',
      auth_type: 'none',
      base_url: 'https://hooks.example.com',
      organization: org.code,
    });
    const notTarget = await root.post(`/api/v1/integrations/${webhook.json().id}/sync/`, {});
    expect(notTarget.statusCode).toBe(400);
    expect(notTarget.json()).toMatchObject({ code: 'not_a_sync_target' });

    const id = await target();
    await root.post(`/api/v1/integrations/${id}/deactivate/`);
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, {})).statusCode).toBe(409);

    const stranger = await clientWithRole(t, (await seedOrganization(t)).id, 'org_admin');
    expect((await stranger.post(`/api/v1/integrations/${id}/sync/`, {})).statusCode).toBe(404);
    expect((await stranger.get(`/api/v1/integrations/${id}/sync-status/`)).statusCode).toBe(404);

    const nullBody = await t.request({
      method: 'POST',
      url: `/api/v1/integrations/${id}/sync/`,
      headers: { authorization: `Bearer ${root.token}`, 'content-type': 'application/json' },
      payload: 'null',
    });
    expect(nullBody.statusCode, nullBody.body).toBe(400);
    const bad = await root.post(`/api/v1/integrations/${id}/sync/`, { dry_run: 'maybe' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().errors).toEqual([expect.objectContaining({ field: 'dry_run' })]);
    expect(await queryRows(t.database.db, sql`select 1 from user_sync_states where integration_id = ${id}`)).toEqual(
      [],
    );
  });

  /** A downstream of the test's own on loopback, answering every call with `answer`. */
  async function fakeDownstream(
    answer: (req: IncomingMessage, res: ServerResponse, body: string) => void | Promise<void>,
  ) {
    const server = createHttpServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => void answer(req, res, Buffer.concat(chunks).toString('utf8')));
    });
    const { url, close } = await listenOnLoopback(server);
    return { baseUrl: `${url}/api/provisioning`, close };
  }

  it('erases a deleted user from the request logs (bodies, keycloak_id), and leaves the logs about others', async () => {
    // Answers as seed 000 does: the bulk echoes the users, a deactivation names the user by email.
    const emails = new Map<string, string>();
    const downstreamOf = await fakeDownstream((req, res, body) => {
      const json = (status: number, value: unknown) => {
        res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(value));
      };
      if (req.method === 'POST' && req.url === '/api/provisioning/users/bulk') {
        const items = JSON.parse(body) as { keycloak_id: string; email: string }[];
        for (const item of items) emails.set(item.keycloak_id, item.email);
        return json(200, { users: items, errors: [] });
      }
      const deactivation = /^\/api\/provisioning\/users\/([^/]+)\/deactivate$/.exec(req.url ?? '');
      const email = deactivation ? emails.get(decodeURIComponent(deactivation[1] as string)) : undefined;
      if (req.method === 'PUT' && email) return json(200, { action: 'deactivated', user: { email, is_active: false } });
      return json(404, { detail: 'no such user' });
    });
    try {
      const { org: erasing, scim } = await scimClient(t);
      const res = await root.post('/api/v1/integrations/', {
        name: unique('erasing '),
        service_type: 'user_provisioning',
        auth_type: 'api_key',
        base_url: downstreamOf.baseUrl,
        organization: erasing.code,
        credentials: { api_key: 'fake-downstream-key' },
      });
      expect(res.statusCode, res.body).toBe(201);
      const id = res.json().id as string;
      const sync = async () => (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();

      const ann = await seedUser(t, erasing.id, {
        externalId: unique('kc-ann-'),
        email: `${unique('ann-')}@example.com`,
        firstName: 'Annika',
        lastName: 'Quernheim',
      });
      const cal = await seedUser(t, erasing.id, {
        externalId: unique('kc-cal-'),
        email: `${unique('cal-')}@example.com`,
      });
      expect(await sync()).toMatchObject({ upserted: 2, failed: 0 });
      const ben = await seedUser(t, erasing.id, {
        externalId: unique('kc-ben-'),
        email: `${unique('ben-')}@example.com`,
      });
      expect(await sync()).toMatchObject({ upserted: 1, failed: 0 });
      // A deactivation while ann still exists names her keycloak_id in the endpoint, her email in the answer.
      expect((await root.patch(`/api/v1/users/${ann.id}`, { status: 'deactivated' })).statusCode).toBe(200);
      expect(await sync()).toMatchObject({ deactivated: 1, failed: 0 });

      expect((await root.delete(`/api/v1/users/${ann.id}/`)).statusCode).toBe(204);
      expect((await scim('DELETE', `/Users/${cal.id}`)).statusCode).toBe(204);
      // The deleted cal is deactivated downstream after the erasure: that call is logged erased.
      expect(await sync()).toMatchObject({ deactivated: 1, failed: 0 });

      const logs = await queryRows<Record<string, unknown>>(
        t.database.db,
        sql`select * from integration_logs where integration_id = ${id} order by created_at`,
      );
      expect(logs.map((l) => l.method)).toEqual(['POST', 'POST', 'PUT', 'PUT']);
      const stored = JSON.stringify(logs);
      for (const trace of [
        ann.email,
        ann.externalId,
        'Annika',
        'Quernheim',
        ann.id,
        cal.email,
        cal.externalId,
        cal.id,
      ]) {
        expect(stored).not.toContain(trace);
      }
      // The log about ben alone keeps its body and says whom it concerns.
      expect(logs[1]?.request_body).toContain(ben.email);
      expect(logs[1]?.response_body).toContain(ben.email);
      expect(logs[1]?.user_ids).toEqual([ben.id]);
      expect(logs[2]?.endpoint).toBe('/api/provisioning/users/[erased]/deactivate');
      expect(logs[3]?.endpoint).toBe('/api/provisioning/users/[erased]/deactivate');
      // The API's listing shows the erasure as it is stored.
      const listed = (await root.get(`/api/v1/integrations/${id}/logs/`)).json();
      expect(JSON.stringify(listed)).not.toContain(ann.email);
      expect(listed.results.at(-1)).toMatchObject({ request_body: '[erased]', response_body: '[erased]' });
    } finally {
      await downstreamOf.close();
    }
  });

  it('writes the log of a call about a user deleted while it was out already erased', async () => {
    let deleted: () => void = () => undefined;
    const afterDeletion = new Promise<void>((resolve) => {
      deleted = resolve;
    });
    let called: () => void = () => undefined;
    const calledOut = new Promise<void>((resolve) => {
      called = resolve;
    });
    const downstreamOf = await fakeDownstream(async (_req, res, body) => {
      called();
      // The user is deleted here before the answer comes back.
      await afterDeletion;
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ users: JSON.parse(body) }));
    });
    try {
      const racing = await seedOrganization(t);
      const res = await root.post('/api/v1/integrations/', {
        name: unique('racing '),
        service_type: 'user_provisioning',
        auth_type: 'api_key',
        base_url: downstreamOf.baseUrl,
        organization: racing.code,
        credentials: { api_key: 'fake-downstream-key' },
      });
      expect(res.statusCode, res.body).toBe(201);
      const id = res.json().id as string;
      const dot = await seedUser(t, racing.id, {
        externalId: unique('kc-dot-'),
        email: `${unique('dot-')}@example.com`,
      });

      const sync = root.post(`/api/v1/integrations/${id}/sync/`, {});
      await calledOut;
      expect((await root.delete(`/api/v1/users/${dot.id}/`)).statusCode).toBe(204);
      deleted();
      expect((await sync).statusCode).toBe(200);

      const logs = await queryRows<Record<string, unknown>>(
        t.database.db,
        sql`select * from integration_logs where integration_id = ${id}`,
      );
      expect(logs).toEqual([
        expect.objectContaining({ request_body: '[erased]', response_body: '[erased]', user_ids: null }),
      ]);
      const stored = JSON.stringify(logs);
      for (const trace of [dot.email, dot.externalId, dot.id]) expect(stored).not.toContain(trace);
    } finally {
      deleted();
      await downstreamOf.close();
    }
  });

  it('cuts an echoed key out of failures and logs, also when the downstream JSON-escapes it, and a short one', async () => {
    // Go's encoding/json writes & < > as \u0026 \u003c \u003e; others escape "/" as "\/".
    const goEscaped = (text: string) =>
      JSON.stringify(text)
        .slice(1, -1)
        .replace(/&/g, '\\u0026')
        .replace(/</g, '\\u003c')
        .replace(/>/g, '\\u003e')
        .replace(/\//g, '\\/');
    const downstreamOf = await fakeDownstream((req, res) => {
      const key = String(req.headers['x-api-key']);
      res
        .writeHead(200, { 'content-type': 'application/json' })
        .end(`{"users":[],"errors":[{"index":0,"error":"key ${goEscaped(key)} may not provision"}]}`);
    });
    try {
      for (const apiKey of [`K&y<${unique('x')}>"/\\-7788`, 'k&y<7x>']) {
        const echoing = await seedOrganization(t);
        const user = await seedUser(t, echoing.id, { externalId: unique('kc-echo-') });
        const res = await root.post('/api/v1/integrations/', {
          name: unique('echoing '),
          service_type: 'user_provisioning',
          auth_type: 'api_key',
          base_url: downstreamOf.baseUrl,
          organization: echoing.code,
          credentials: { api_key: apiKey },
        });
        expect(res.statusCode, res.body).toBe(201);
        const id = res.json().id as string;

        const report = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
        expect(report).toMatchObject({ failed: 1, failures: [{ user_id: user.id }] });
        expect(report.failures[0].error).toBe(`key ${REDACTED} may not provision`);
        const status = (await root.get(`/api/v1/integrations/${id}/sync-status/`)).json();
        expect(status.failures[0].error).toBe(`key ${REDACTED} may not provision`);
        const logs = (await root.get(`/api/v1/integrations/${id}/logs/`)).json();
        const decoded = JSON.stringify(JSON.parse(logs.results[0].response_body));
        expect(decoded).toContain(REDACTED);

        for (const shown of [JSON.stringify(report), JSON.stringify(status), JSON.stringify(logs), decoded]) {
          expect(shown).not.toContain(JSON.stringify(apiKey).slice(1, -1));
          expect(shown).not.toContain(goEscaped(apiKey));
        }
      }
    } finally {
      await downstreamOf.close();
    }
  });

  it('names why an answer of 200 to a bulk upsert cannot be read: not JSON, too large, or without results', async () => {
    const answers: Record<string, (res: ServerResponse) => void> = {
      html: (res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body>Welcome</body></html>'),
      large: (res) =>
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(`{"users":[],"errors":[],"padding":"${'x'.repeat(1024 * 1024 + 10)}"}`),
      list: (res) => res.writeHead(200, { 'content-type': 'application/json' }).end('[]'),
      empty: (res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}'),
    };
    const expected: Record<string, string> = {
      html: 'the answer to the bulk upsert is not JSON',
      large: 'the answer to the bulk upsert is larger than 1048576 bytes',
      list: 'the answer to the bulk upsert is not a JSON object',
      empty: 'the answer to the bulk upsert lacks users and errors',
    };
    let answer = answers.html as (res: ServerResponse) => void;
    const fake = await fakeDownstream((_req, res) => answer(res));
    try {
      for (const [name, respond] of Object.entries(answers)) {
        answer = respond;
        const unreadable = await seedOrganization(t);
        const user = await seedUser(t, unreadable.id, { externalId: unique('kc-unreadable-') });
        const id = await target(fake.baseUrl, unreadable.code);
        const report = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
        expect(report.stopped, name).toBe(`The downstream did not take the users: ${expected[name]}.`);
        expect(report).toMatchObject({
          upserted: 0,
          failed: 1,
          failures: [{ user_id: user.id, error: expected[name] }],
        });
        // The answer came, but nothing could be read of it: the call failed, and counts as a failure.
        expect(await logsOf(id), name).toEqual([
          expect.objectContaining({ success: false, response_status: 200, error_message: expected[name] }),
        ]);
        expect(await consecutiveFailures(id), name).toBe(1);
      }
    } finally {
      await fake.close();
    }
  });

  async function logsOf(id: string) {
    return queryRows<{ method: string; success: boolean; error_message: string | null; response_status: number }>(
      t.database.db,
      sql`select method, success, error_message, response_status from integration_logs
          where integration_id = ${id} order by created_at`,
    );
  }

  async function consecutiveFailures(id: string) {
    const [row] = await queryRows<{ n: number }>(
      t.database.db,
      sql`select consecutive_failures::int as n from integrations where id = ${id}`,
    );
    return row?.n;
  }

  it('takes a redirect, which it does not follow, as a failure: to a deactivation or a bulk upsert, sent again', async () => {
    let redirect = false;
    const fake = await fakeDownstream((req, res, body) => {
      if (redirect) res.writeHead(302, { location: 'http://169.254.169.254/' }).end();
      else if (req.method === 'POST') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(`{"users":${body},"errors":[]}`);
      } else res.writeHead(200, { 'content-type': 'application/json' }).end('{"action":"deactivated"}');
    });
    try {
      const moved = await seedOrganization(t);
      const ann = await seedUser(t, moved.id, { externalId: unique('kc-ann-') });
      const id = await target(fake.baseUrl, moved.code);
      expect((await root.post(`/api/v1/integrations/${id}/sync/`, {})).json()).toMatchObject({ upserted: 1 });

      redirect = true;
      await root.patch(`/api/v1/users/${ann.id}`, { status: 'deactivated' });
      const off = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
      expect(off).toMatchObject({ pending: 1, deactivated: 0, failed: 1 });
      expect(off.stopped).toBe('The downstream did not take a deactivation: HTTP 302.');
      expect((await root.get(`/api/v1/integrations/${id}/sync-status/`)).json()).toMatchObject({ pending: 1 });
      expect((await logsOf(id)).at(-1)).toMatchObject({ method: 'PUT', success: false, error_message: 'HTTP 302' });

      const bob = await seedUser(t, moved.id, { externalId: unique('kc-bob-') });
      const up = (await root.post(`/api/v1/integrations/${id}/sync/`, {})).json();
      expect(up.stopped).toBe('The downstream did not take the users: HTTP 302.');
      expect(up.failures).toEqual(
        expect.arrayContaining([{ user_id: bob.id, keycloak_id: bob.externalId, error: 'HTTP 302' }]),
      );
      expect((await logsOf(id)).at(-1)).toMatchObject({ method: 'POST', success: false, error_message: 'HTTP 302' });

      redirect = false;
      expect((await root.post(`/api/v1/integrations/${id}/sync/`, {})).json()).toMatchObject({
        pending: 2,
        upserted: 1,
        deactivated: 1,
        failed: 0,
      });
      expect((await root.get(`/api/v1/integrations/${id}/sync-status/`)).json()).toMatchObject({ pending: 0 });
    } finally {
      await fake.close();
    }
  });

  it('stops on a malformed item in the bulk answer, logs the call failed, and leaves the integration.synced event', async () => {
    const bodies: Record<string, string> = {
      '{"users":[],"errors":[null]}': 'errors[0] is not an object',
      '{"users":[null],"errors":[]}': 'users[0] is not an object',
      '{"users":[{"keycloak_id":7}]}': 'users[0] has no keycloak_id',
      '{"errors":[{"index":1,"error":"no"}]}': 'errors[0] has an index out of range',
      '{"errors":[{"index":0.5}]}': 'errors[0] has an index out of range',
      '{"errors":[{"error":"no"}]}': 'errors[0] names neither an index nor a keycloak_id',
      '{"users":{},"errors":[]}': 'users is not a list',
    };
    let answer = '';
    const fake = await fakeDownstream((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }).end(answer);
    });
    try {
      for (const [body, problem] of Object.entries(bodies)) {
        answer = body;
        const org = await seedOrganization(t);
        const user = await seedUser(t, org.id, { externalId: unique('kc-malformed-') });
        const id = await target(fake.baseUrl, org.code);
        const res = await root.post(`/api/v1/integrations/${id}/sync/`, {});
        expect(res.statusCode, `${body} → ${res.body}`).toBe(200);
        const reason = `the answer to the bulk upsert is malformed: ${problem}`;
        expect(res.json(), body).toMatchObject({
          upserted: 0,
          failed: 1,
          stopped: `The downstream did not take the users: ${reason}.`,
          failures: [{ user_id: user.id, error: reason }],
        });
        expect(await logsOf(id), body).toEqual([
          expect.objectContaining({ success: false, response_status: 200, error_message: reason }),
        ]);
        expect(await consecutiveFailures(id)).toBe(1);
        const events = await queryRows<{ success: boolean; details: Record<string, unknown> }>(
          t.database.db,
          sql`select success, details from activities where activity_type = 'integration.synced' and object_id = ${id}`,
        );
        expect(events).toEqual([expect.objectContaining({ success: false })]);
      }
    } finally {
      await fake.close();
    }
  });

  it('shows the request logs of a user_provisioning integration only to holders of users.view', async () => {
    const integrator = await seedUser(t, org.id);
    await grantRole(
      t,
      integrator,
      await createOrganizationRole(root, org.code, 'log_reader', 5, ['integrations.view', 'integrations.manage']),
    );
    const as = await loginAs(t, integrator);
    const id = await target();
    expect((await root.post(`/api/v1/integrations/${id}/sync/`, {})).statusCode).toBe(200);

    // The bodies and endpoints name the users sent.
    const refused = await as.get(`/api/v1/integrations/${id}/logs/`);
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ code: 'permission_denied', detail: expect.stringContaining('users.view') });
    // Other integrations' logs stay readable with the integration permissions alone.
    const hook = await as.post('/api/v1/integrations/', {
      name: unique('hook '),
      service_type: 'webhook',
      auth_type: 'none',
      base_url: 'https://hooks.example.com',
    });
    expect((await as.get(`/api/v1/integrations/${hook.json().id}/logs/`)).statusCode).toBe(200);

    await grantRole(t, integrator, 'viewer');
    const allowed = await as.get(`/api/v1/integrations/${id}/logs/`);
    expect(allowed.statusCode, allowed.body).toBe(200);
    expect(allowed.json().results.length).toBeGreaterThan(0);
  });

  it('ends a sync with 404 when the integration is deleted while the downstream is answering', async () => {
    let arrived = () => {};
    const called = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    let release = () => {};
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slow = await fakeDownstream(async (_req, res) => {
      arrived();
      await held;
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"users":[],"errors":[]}');
    });
    try {
      const deleted = await seedOrganization(t);
      await seedUser(t, deleted.id, { externalId: unique('kc-del-') });
      const id = await target(slow.baseUrl, deleted.code);
      const running = root.post(`/api/v1/integrations/${id}/sync/`, {});
      await called;
      expect((await root.delete(`/api/v1/integrations/${id}/`)).statusCode).toBe(204);
      release();
      const res = await running;
      expect(res.statusCode, res.body).toBe(404);
      expect(res.json()).toMatchObject({ code: 'integration_not_found' });
      expect(await queryRows(t.database.db, sql`select 1 from integration_logs where integration_id = ${id}`)).toEqual(
        [],
      );
    } finally {
      release();
      await slow.close();
    }
  });
});

describe('the scheduled sync after a restart with another interval', () => {
  it('brings the waiting sync forward when DOWNSTREAM_SYNC_INTERVAL_SECONDS shrinks', async () => {
    const t = await startTestApp({ DOWNSTREAM_SYNC_INTERVAL_SECONDS: '3600' });
    const waitingStart = async () =>
      (
        await queryRows<{ start_after: Date }>(
          t.database.db,
          sql`select start_after from pgboss.job where name = ${SYNC_SWEEP_JOB} and state = 'created'`,
        )
      ).map((row) => new Date(row.start_after).getTime());
    try {
      expect((await waitingStart())[0]).toBeGreaterThan(Date.now() + 3_000_000);

      // A second node on the same database, as a restart with the changed environment.
      const app = await buildApp({
        config: { ...t.config, downstreamSyncIntervalSeconds: 5 },
        database: t.database,
        logger: false,
      });
      await app.ready();
      await app.close();

      const after = await waitingStart();
      expect(after).toHaveLength(1);
      expect(after[0]).toBeLessThanOrEqual(Date.now() + 5_000);
    } finally {
      await t.close();
    }
  });
});
