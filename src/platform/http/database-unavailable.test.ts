import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { PassThrough } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Cluster, findPgBin, startCluster } from '../../../scripts/pg-cluster.mjs';
import { scimClient } from '../../../test/scim-client.js';
import { loginAs, seedOrganization, seedUser, TEST_PASSWORD } from '../../../test/seed.js';
import { type TestApp, testConfig } from '../../../test/test-app.js';
import { buildApp } from '../../app.js';
import { createApiKey, OPERATOR } from '../../modules/api-keys/api-keys.service.js';
import { type Database, openDatabase } from '../db/client.js';
import { dropDatabase } from '../db/drop-database.js';
import { migrate } from '../db/migrate.js';

/**
 * A TCP relay between the app's pool and PostgreSQL. Cutting it is a server going down as the app
 * sees it: open connections end, new ones are refused. A shared server (TEST_DATABASE_URL) stays up.
 */
async function startCable(target: URL): Promise<{ port: number; cut(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = tcpConnect(Number(target.port || 5432), target.hostname);
    for (const [a, b] of [
      [client, upstream],
      [upstream, client],
    ] as const) {
      sockets.add(a);
      a.on('error', () => b.destroy());
      a.on('close', () => {
        sockets.delete(a);
        b.destroy();
      });
      a.pipe(b);
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    port,
    cut: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const socket of sockets) socket.destroy();
      }),
  };
}

