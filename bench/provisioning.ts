// `npm run bench:provisioning [-- --pg] [--users 100000] [--batch 1000] [--connections 4] [--phases 20] [--no-write]`:
// bulk provisioning through `POST /api/provisioning/users/bulk`, as seed 000's Django client sends it.
//
// 1. Setup (not measured): half of the users are provisioned first, so they exist.
// 2. Measured: `--users` users in batches of `--batch` items, each batch half new users and half
//    existing ones with a changed name (so both the insert and the update path write), over
//    `--connections` concurrent requests. Validation, scoping and audit events are all included.
// 3. The physical limit, in the same run: a raw COPY of as many users-shaped rows into the same
//    `users` table (all its indexes), by psql `\copy` on PostgreSQL, by `COPY FROM '/dev/blob'` on a
//    PGlite database with the same migrations. The answer is users/s and its share of that.
// 4. With --phases N (PostgreSQL): N more batches of the same mix, one at a time, through the
//    application in this process, with every statement the driver sends timed from send to answer:
//    where the time of one batch goes (statements, and the rest: JSON, validation, planning in Node).
// Prints a markdown section and replaces its mode's `provisioning` section of docs/benchmarks.md (unless --no-write).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { drizzle } from 'drizzle-orm/pglite';
import pg from 'pg';
import { uuidv7 } from 'uuidv7';
import { type Cluster, freePort, startCluster } from '../scripts/pg-cluster.mjs';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { type Db, openDatabase } from '../src/platform/db/client.js';
import { migrate } from '../src/platform/db/migrate.js';
import { cpuMeter, cpuPerItem } from './lib/cpu.js';
import { machine, writeReport } from './lib/report.js';
import { ROOT, startNodeServer } from './lib/server.js';

const { values: args } = parseArgs({
  options: {
    pg: { type: 'boolean', default: false },
    users: { type: 'string', default: '100000' },
    batch: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '4' },
    phases: { type: 'string', default: '0' },
    'no-write': { type: 'boolean', default: false },
  },
});
const PHASE_BATCHES = Number(args.phases);
const TOTAL = Number(args.users);
const BATCH = Number(args.batch);
const CONNECTIONS = Number(args.connections);
const KEY = `bench-provisioning-${randomBytes(12).toString('hex')}`;
const ORGS = 10;
const log = (m: string) => console.error(`bench:provisioning: ${m}`);

interface Item {
  keycloak_id: string;
  email: string;
  first_name: string;
  last_name: string;
  engagemx_client_id: string;
  is_active: boolean;
}

function user(n: number, lastName = 'Doe'): Item {
  return {
    keycloak_id: `kc-${n.toString().padStart(8, '0')}`,
    email: `user${n}@bench.example`,
    first_name: `First${n % 100}`,
    last_name: lastName,
    engagemx_client_id: `client_bench_${n % ORGS}`,
    is_active: true,
  };
}

/** Batches of one organization each (as the Django admin sends per client): half new, half existing. */
function measuredBatches(): Item[][] {
  const batches: Item[][] = [];
  const perOrgHalf = BATCH / 2;
  const existingBase = 0;
  // Setup creates the users numbered below TOTAL / 2 × ORGS; the new ones are numbered from TOTAL × ORGS.
  const newBase = TOTAL * ORGS;
  let made = 0;
  let e = 0;
  let f = 0;
  while (made < TOTAL) {
    const org = batches.length % ORGS;
    const items: Item[] = [];
    // Users whose number ≡ org (mod ORGS) belong to that organization.
    for (let i = 0; i < perOrgHalf; i++, e++) items.push(user(existingBase + e * ORGS + org, 'Changed'));
    for (let i = 0; i < perOrgHalf; i++, f++) items.push(user(newBase + f * ORGS + org));
    batches.push(items);
    made += items.length;
  }
  return batches;
}

function setupBatches(): Item[][] {
  // The existing half: exactly the users the measured batches update.
  const batches: Item[][] = [];
  const measured = measuredBatches();
  for (const b of measured) batches.push(b.slice(0, BATCH / 2).map((u) => ({ ...u, last_name: 'Doe' })));
  return batches;
}

