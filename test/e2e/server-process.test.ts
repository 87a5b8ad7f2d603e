import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { dropDatabase } from '../../src/platform/db/drop-database.js';

// The real server process, started the way `npm start` does, spoken to over loopback HTTP.
const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const GATEHOUSE_VARS = [
  'PORT',
  'HOST',
  'DATABASE_URL',
  'DATA_DIR',
  'PUBLIC_URL',
  'PROVISIONING_API_KEY',
  'ADMIN_EMAIL',
  'ADMIN_PASSWORD',
  'MASTER_KEY',
  'SMTP_URL',
  'MAIL_FROM',
  'TRUST_PROXY',
  'CORS_ORIGINS',
  'REDIS_URL',
  'RATE_LIMITS',
  'LOG_LEVEL',
  'TEST_DATABASE_URL',
];

interface Proc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code; kills the process and rejects if it has not exited in time. */
  exited(timeoutMs?: number): Promise<number | null>;
}

function run(args: string[], env: Record<string, string>): Proc {
  const base = { ...process.env };
  for (const name of GATEHOUSE_VARS) delete base[name];
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout?.on('data', (d) => {
    out += d;
  });
  child.stderr?.on('data', (d) => {
    err += d;
  });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited: (timeoutMs = 10_000) =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`process did not exit within ${timeoutMs} ms; stderr: ${err}`));
        }, timeoutMs);
        exit.then((code) => {
          clearTimeout(timer);
          resolve(code);
        });
      }),
  };
}

