import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'drizzle-orm';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { gatehouse } from '../../test/cli.js';
import { testConfig } from '../../test/test-app.js';
import { type Db, queryRows } from '../platform/db/client.js';
import { enqueueJob } from '../platform/jobs/queue.js';
import { registerJobHandler } from '../platform/jobs/registry.js';
import { startServer } from '../server.js';

// Each case runs `gatehouse` as a process (a build, then migrations on a fresh database): slow on a busy machine.
vi.setConfig({ testTimeout: 180_000 });

const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-worker-test-'));

/** The command line on this file's embedded database, listening on a free loopback port. */
const runCli = (args: string[]) => gatehouse(args, dataDir, { env: { PORT: '0', HOST: '127.0.0.1' } });

const finished: string[] = [];
registerJobHandler<{ marker: string }>('server-test.slow', async (job, ctx) => {
  await sleep(300);
  // Throws, and so never records the marker, if the database closed under the running job.
  await queryRows(ctx.db, sql`select 1`);
  finished.push(job.data.marker);
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function isActive(db: Db): Promise<boolean> {
  const rows = await queryRows<{ n: number }>(
    db,
    sql`select count(*)::int as n from pgboss.job where name = 'server-test.slow' and state = 'active'`,
  );
  return rows[0]?.n === 1;
}

// The three start processes or databases of their own; side by side they take the time of the slowest.
describe.concurrent('running jobs beside the server', () => {
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it('refuses `gatehouse worker` on the embedded database with one line', async () => {
    const { code, stderr } = await runCli(['worker']);
    expect(code).toBe(2);
    expect(stderr.trim().split('\n')).toEqual([expect.stringMatching(/^gatehouse: worker needs DATABASE_URL/)]);
  });

  it('refuses `gatehouse serve --no-worker` on the embedded database with one line', async () => {
    const { code, stderr } = await runCli(['serve', '--no-worker']);
    expect(code).toBe(2);
    expect(stderr.trim().split('\n')).toEqual([expect.stringMatching(/^gatehouse: --no-worker needs DATABASE_URL/)]);
  });

  it('runs queued jobs in the server process and lets a running one finish before the database closes', async () => {
    const config = testConfig({ DATA_DIR: join(dataDir, 'server'), PORT: '0', HOST: '127.0.0.1' });
    const server = await startServer(config, { worker: true, logger: false });
    let stopped = false;
    try {
      expect(server.worker?.queues).toContain('server-test.slow');
      await enqueueJob(server.database.db, 'server-test.slow', { marker: 'during-stop' });
      const deadline = Date.now() + 8_000;
      while (!(await isActive(server.database.db))) {
        if (Date.now() > deadline) throw new Error('the job never started');
        await sleep(50);
      }

      await server.stop();
      stopped = true;
      expect(finished).toEqual(['during-stop']);
    } finally {
      if (!stopped) await server.stop();
    }
  });
});