async function send(baseUrl: string, batches: Item[][], connections: number) {
  const latencies: number[] = [];
  let next = 0;
  let failures = 0;
  let created = 0;
  // Bodies are serialised before the clock starts: the load generator shares the two cores.
  const bodies = batches.map((b) => JSON.stringify(b));
  const worker = async () => {
    while (next < batches.length) {
      const i = next++;
      const batch = batches[i] as Item[];
      const body = bodies[i] as string;
      const started = performance.now();
      const res = await fetch(`${baseUrl}/api/provisioning/users/bulk`, {
        method: 'POST',
        headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
        body,
      });
      const answer = (await res.json()) as {
        success_count?: number;
        error_count?: number;
        users?: { action: string }[];
      };
      latencies.push(performance.now() - started);
      for (const u of answer.users ?? []) if (u.action === 'created') created++;
      if (res.status !== 200 || answer.success_count !== batch.length) {
        failures++;
        if (failures <= 3) log(`batch answered ${res.status}: ${JSON.stringify(answer).slice(0, 300)}`);
      }
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: connections }, worker));
  const seconds = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  const pick = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { seconds, failures, created, p50: pick(0.5), p99: pick(0.99) };
}

function copyCsv(rows: number, organizationId: string): string {
  const lines: string[] = [];
  for (let i = 0; i < rows; i++) {
    lines.push(`${organizationId},${uuidv7()},copy-${i},copy${i}@bench.example,First${i % 100},Doe`);
  }
  return `${lines.join('\n')}\n`;
}

const COPY_COLUMNS = 'users (organization_id, id, external_id, email, first_name, last_name)';

async function copyPostgres(cluster: Cluster, rows: number, scratch: string): Promise<number> {
  const psql = join(cluster.bin, 'psql');
  const org = execFileSync(
    psql,
    [
      cluster.url,
      '-qAt',
      '-c',
      "insert into organizations (id, code, name) values (gen_random_uuid(), 'copy-bench', 'copy') returning id",
    ],
    { encoding: 'utf8' },
  )
    .trim()
    .split('\n')[0] as string;
  const file = join(scratch, 'copy.csv');
  writeFileSync(file, copyCsv(rows, org));
  const started = performance.now();
  execFileSync(psql, [
    cluster.url,
    '-v',
    'ON_ERROR_STOP=1',
    '-c',
    `\\copy ${COPY_COLUMNS} from '${file}' with (format csv)`,
  ]);
  return rows / ((performance.now() - started) / 1000);
}

async function copyPglite(rows: number, scratch: string): Promise<number> {
  const pglite = await PGlite.create(join(scratch, 'copy-pgdata'));
  try {
    await migrate(drizzle(pglite) as unknown as Db);
    const { rows: orgRows } = await pglite.query<{ id: string }>(
      "insert into organizations (id, code, name) values (gen_random_uuid(), 'copy-bench', 'copy') returning id",
    );
    const csv = copyCsv(rows, (orgRows[0] as { id: string }).id);
    const started = performance.now();
    await pglite.query(`copy ${COPY_COLUMNS} from '/dev/blob' with (format csv)`, [], { blob: new Blob([csv]) });
    return rows / ((performance.now() - started) / 1000);
  } finally {
    await pglite.close();
  }
}

/**
 * One batch at a time through the application in this process, on a new database of the cluster:
 * each statement's time from send to answer (its first words name it), and the whole request's.
 */