// As `npm start`: emit dist/ from the sources, then run plain JavaScript.
const startServer = (env: Record<string, string>) => run(['dist/main.js'], env);
execFileSync(process.execPath, ['scripts/build.mjs', '--quiet'], { cwd: ROOT });

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function waitForHealth(proc: Proc, base: string, timeoutMs = 40_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (proc.child.exitCode !== null) {
      throw new Error(`server exited with ${proc.child.exitCode} before serving: ${proc.stderr()}`);
    }
    try {
      const res = await fetch(`${base}/health`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no 200 from ${base}/health within ${timeoutMs} ms; stderr: ${proc.stderr()}`);
}

/** The non-empty lines a process wrote to stderr. */
const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '');

describe('the server process on the embedded database', () => {
  let dataDir: string;
  let base: string;
  let server: Proc;

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-e2e-'));
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    server = startServer({ DATA_DIR: dataDir, PORT: String(port), HOST: '127.0.0.1', LOG_LEVEL: 'warn' });
    await waitForHealth(server, base);
  });

  afterAll(() => {
    if (server.child.exitCode === null) server.child.kill('SIGKILL');
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('answers /health, the OpenAPI document, the docs page and a 404 problem+json over HTTP', async () => {
    const health = await fetch(`${base}/health`);
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: 'ok' });

    const openapi = await fetch(`${base}/api/openapi.json`);
    expect(openapi.status).toBe(200);
    expect(((await openapi.json()) as { openapi: string }).openapi).toMatch(/^3\./);

    const docs = await fetch(`${base}/api/docs`);
    expect(docs.status).toBe(200);
    expect(docs.headers.get('content-type')).toContain('text/html');

    const missing = await fetch(`${base}/no/such/route`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('content-type')).toContain('application/problem+json');
    expect(await missing.json()).toMatchObject({ status: 404 });
  });

  it('makes `gatehouse migrate` on the same data folder answer one line and fail instead of waiting', async () => {
    const migrate = run(['bin/gatehouse.js', 'migrate'], { DATA_DIR: dataDir });
    const code = await migrate.exited(10_000);
    expect(code).not.toBe(0);
    const errLines = lines(migrate.stderr());
    expect(errLines).toHaveLength(1);
    expect(errLines[0]).toMatch(/in use/);
    // The running server was not disturbed.
    expect((await fetch(`${base}/health`)).status).toBe(200);
  });

  it('exits 0 on SIGTERM and releases the data folder lock', async () => {
    expect(existsSync(join(dataDir, 'gatehouse.lock'))).toBe(true);
    server.child.kill('SIGTERM');
    expect(await server.exited(15_000)).toBe(0);
    expect(existsSync(join(dataDir, 'gatehouse.lock'))).toBe(false);
  });
});

describe('the server entry point given arguments', () => {
  it('answers `--help` with the command line usage and exits 0 without serving', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-e2e-help-'));
    try {
      const proc = run(['dist/main.js', '--help'], { DATA_DIR: dataDir, PORT: String(await freePort()) });
      expect(await proc.exited(20_000)).toBe(0);
      expect(proc.stdout()).toMatch(/^Usage: gatehouse/m);
      expect(proc.stdout()).toMatch(/^\s+serve\b/m);
      expect(proc.stderr()).toBe('');
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('refuses an unknown command with a non-zero exit naming it', async () => {
    const proc = run(['dist/main.js', 'serv'], {});
    expect(await proc.exited(20_000)).not.toBe(0);
    expect(proc.stderr()).toContain("unknown command 'serv'");
  });
});

// Each case is its own short-lived process: they run side by side.
describe.concurrent('start-up with a bad variable', () => {
  let dataDir: string;
  beforeAll(() => {
    dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-e2e-bad-'));
  });
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it.for([
    ['PORT', { PORT: 'abc' }],
    ['MASTER_KEY', { DATABASE_URL: 'postgres://gatehouse@127.0.0.1:1/gatehouse' }],
    ['RATE_LIMITS', { RATE_LIMITS: 'sometimes' }],
  ] as const)('stops with a non-zero exit and one stderr line naming %s', async ([variable, env], { expect }) => {
    const proc = startServer({ DATA_DIR: dataDir, HOST: '127.0.0.1', ...env });
    const code = await proc.exited(10_000);
    expect(code).not.toBe(0);
    const errLines = lines(proc.stderr());
    expect(errLines).toHaveLength(1);
    expect(errLines[0]).toContain(variable);
  });
});

// The same process against a PostgreSQL server, when the suite runs on one (npm run test:pg).
describe.runIf(process.env.TEST_DATABASE_URL)('the server process on PostgreSQL', () => {
  const serverUrl = process.env.TEST_DATABASE_URL as string;
  const name = `gatehouse_e2e_${randomBytes(6).toString('hex')}`;
  let databaseUrl: string;

  beforeAll(async () => {
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    await admin.query(`create database ${name}`);
    await admin.end();
    const url = new URL(serverUrl);
    url.pathname = `/${name}`;
    databaseUrl = url.toString();
  });

  afterAll(async () => {
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    await dropDatabase(admin, name);
    await dropDatabase(admin, `${name}_nodes`);
    await admin.end();
  });

  it('migrates, serves /health and exits 0 on SIGTERM', async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-e2e-pg-'));
    const server = startServer({
      DATABASE_URL: databaseUrl,
      MASTER_KEY: randomBytes(32).toString('base64'),
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
    });
    try {
      await waitForHealth(server, base);
      expect(await (await fetch(`${base}/health`)).json()).toMatchObject({ status: 'ok', database: 'ok' });
      server.child.kill('SIGTERM');
      expect(await server.exited(15_000)).toBe(0);
    } finally {
      if (server.child.exitCode === null) server.child.kill('SIGKILL');
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('makes a grant change on one node effective on another within a second', async () => {
    // A database of its own: the nodes share one MASTER_KEY, unlike the test above.
    const admin = new pg.Client({ connectionString: serverUrl });
    await admin.connect();
    await admin.query(`create database ${name}_nodes`);
    await admin.end();
    const url = new URL(serverUrl);
    url.pathname = `/${name}_nodes`;
    const env = {
      DATABASE_URL: url.toString(),
      MASTER_KEY: randomBytes(32).toString('base64'),
      ADMIN_EMAIL: 'root@nodes.example',
      ADMIN_PASSWORD: 'Two nodes, one database 1!',
      HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
      RATE_LIMITS: 'off',
    };
    const dirs = [mkdtempSync(join(tmpdir(), 'gatehouse-node-a-')), mkdtempSync(join(tmpdir(), 'gatehouse-node-b-'))];
    const ports = [await freePort(), await freePort()];
    const nodes = dirs.map((dir, i) => startServer({ ...env, DATA_DIR: dir, PORT: String(ports[i]) }));
    const [a, b] = ports.map((port) => `http://127.0.0.1:${port}`) as [string, string];
    const call = async (base: string, method: string, path: string, token?: string, body?: unknown) => {
      const res = await fetch(`${base}${path}`, {
        method,
        headers: {
          ...(token ? { authorization: `Bearer ${token}` } : {}),
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as Record<string, string> };
    };
    try {
      await Promise.all(nodes.map((node, i) => waitForHealth(node, [a, b][i] as string)));
      const root = (
        await call(a, 'POST', '/api/token/', undefined, { email: env.ADMIN_EMAIL, password: env.ADMIN_PASSWORD })
      ).json.access as string;
      const password = 'Marmalade harbour 2026!';
      const member = (await call(a, 'POST', '/api/v1/users/', root, { email: 'member@nodes.example', password })).json;
      const role = (
        await call(a, 'POST', '/api/v1/roles/', root, { code: 'reader', name: 'Reader', level: 5, permissions: [] })
      ).json;
      expect((await call(a, 'POST', `/api/v1/users/${member.id}/roles/`, root, { role: 'reader' })).status).toBe(201);
      const onB = (await call(b, 'POST', '/api/token/', undefined, { email: 'member@nodes.example', password })).json
        .access as string;

      // Node B has answered (and cached) the old state before each change made on node A.
      for (const [permissions, expected] of [
        [['users.view'], 200],
        [[], 403],
      ] as const) {
        expect((await call(b, 'GET', '/api/v1/users/?limit=1', onB)).status).not.toBe(expected);
        expect((await call(a, 'PATCH', `/api/v1/roles/${role.id}`, root, { permissions })).status).toBe(200);
        const changedAt = Date.now();
        let status = 0;
        while (Date.now() - changedAt < 1_000) {
          status = (await call(b, 'GET', '/api/v1/users/?limit=1', onB)).status;
          if (status === expected) break;
          await new Promise((r) => setTimeout(r, 10));
        }
        expect(status).toBe(expected);
      }
    } finally {
      for (const node of nodes) if (node.child.exitCode === null) node.child.kill('SIGKILL');
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});
