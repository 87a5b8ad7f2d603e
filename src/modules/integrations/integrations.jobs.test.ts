import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, clientWithRole, seedOrganization } from '../../../test/seed.js';
import { startTestApp, type TestApp, unique } from '../../../test/test-app.js';
import { buildApp } from '../../app.js';
import { queryRows } from '../../platform/db/client.js';
import { firstIdAt, newId } from '../../platform/db/ids.js';
import { enqueueJob } from '../../platform/jobs/queue.js';
import { runPendingJobs } from '../../platform/jobs/worker.js';
import { pruneIntegrationHistory } from './history-retention.js';
import { HEALTH_SWEEP_JOB } from './integrations.jobs.js';
import { integrationLogs } from './integrations.table.js';

describe('the integration sweep job', () => {
  let t: TestApp;
  let admin: Client;
  let baseUrl: string;
  const paths: string[] = [];
  const server = createServer((req, res) => {
    paths.push(req.url ?? '');
    res.writeHead(204).end();
  });

  beforeAll(async () => {
    t = await startTestApp({ INTEGRATION_HEALTH_INTERVAL_SECONDS: '60', INTEGRATION_HISTORY_DAYS: '30' });
    admin = await clientWithRole(t, (await seedOrganization(t)).id, 'org_admin');
    baseUrl = await new Promise<string>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`)),
    );
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await t.close();
  });

  const waiting = async () =>
    (
      await queryRows<{ n: number }>(
        t.database.db,
        sql`select count(*)::int as n from pgboss.job where name = ${HEALTH_SWEEP_JOB} and state = 'created'`,
      )
    )[0]?.n;

  it('is waiting from start-up, checks due integrations through pg-boss and schedules its next run', async () => {
    expect(await waiting()).toBe(1);
    const res = await admin.post('/api/v1/integrations/', {
      name: unique('job '),
      service_type: 'webhook',
      auth_type: 'none',
      base_url: baseUrl,
      health_check_path: '/from-the-job',
    });
    const id = (res.json() as { id: string }).id;

    // The waiting run starts in a minute; this one is due now.
    await enqueueJob(
      t.database.db,
      HEALTH_SWEEP_JOB,
      {},
      { singletonKey: 'due-now', startAfter: new Date(Date.now() - 1000) },
    );
    const ran = await runPendingJobs(t.database, { config: t.config, log: t.app.log, names: [HEALTH_SWEEP_JOB] });
    expect(ran).toEqual({ completed: 1, failed: 0 });
    expect(paths).toContain('/from-the-job');
    expect((await admin.get(`/api/v1/integrations/${id}`)).json()).toMatchObject({ health_status: 'HEALTHY' });
    expect(await waiting()).toBe(1);
  });

  it('deletes request logs and health checks older than the retention, and keeps the rest', async () => {
    const res = await admin.post('/api/v1/integrations/', {
      name: unique('old '),
      service_type: 'webhook',
      auth_type: 'none',
      base_url: baseUrl,
    });
    const created = res.json() as { id: string; organization_id: string };
    const day = 86_400_000;
    const oldId = firstIdAt(Date.now() - 40 * day).replace(/0{12}$/, '000000000001');
    const row = { organizationId: created.organization_id, integrationId: created.id, method: 'GET', durationMs: 1 };
    await t.database.db.insert(integrationLogs).values([
      { ...row, id: oldId, endpoint: '/old', success: true },
      { ...row, id: newId(), endpoint: '/recent', success: true },
    ]);

    const pruned = await pruneIntegrationHistory(t.database.db, 30, { chunkSize: 1 });
    expect(pruned.deleted).toBeGreaterThanOrEqual(1);
    const logs = (await admin.get(`/api/v1/integrations/${created.id}/logs`)).json() as {
      results: { endpoint: string }[];
    };
    expect(logs.results.map((l) => l.endpoint)).toEqual(['/recent']);
    expect((await pruneIntegrationHistory(t.database.db, 0)).deleted).toBe(0);
  });

  it('orders moment boundaries around generated ids', () => {
    const now = Date.now();
    const id = newId();
    expect(firstIdAt(now - 1000) < id).toBe(true);
    expect(id < firstIdAt(now + 1000)).toBe(true);
  });
});

describe('the integration sweep after a restart with another interval', () => {
  const waitingStart = async (t: TestApp) =>
    (
      await queryRows<{ start_after: Date }>(
        t.database.db,
        sql`select start_after from pgboss.job where name = ${HEALTH_SWEEP_JOB} and state = 'created'`,
      )
    ).map((row) => new Date(row.start_after).getTime());

  /** Starts a second node on `t`'s database with other settings, as a restart with a changed environment does. */
  async function restartWith(t: TestApp, settings: Partial<TestApp['config']>): Promise<void> {
    const app = await buildApp({ config: { ...t.config, ...settings }, database: t.database, logger: false });
    await app.ready();
    await app.close();
  }

  it('brings the waiting sweep forward when the check interval shrinks', async () => {
    const t = await startTestApp({ INTEGRATION_HEALTH_INTERVAL_SECONDS: '300' });
    try {
      const [queued] = await waitingStart(t);
      expect(queued).toBeGreaterThan(Date.now() + 250_000);

      const restarted = Date.now();
      await restartWith(t, { integrationHealthIntervalSeconds: 5 });
      const after = await waitingStart(t);
      expect(after).toHaveLength(1);
      expect(after[0]).toBeLessThanOrEqual(Date.now() + 5_000);
      expect(after[0]).toBeGreaterThanOrEqual(restarted + 4_000);
    } finally {
      await t.close();
    }
  });

  it('brings the hourly pruning sweep forward when health checks are turned on', async () => {
    const t = await startTestApp({ INTEGRATION_HEALTH_INTERVAL_SECONDS: '0', INTEGRATION_HISTORY_DAYS: '30' });
    try {
      expect((await waitingStart(t))[0]).toBeGreaterThan(Date.now() + 3_000_000);

      await restartWith(t, { integrationHealthIntervalSeconds: 5 });
      const after = await waitingStart(t);
      expect(after).toHaveLength(1);
      expect(after[0]).toBeLessThanOrEqual(Date.now() + 5_000);
    } finally {
      await t.close();
    }
  });

  it('keeps an earlier waiting sweep in place when the interval grows', async () => {
    const t = await startTestApp({ INTEGRATION_HEALTH_INTERVAL_SECONDS: '5' });
    try {
      const before = await waitingStart(t);
      await restartWith(t, { integrationHealthIntervalSeconds: 300 });
      expect(await waitingStart(t)).toEqual(before);
    } finally {
      await t.close();
    }
  });
});