async function phases(cluster: Cluster, batches: number): Promise<string[]> {
  const admin = new pg.Client({ connectionString: cluster.url });
  await admin.connect();
  await admin.query('create database provisioning_phases');
  await admin.end();
  const url = new URL(cluster.url);
  url.pathname = '/provisioning_phases';
  const database = await openDatabase({ databaseUrl: url.toString(), poolSize: 4 });
  await migrate(database.db);
  const app = await buildApp({
    config: loadConfig({
      MASTER_KEY: randomBytes(32).toString('base64'),
      DATA_DIR: scratch,
      RATE_LIMITS: 'off',
      PROVISIONING_API_KEY: KEY,
    }),
    database,
    logger: false,
  });
  await app.ready();
  const timings = new Map<string, { calls: number; ms: number }>();
  let timing = false;
  const query = pg.Client.prototype.query;
  // Every statement of the application goes through Client#query: a promise comes back when no
  // callback is given, a stream for COPY (pg-copy-streams), done at its 'finish' or 'end'.
  pg.Client.prototype.query = function (this: pg.Client, ...callArgs: unknown[]) {
    const started = performance.now();
    const result = (query as (...a: unknown[]) => unknown).apply(this, callArgs);
    if (timing) {
      const first = callArgs[0] as string | { text?: string };
      const text = (typeof first === 'string' ? first : (first.text ?? '')).replace(/\s+/g, ' ').trim();
      const name = text.split(' ').slice(0, 3).join(' ').replace(/"/g, '');
      const done = () => {
        const t = timings.get(name) ?? { calls: 0, ms: 0 };
        t.calls++;
        t.ms += performance.now() - started;
        timings.set(name, t);
      };
      if (result instanceof Promise) result.then(done, () => {});
      else if (result && typeof (result as NodeJS.EventEmitter).once === 'function') {
        let ended = false;
        const end = () => {
          if (!ended) done();
          ended = true;
        };
        (result as NodeJS.EventEmitter).once('finish', end).once('end', end);
      }
    }
    return result;
  } as typeof query;
  const post = async (items: Item[]) => {
    const res = await app.inject({
      method: 'POST',
      url: '/api/provisioning/users/bulk',
      headers: { authorization: `Bearer ${KEY}`, 'content-type': 'application/json' },
      payload: JSON.stringify(items),
    });
    if (res.statusCode !== 200) throw new Error(`phases: ${res.statusCode} ${res.body.slice(0, 300)}`);
  };
  let total = 0;
  try {
    // Users numbered from 10 × TOTAL, none of the HTTP run's; like the measured batches, each batch is
    // one organization's (user n belongs to organization n mod ORGS), half existing, half new.
    const half = BATCH / 2;
    const n = (b: number, k: number) => 10 * TOTAL + (k * ORGS + (b % ORGS));
    for (let b = 0; b < batches; b++) await post(Array.from({ length: half }, (_, i) => user(n(b, b * half + i))));
    timing = true;
    for (let b = 0; b < batches; b++) {
      const items = [
        ...Array.from({ length: half }, (_, i) => user(n(b, b * half + i), 'Changed')),
        ...Array.from({ length: half }, (_, i) => user(n(b, (batches + b) * half + i))),
      ];
      const started = performance.now();
      await post(items);
      total += performance.now() - started;
    }
  } finally {
    timing = false;
    pg.Client.prototype.query = query;
    await app.close();
    await database.close();
  }
  const rows = [...timings].sort((a, b) => b[1].ms - a[1].ms);
  const statements = rows.reduce((sum, [, t]) => sum + t.ms, 0);
  return [
    '',
    `Where one batch's time goes (\`--phases ${batches}\`: ${batches} batches of the same mix, one at a time, in the bench's process; each statement from send to answer):`,
    '',
    '| part of one batch | ms | statements |',
    '|---|---:|---:|',
    ...rows.map(
      ([name, t]) => `| \`${name} …\` | ${(t.ms / batches).toFixed(1)} | ${(t.calls / batches).toFixed(0)} |`,
    ),
    `| the rest: HTTP, JSON, validation, planning, answer (Node) | ${((total - statements) / batches).toFixed(1)} | — |`,
    `| **whole request** | **${(total / batches).toFixed(1)}** | |`,
  ];
}

let cluster: Cluster | undefined;
const scratch = mkdtempSync(join(tmpdir(), 'gatehouse-bench-provisioning-'));
try {
  if (args.pg) cluster = await startCluster({ durable: true });
  execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--quiet'], { stdio: 'inherit' });
  const server = await startNodeServer(
    'dist/main.js',
    {
      HOST: '127.0.0.1',
      DATA_DIR: join(scratch, 'data'),
      RATE_LIMITS: 'off',
      LOG_LEVEL: 'warn',
      PROVISIONING_API_KEY: KEY,
      ...(cluster ? { DATABASE_URL: cluster.url, MASTER_KEY: randomBytes(32).toString('base64') } : {}),
    },
    { port: await freePort(), logFile: join(scratch, 'server.log') },
  );
  let setup: Awaited<ReturnType<typeof send>>;
  let measured: Awaited<ReturnType<typeof send>>;
  let measuredCpu: ReturnType<ReturnType<typeof cpuMeter>>;
  try {
    log(`setup: ${(TOTAL / 2).toLocaleString('en-US')} existing users`);
    setup = await send(server.baseUrl, setupBatches(), CONNECTIONS);
    log(
      `measured: ${TOTAL.toLocaleString('en-US')} users in batches of ${BATCH}, half new, ${CONNECTIONS} connections`,
    );
    const meter = cpuMeter(server.pid);
    measured = await send(server.baseUrl, measuredBatches(), CONNECTIONS);
    measuredCpu = meter();
    // The figure means what it says only if half the users were new: every one of them created.
    if (measured.failures === 0 && measured.created !== TOTAL / 2) {
      throw new Error(`the measured batches created ${measured.created} users, not ${TOTAL / 2}`);
    }
  } finally {
    await server.stop();
  }
  log(`raw COPY of ${TOTAL.toLocaleString('en-US')} rows into users`);
  const copyRate = cluster ? await copyPostgres(cluster, TOTAL, scratch) : await copyPglite(TOTAL, scratch);
  const phaseLines = cluster && PHASE_BATCHES > 0 ? await phases(cluster, PHASE_BATCHES) : [];
  const rate = TOTAL / measured.seconds;
  const mode = cluster ? 'PostgreSQL' : 'PGlite';
  const section = [
    `## Bulk provisioning (${mode})`,
    '',
    `- Command: \`npm run bench:provisioning -- ${cluster ? '--pg ' : ''}--users ${TOTAL} --batch ${BATCH} --connections ${CONNECTIONS}\``,
    `- Run: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; server \`node dist/main.js\` with \`RATE_LIMITS=off\`, \`LOG_LEVEL=warn\`${cluster ? ', durable PostgreSQL (throwaway cluster)' : ', PGlite in DATA_DIR'}`,
    `- Machine: ${machine()} (${availableParallelism()} cores)`,
    '',
    '| phase | users | batches | users/s | share of raw COPY | p50 ms/batch | p99 ms/batch | failed batches |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    `| setup (all new) | ${TOTAL / 2} | ${Math.ceil(TOTAL / 2 / (BATCH / 2))} | ${(TOTAL / 2 / setup.seconds).toFixed(0)} | — | ${setup.p50.toFixed(0)} | ${setup.p99.toFixed(0)} | ${setup.failures} |`,
    `| **half new, half updated** | ${TOTAL} | ${Math.ceil(TOTAL / BATCH)} | **${rate.toFixed(0)}** | ${((100 * rate) / copyRate).toFixed(0)} % | ${measured.p50.toFixed(0)} | ${measured.p99.toFixed(0)} | ${measured.failures} |`,
    `| raw COPY into users (same run) | ${TOTAL} | 1 | ${copyRate.toFixed(0)} | 100 % | — | — | — |`,
    '',
    '- Each batch: one HTTP request of 1,000 seed-000 items for one organization; validation per item, one planning',
    `  read of the existing users, one binary \`COPY\` (${cluster ? "on the transaction's connection" : 'from a blob'}) for the new half and one`,
    `  \`UPDATE … FROM json_to_recordset(…)\` for the changed half, the audit events (one per user written plus one per`,
    `  call) in one binary \`COPY\`, all in one transaction; the server runs with the flags of \`npm start\`. Taken emails,`,
    '  usernames and ids are left to the unique indexes; a violation undoes the call, which is planned again with a probe',
    '  per unique value and upserts `ON CONFLICT (external_id)`. The new half are users that do not exist yet (the run',
    '  checks that each was created); the updated half each change their last name.',
    `- CPU per user in the measured phase (user + system, /proc): ${cpuPerItem(measuredCpu, TOTAL, cluster !== undefined)}.`,
    ...phaseLines,
  ].join('\n');
  console.log(section);
  if (!args['no-write']) {
    writeReport(join(ROOT, 'docs/benchmarks.md'), `provisioning-${cluster ? 'postgres' : 'pglite'}` as never, section);
  }
} finally {
  cluster?.stop();
  rmSync(scratch, { recursive: true, force: true });
}
