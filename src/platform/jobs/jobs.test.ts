import { sql } from 'drizzle-orm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { openTestDatabase, testConfig } from '../../../test/test-app.js';
import { type Database, openDatabase, queryRows } from '../db/client.js';
import { maintainJobs } from './maintenance.js';
import { bossDbFor, installJobs } from './pgboss.js';
import { enqueueJob } from './queue.js';
import { type Job, type JobLog, registerJobHandler } from './registry.js';
import { type JobWorker, runPendingJobs, startJobs } from './worker.js';

// Handlers report what they saw here; each test uses its own marker in the job data.
const seen: { queue: string; marker: string; retryCount: number }[] = [];
const record = (job: Job<{ marker: string }>) =>
  seen.push({ queue: job.name, marker: job.data.marker, retryCount: job.retryCount });

registerJobHandler<{ marker: string }>('test.echo', async (job) => {
  record(job);
});
registerJobHandler<{ marker: string }>(
  'test.flaky',
  async (job) => {
    record(job);
    if (job.retryCount === 0) throw new Error('first attempt fails');
  },
  { retryLimit: 2, retryDelay: 0, retryBackoff: false },
);
registerJobHandler<{ marker: string; ms: number }>('test.slow', async (job, ctx) => {
  record(job);
  await new Promise((resolve) => setTimeout(resolve, job.data.ms));
  await queryRows(ctx.db, sql`select 1`);
});
registerJobHandler<{ marker: string }>(
  'test.cancellable',
  async (job, ctx) => {
    record(job);
    await new Promise<void>((resolve) => ctx.signal.addEventListener('abort', () => resolve(), { once: true }));
    throw new Error('stopped before finishing');
  },
  { retryLimit: 3, retryDelay: 60 },
);

registerJobHandler<{ marker: string }>(
  'test.stubborn',
  async (job) => {
    record(job);
    // Ignores the stop signal and outlives the worker's stop timeout.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
  },
  { retryLimit: 3, retryDelay: 60 },
);

const lines: unknown[][] = [];
const log = {
  debug: (...args: unknown[]) => lines.push(args),
  info: (...args: unknown[]) => lines.push(args),
  warn: (...args: unknown[]) => lines.push(args),
  error: (...args: unknown[]) => lines.push(args),
} as unknown as JobLog;

async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 8_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = await probe();
    if (value !== undefined && value !== false) return value;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

interface JobRow {
  state: string;
  retry_count: number;
  output: { message?: string } | null;
}

