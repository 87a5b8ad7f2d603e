import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { uuidv7 } from 'uuidv7';
import { findPgBin, freePort } from '../../scripts/pg-cluster.mjs';
import { hashPassword, verifyPassword } from '../../src/platform/crypto/passwords.js';
import { dropDatabase } from '../../src/platform/db/drop-database.js';
import { type LoadResult, runLoad } from './load.js';
import { startNodeServer } from './server.js';

/** GET /health on bare Fastify: the most requests/s one Node process can answer here. */
export async function measureBareFastify(options: {
  duration: number;
  connections: number;
  logFile: string;
}): Promise<LoadResult> {
  const server = await startNodeServer(
    'bench/bare-server.ts',
    {},
    { port: await freePort(), logFile: options.logFile },
  );
  try {
    return await runLoad({
      url: server.baseUrl,
      connections: options.connections,
      duration: options.duration,
      requests: [{ method: 'GET', path: '/health' }],
    });
  } finally {
    await server.stop();
  }
}

/** Password verifications per second with the service's own argon2id parameters and concurrency cap. */
export async function measureArgon2(seconds: number): Promise<{ perSecond: number; msEach: number }> {
  const password = 'bench-baseline-password';
  const hash = await hashPassword(password);
  const deadline = Date.now() + seconds * 1000;
  let count = 0;
  const started = Date.now();
  // More callers than cores, as under load: the service's cap queues them.
  const loops = Array.from({ length: 8 }, async () => {
    while (Date.now() < deadline) {
      if (!(await verifyPassword(hash, password))) throw new Error('argon2 verify failed');
      count++;
    }
  });
  await Promise.all(loops);
  const elapsed = (Date.now() - started) / 1000;
  const single = Date.now();
  await verifyPassword(hash, password);
  return { perSecond: count / elapsed, msEach: Date.now() - single };
}

function binary(name: string): string {
  const bin = findPgBin();
  return bin && existsSync(join(bin, name)) ? join(bin, name) : name;
}

function exec(command: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve(out);
      else reject(new Error(`${command} ${args.join(' ')} exited with ${code}:\n${out.slice(-2000)}`));
    });
  });
}

function withDatabase(serverUrl: string, name: string): string {
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

async function admin<T>(serverUrl: string, work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export interface PostgresBaselines {
  /** pgbench -S: single-row primary-key SELECTs, TPS. */
  readTps: number;
  /** pgbench -N: a durable UPDATE + SELECT + INSERT transaction, TPS. */
  writeTps: number;
  /** COPY of users-shaped rows into an indexed table, rows/s. */
  copyRowsPerSecond: number;
  copyRows: number;
  clients: number;
  scale: number;
}

/**
 * The database's own ceilings on this machine, in a scratch database on the same server: pgbench
 * read-only and write transactions, then a COPY of users-shaped rows (primary key and two indexes).
 */
export async function measurePostgres(
  serverUrl: string,
  options: { duration: number; clients: number; scratchDir: string; log: (line: string) => void },
): Promise<PostgresBaselines> {
  const name = `gatehouse_bench_scratch_${randomBytes(4).toString('hex')}`;
  const url = withDatabase(serverUrl, name);
  const scale = 10;
  await admin(serverUrl, (c) => c.query(`create database ${name}`));
  try {
    options.log(`pgbench: initialising scale ${scale} (${scale * 100_000} accounts)`);
    await exec(binary('pgbench'), ['-i', '-q', '-s', String(scale), url], 300_000);
    const tps = (out: string) => {
      const match = /tps = ([\d.]+) \(without initial connection time\)/.exec(out);
      if (!match) throw new Error(`no tps in pgbench output:\n${out}`);
      return Number(match[1]);
    };
    const common = ['-n', '-M', 'prepared', '-c', String(options.clients), '-j', '2', '-T', String(options.duration)];
    options.log(`pgbench -S for ${options.duration} s`);
    const readTps = tps(await exec(binary('pgbench'), ['-S', ...common, url], (options.duration + 60) * 1000));
    options.log(`pgbench -N for ${options.duration} s`);
    const writeTps = tps(await exec(binary('pgbench'), ['-N', ...common, url], (options.duration + 60) * 1000));

    // About one second of COPY per second of --duration at the rates seen here (~100k rows/s).
    const copyRows = Math.max(50_000, options.duration * 100_000);
    const file = join(options.scratchDir, 'copy-rows.csv');
    await writeUserRows(file, copyRows);
    await admin(url, (c) =>
      c.query(`create table copy_scratch (
        organization_id uuid not null,
        id uuid primary key,
        email text not null,
        first_name text not null,
        last_name text not null,
        password_hash text,
        date_joined timestamptz not null
      );
      create unique index on copy_scratch (organization_id, lower(email) collate "C");
      create index on copy_scratch (organization_id, id);`),
    );
    options.log(`COPY of ${copyRows.toLocaleString('en-US')} rows`);
    const started = process.hrtime.bigint();
    await exec(
      binary('psql'),
      [url, '-v', 'ON_ERROR_STOP=1', '-c', `\\copy copy_scratch from '${file}' with (format csv)`],
      600_000,
    );
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    return { readTps, writeTps, copyRowsPerSecond: copyRows / seconds, copyRows, clients: options.clients, scale };
  } finally {
    await admin(serverUrl, (c) => dropDatabase(c, name));
  }
}

async function writeUserRows(file: string, rows: number): Promise<void> {
  const out = createWriteStream(file);
  const orgs = Array.from({ length: 10 }, () => uuidv7());
  const hash = await hashPassword('bench-copy-password');
  const now = new Date().toISOString();
  for (let i = 0; i < rows; i++) {
    const line = `${orgs[i % 10]},${uuidv7()},copy${i}@example.org,First${i % 100},Last${i % 1000},"${hash}",${now}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
}
