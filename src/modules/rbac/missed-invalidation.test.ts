import type { FastifyInstance } from 'fastify';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Client, grantRole, loginAs, seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTcpProxy, type TcpProxy } from '../../../test/tcp-proxy.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { buildApp } from '../../app.js';
import { type Database, openDatabase } from '../../platform/db/client.js';
import { LISTENER_APPLICATION_NAME } from '../../platform/invalidation.js';

/**
 * A node whose invalidation listener is down may be missing changes made on other nodes: it must
 * answer from the database, never from what it cached before. Another node's change is made in raw
 * SQL with its NOTIFY, so this process learns of it only through its listener.
 */
const PG = process.env.TEST_DATABASE_URL;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function eventually(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(50);
  }
}

async function terminateListener(pool: pg.Pool): Promise<void> {
  const { rows } = await pool.query(
    `select pg_terminate_backend(pid) as done from pg_stat_activity
     where datname = current_database() and application_name = $1`,
    [LISTENER_APPLICATION_NAME],
  );
  expect(rows).toEqual([{ done: true }]);
  // The listener hears of it within a millisecond or two; its reconnect comes a second later.
  await sleep(100);
}

describe.runIf(PG)('a node that lost its invalidation listener', () => {
  let t: TestApp;
  let root: Client;
  let pool: pg.Pool;
  beforeAll(async () => {
    t = await startTestApp();
    root = await superuserClient(t);
    pool = t.database.pool as pg.Pool;
  });
  afterAll(() => t.close());

  async function viewer() {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    await grantRole(t, user, 'viewer');
    const authorize = async () =>
      (await root.post('/api/v1/authorize/', { user_id: user.id, permission: 'users.view' })).json().allowed;
    return { user, authorize };
  }

  it('never answers a grant removed on another node while its listener reconnects', async () => {
    const { user, authorize } = await viewer();
    expect(await authorize()).toBe(true); // now cached
    await terminateListener(pool);
    await pool.query('delete from user_roles where user_id = $1', [user.id]);
    await pool.query(`select pg_notify('gatehouse_invalidation', $1)`, [`user-roles:${user.id}`]);
    expect(await authorize()).toBe(false);
    // Subscribed again, it caches again, and hears changes again.
    await sleep(1_500);
    expect(await authorize()).toBe(false);
    await grantRole(t, user, 'viewer');
    expect(await authorize()).toBe(true);
  });

  it('stops a token whose session another node revoked while its listener reconnects', async () => {
    const { user } = await viewer();
    const client = await loginAs(t, user);
    expect((await client.get('/api/v1/users/profile/')).statusCode).toBe(200); // session state cached
    await terminateListener(pool);
    await pool.query('update sessions set revoked_at = now() where user_id = $1', [user.id]);
    await pool.query(`select pg_notify('gatehouse_invalidation', $1)`, [`user:${user.id}`]);
    expect((await client.get('/api/v1/users/profile/')).statusCode).toBe(401);
  });
});

describe.runIf(PG)('a node cut off from its database', () => {
  let t: TestApp;
  let root: Client;
  let proxy: TcpProxy;
  let proxied: { database: Database; app: FastifyInstance };
  beforeAll(async () => {
    t = await startTestApp();
    root = await superuserClient(t);
    const url = new URL(t.database.pool?.options.connectionString as string);
    proxy = await startTcpProxy(url.hostname, Number(url.port));
    url.host = `127.0.0.1:${proxy.port}`;
    const database = await openDatabase({ databaseUrl: url.toString(), poolSize: 4, connectTimeoutMs: 1_000 });
    // Same MASTER_KEY as the first node, so it opens the same signing keys.
    const app = await buildApp({ config: t.config, database, logger: false });
    await app.ready();
    proxied = { database, app };
  });
  afterAll(async () => {
    proxy.restore();
    await proxied.app.close();
    await proxied.database.close();
    await proxy.close();
    await t.close();
  });

  it('answers 503 database_unavailable, never its cached grant, and the current grant once back', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    await grantRole(t, user, 'viewer');
    const authorize = () =>
      proxied.app.inject({
        method: 'POST',
        url: '/api/v1/authorize/',
        headers: { authorization: `Bearer ${root.token}` },
        payload: { user_id: user.id, permission: 'users.view' },
      });
    expect((await authorize()).json().allowed).toBe(true); // now cached on the proxied node
    proxy.cut();
    await sleep(100);
    // Another node removes the grant. Its notification cannot reach the cut node; it is not sent
    // here at all, since the other node in this process would drop the caches they share.
    await (t.database.pool as pg.Pool).query('delete from user_roles where user_id = $1', [user.id]);
    const during = await authorize();
    expect(during.statusCode).toBe(503);
    expect(during.json()).toMatchObject({ code: 'database_unavailable' });
    proxy.restore();
    await eventually(async () => (await authorize()).statusCode === 200);
    expect((await authorize()).json().allowed).toBe(false);
  });
});