describe('background jobs', () => {
  let database: Database;
  let drop: () => Promise<void>;
  let worker: JobWorker | undefined;
  const config = testConfig();

  const jobRow = async (id: string) =>
    (
      await queryRows<JobRow>(
        database.db,
        sql`select state::text, retry_count, output from pgboss.job where id = ${id}`,
      )
    )[0];
  const jobCount = async (queue: string, marker: string) =>
    (
      await queryRows<{ n: number }>(
        database.db,
        sql`select count(*)::int as n from pgboss.job where name = ${queue} and data->>'marker' = ${marker}`,
      )
    )[0]?.n;

  beforeAll(async () => {
    ({ database, drop } = await openTestDatabase());
    await installJobs(database);
  });
  afterEach(async () => {
    await worker?.stop();
    worker = undefined;
  });
  afterAll(async () => {
    await drop();
  });

  it('runs an enqueued job through its registered handler and marks it completed', async () => {
    worker = await startJobs(database, { config, log, pollingIntervalSeconds: 0.5 });
    const id = await enqueueJob(database.db, 'test.echo', { marker: 'run-1' });

    await waitFor('the handler', () => seen.find((s) => s.marker === 'run-1'));
    expect(await waitFor('completion', async () => (await jobRow(id!))?.state === 'completed')).toBe(true);
    expect(worker.queues).toEqual(expect.arrayContaining(['test.echo', 'test.flaky']));
  });

  it('leaves no job behind when the enqueuing transaction rolls back, and keeps it when it commits', async () => {
    await expect(
      database.db.transaction(async (tx) => {
        await enqueueJob(tx, 'test.echo', { marker: 'tx-rolled-back' });
        throw new Error('the business write failed');
      }),
    ).rejects.toThrow('the business write failed');
    expect(await jobCount('test.echo', 'tx-rolled-back')).toBe(0);

    const id = await database.db.transaction((tx) => enqueueJob(tx, 'test.echo', { marker: 'tx-committed' }));
    expect(await jobCount('test.echo', 'tx-committed')).toBe(1);
    expect((await jobRow(id!))?.state).toBe('created');
  });

  // PGlite has one connection: a query outside the transaction would wait for it, so PostgreSQL only.
  it.skipIf(!process.env.TEST_DATABASE_URL)(
    'keeps a job enqueued in an open transaction invisible to other connections until commit',
    async () => {
      await database.db.transaction(async (tx) => {
        await enqueueJob(tx, 'test.echo', { marker: 'tx-invisible' });
        // Another pooled connection, outside the transaction.
        expect(await jobCount('test.echo', 'tx-invisible')).toBe(0);
      });
      expect(await jobCount('test.echo', 'tx-invisible')).toBe(1);
    },
  );

  it('retries a job whose handler failed and completes it on the next attempt', async () => {
    worker = await startJobs(database, { config, log, pollingIntervalSeconds: 0.5 });
    const id = await enqueueJob(database.db, 'test.flaky', { marker: 'flaky-1' });

    await waitFor('completion', async () => (await jobRow(id!))?.state === 'completed');
    expect(seen.filter((s) => s.marker === 'flaky-1').map((s) => s.retryCount)).toEqual([0, 1]);
    expect(lines.some(([fields]) => (fields as { job?: string }).job === id)).toBe(true);
  });

  it('lets a running attempt finish when the worker stops', async () => {
    worker = await startJobs(database, { config, log, pollingIntervalSeconds: 0.5 });
    const id = await enqueueJob(database.db, 'test.slow', { marker: 'slow-1', ms: 400 });
    await waitFor('the attempt to start', () => seen.find((s) => s.marker === 'slow-1'));

    await worker.stop();
    expect((await jobRow(id!))?.state).toBe('completed');
  });

  it('hands an attempt that gives up on stop back to the queue for a later retry', async () => {
    worker = await startJobs(database, { config, log, pollingIntervalSeconds: 0.5 });
    const id = await enqueueJob(database.db, 'test.cancellable', { marker: 'cancel-1' });
    await waitFor('the attempt to start', () => seen.find((s) => s.marker === 'cancel-1'));

    await worker.stop();
    const row = await jobRow(id!);
    expect(row?.state).toBe('retry');
    expect(row?.output?.message).toBe('stopped before finishing');
  });

  it('fails an attempt still running at the stop timeout back to the queue, and survives its late finish', async () => {
    worker = await startJobs(database, { config, log, pollingIntervalSeconds: 0.5, stopTimeoutSeconds: 1 });
    const id = await enqueueJob(database.db, 'test.stubborn', { marker: 'stubborn-1' });
    await waitFor('the attempt to start', () => seen.find((s) => s.marker === 'stubborn-1'));

    const started = Date.now();
    await worker.stop();
    expect(Date.now() - started).toBeLessThan(3_000);
    const row = await jobRow(id!);
    expect(row?.state).toBe('retry');
    expect(JSON.stringify(row?.output)).toMatch(/shut down while active/);
    // The abandoned handler finishes after the stop; its completion must neither throw nor change the job.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect((await jobRow(id!))?.state).toBe('retry');
  });

  it('runs the due jobs in one call without a worker', async () => {
    await enqueueJob(database.db, 'test.echo', { marker: 'pending-1' });
    await enqueueJob(database.db, 'test.echo', { marker: 'pending-2' }, { startAfter: 3600 });

    const counts = await runPendingJobs(database, { config, log, names: ['test.echo'] });

    expect(counts).toEqual({ completed: 1, failed: 0 });
    expect(seen.some((s) => s.marker === 'pending-1')).toBe(true);
    expect(seen.some((s) => s.marker === 'pending-2')).toBe(false);
  });

  it('refuses to enqueue a job no handler was registered for', async () => {
    await expect(enqueueJob(database.db, 'test.unknown', {})).rejects.toThrow(/no registered handler/);
  });

  it('archives finished jobs and fails expired attempts in bounded chunks', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 25; i++) ids.push((await enqueueJob(database.db, 'test.echo', { marker: `old-${i}` }))!);
    await database.db.execute(sql`
      update pgboss.job set state = 'completed', completed_on = now() - interval '13 hours'
      where name = 'test.echo' and data->>'marker' like 'old-%'`);
    const stuck = await enqueueJob(database.db, 'test.flaky', { marker: 'stuck-1' });
    // An attempt a crashed worker left active past its expiry.
    await database.db.execute(sql`
      update pgboss.job set state = 'active', started_on = now() - interval '2 hours', expire_in = interval '1 minute'
      where id = ${stuck}`);

    const counts = await maintainJobs(bossDbFor(database), { chunkSize: 10 });

    expect(counts.archived).toBeGreaterThanOrEqual(25);
    expect(counts.expired).toBe(1);
    const archived = await queryRows<{ n: number }>(
      database.db,
      sql`select count(*)::int as n from pgboss.archive where data->>'marker' like 'old-%'`,
    );
    expect(archived[0]?.n).toBe(25);
    expect(await jobCount('test.echo', 'old-0')).toBe(0);
    expect((await jobRow(stuck!))?.state).toBe('retry');
  });
});

// Several nodes starting together on a fresh PostgreSQL database all install pg-boss's schema.
describe.runIf(process.env.TEST_DATABASE_URL)('installing the job schema', () => {
  it('succeeds on every node when several start at once', async () => {
    const { url, drop } = await openTestDatabase();
    const nodes = await Promise.all([0, 1, 2].map(() => openDatabase({ databaseUrl: url, poolSize: 3 })));
    try {
      const results = await Promise.allSettled(nodes.map((node) => installJobs(node)));
      expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
      const [node] = nodes as [Database];
      const queues = await queryRows<{ n: number }>(node.db, sql`select count(*)::int as n from pgboss.queue`);
      expect(queues[0]?.n).toBeGreaterThan(0);
    } finally {
      await Promise.all(nodes.map((node) => node.close()));
      await drop();
    }
  });
});