/** The backends of the admin's database waiting on a lock, once there is one. */
async function waitForLockWaiters(admin: pg.Client): Promise<number[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await admin.query<{ pid: number }>(
      `select pid from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'`,
    );
    if (rows.length > 0) return rows.map((r) => r.pid);
    if (Date.now() > deadline) throw new Error('no query came to wait on the lock');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

// PGlite has no server to lose: this needs PostgreSQL, TEST_DATABASE_URL's or a throwaway cluster.
const hasPostgres = Boolean(process.env.TEST_DATABASE_URL) || findPgBin() !== undefined;

describe.skipIf(!hasPostgres)('requests while PostgreSQL cannot be reached', () => {
  let cluster: Cluster | undefined;
  let serverUrl: URL;
  let name: string;
  let database: Database;
  let app: FastifyInstance;
  let t: TestApp;
  let cable: Awaited<ReturnType<typeof startCable>>;
  const log: { level: number; msg: string; err?: unknown; reason?: string }[] = [];

  beforeAll(async () => {
    if (!process.env.TEST_DATABASE_URL) cluster = await startCluster({ durable: false });
    serverUrl = new URL(process.env.TEST_DATABASE_URL ?? (cluster as Cluster).url);
    name = `gatehouse_test_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: serverUrl.toString() });
    await admin.connect();
    await admin.query(`create database ${name}`);
    await admin.end();
    cable = await startCable(serverUrl);
    const url = new URL(serverUrl);
    url.host = `127.0.0.1:${cable.port}`;
    url.pathname = `/${name}`;
    database = await openDatabase({ databaseUrl: url.toString(), poolSize: 4 });
    await migrate(database.db);
    const stream = new PassThrough();
    stream.on('data', (line: Buffer) => {
      for (const text of line.toString().split('\n').filter(Boolean)) log.push(JSON.parse(text));
    });
    const config = testConfig();
    app = await buildApp({ config, database, logger: { stream } });
    await app.ready();
    t = { app, database, config, request: (options) => app.inject(options), close: () => app.close() };
  }, 120_000);

  afterAll(async () => {
    await app?.close();
    await database?.close();
    if (name) {
      const admin = new pg.Client({ connectionString: serverUrl.toString() });
      await admin.connect();
      try {
        await dropDatabase(admin, name);
      } finally {
        await admin.end();
      }
    }
    cluster?.stop();
  });

  const warnings = () => log.filter((l) => l.level === 40 && l.msg === 'database unavailable');
  const errors = () => log.filter((l) => l.level >= 50);

  it('answers 503 database_unavailable when PostgreSQL ends the connection of a running query (57P01)', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const admin = new pg.Client({ connectionString: new URL(`/${name}`, serverUrl).toString() });
    await admin.connect();
    try {
      // The login's query waits on this lock; the server then ends its connection as a shutdown does.
      await admin.query('begin');
      await admin.query('lock table users in access exclusive mode');
      const login = t.request({
        method: 'POST',
        url: '/api/token/',
        payload: { email: user.email, password: TEST_PASSWORD, organization: org.code },
      });
      const waiting = await waitForLockWaiters(admin);
      await admin.query('select pg_terminate_backend(pid) from unnest($1::int[]) as pid', [waiting]);
      const res = await login;
      expect(res.statusCode, res.body).toBe(503);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.headers['retry-after']).toBe('5');
      expect(res.json()).toMatchObject({ status: 503, code: 'database_unavailable' });
      expect(warnings().at(-1)?.reason).toMatch(/^57P01/);
    } finally {
      await admin.query('rollback').catch(() => {});
      await admin.end();
    }
    // The server is still up: the next login works.
    const again = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email: user.email, password: TEST_PASSWORD, organization: org.code },
    });
    expect(again.statusCode, again.body).toBe(200);
  });

  it('answers 503 on every kind of route once the server is gone, and logs a warning without a stack', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const bearer = { authorization: `Bearer ${(await loginAs(t, user)).token}` };
    const provisioning = await createApiKey(database.db, OPERATOR, {
      name: 'sync',
      organization: org.code,
      scopes: ['provisioning'],
    });
    const { key: scimKey } = await scimClient(t);
    const errorsBefore = errors().length;
    const warningsBefore = warnings().length;

    // A query running when the server goes: its connection ends under it.
    const admin = new pg.Client({ connectionString: new URL(`/${name}`, serverUrl).toString() });
    await admin.connect();
    let inFlight: ReturnType<TestApp['request']>;
    try {
      await admin.query('begin');
      await admin.query('lock table users in access exclusive mode');
      inFlight = t.request({
        method: 'POST',
        url: '/api/token/',
        payload: { email: user.email, password: TEST_PASSWORD, organization: org.code },
      });
      await waitForLockWaiters(admin);
      await cable.cut();
    } finally {
      await admin.end();
    }
    const cutShort = await inFlight;
    expect(cutShort.statusCode, cutShort.body).toBe(503);
    expect(cutShort.json()).toMatchObject({ code: 'database_unavailable' });

    const health = await t.request({ method: 'GET', url: '/health', headers: bearer });
    expect(health.statusCode).toBe(503);
    expect(health.json()).toMatchObject({ status: 'unavailable' });

    const problems = [
      { method: 'POST' as const, url: '/api/token/', payload: { email: user.email, password: TEST_PASSWORD } },
      { method: 'GET' as const, url: '/api/v1/users/', headers: bearer },
      { method: 'GET' as const, url: '/api/provisioning/users/x', headers: { 'x-api-key': provisioning.key } },
    ];
    for (const request of problems) {
      const res = await t.request(request);
      expect(res.statusCode, `${request.url} ${res.body}`).toBe(503);
      expect(res.headers['content-type']).toContain('application/problem+json');
      expect(res.headers['retry-after']).toBe('5');
      expect(res.json()).toMatchObject({ status: 503, code: 'database_unavailable' });
    }

    const scim = await t.request({
      method: 'GET',
      url: '/scim/v2/Users',
      headers: { authorization: `Bearer ${scimKey}` },
    });
    expect(scim.statusCode).toBe(503);
    expect(scim.headers['content-type']).toContain('application/scim+json');
    expect(scim.headers['retry-after']).toBe('5');
    expect(scim.json()).toMatchObject({
      schemas: ['urn:ietf:params:scim:api:messages:2.0:Error'],
      status: '503',
    });

    // Seed 003's export answers in its own shape, with the same status and code.
    const exported = await t.request({ method: 'GET', url: '/api/admin/export-users', headers: bearer });
    expect(exported.statusCode).toBe(503);
    expect(exported.headers['retry-after']).toBe('5');
    expect(exported.json()).toMatchObject({ success: false, code: 'database_unavailable' });

    expect(errors().slice(errorsBefore)).toEqual([]);
    // One line a request that failed: the one cut short, three problems, SCIM, the export.
    const recent = warnings().slice(warningsBefore);
    expect(recent).toHaveLength(6);
    expect(recent[0]?.reason).toMatch(/^Connection terminated/);
    for (const warning of recent) {
      expect(warning.err).toBeUndefined();
      expect(JSON.stringify(warning)).not.toContain('    at ');
    }
  });
});
