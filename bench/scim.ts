// `npm run bench:scim [-- --pg] [--seed 1000000] [--duration 5] [--bulk-users 100000] [--bulk-connections 4] [--no-write]`:
// SCIM throughput.
//
// 1. Writes: POST /scim/v2/Users, each a new user, from 20 connections.
// 2. Filtered reads: GET /scim/v2/Users?filter=userName eq "…" over the users written in 1.
// 3. Bulk, as provisioning is measured (bench/provisioning.ts): first --bulk-users / 2 users created
//    through POST /scim/v2/Bulk (1,000 creations a request, not the figure); then --bulk-users users
//    in requests of 1,000 operations (the most one request takes), each 500 creations and 500 PATCHes
//    of distinct existing users, --bulk-connections requests in flight: users per second end to end.
// 4. With --seed N: N users are put in the database first (bench/seed-users.ts, 10 organizations);
//    the userName-eq filter is then measured inside an organization of N/10 users, as latency
//    (4 connections): p50 and p99.
// Results replace the `scim` section of docs/benchmarks.md (unless --no-write).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Cluster, freePort, startCluster } from '../scripts/pg-cluster.mjs';
import { openDatabase } from '../src/platform/db/client.js';
import { migrate } from '../src/platform/db/migrate.js';
import { cpuMeter, cpuPerItem } from './lib/cpu.js';
import { createDatabase, must } from './lib/http.js';
import { type LoadResult, runLoad } from './lib/load.js';
import { machine, writeReport } from './lib/report.js';
import { type NodeProcess, ROOT, startNodeServer } from './lib/server.js';
import { seedUsers } from './seed-users.js';

const { values: args } = parseArgs({
  options: {
    pg: { type: 'boolean', default: false },
    seed: { type: 'string', default: '0' },
    duration: { type: 'string', default: '5' },
    'bulk-users': { type: 'string', default: '100000' },
    'bulk-connections': { type: 'string', default: '4' },
    'no-write': { type: 'boolean', default: false },
  },
});
const duration = Number(args.duration);
const seedCount = Number(args.seed);
const bulkUsers = Number(args['bulk-users']);
const bulkConnections = Number(args['bulk-connections']);
const ADMIN = { email: 'bench-admin@example.com', password: 'Gatehouse bench admin 2026!' };
const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
const BULK_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
const log = (m: string) => console.error(`bench:scim: ${m}`);

const scimUser = (name: string) => ({
  schemas: [USER_SCHEMA],
  userName: name,
  externalId: `ext-${name}`,
  name: { givenName: 'Bench', familyName: name },
  emails: [{ value: `${name}@scim-bench.example`, type: 'work', primary: true }],
  active: true,
});

const filterPath = (userName: string) => `/scim/v2/Users?filter=${encodeURIComponent(`userName eq "${userName}"`)}`;
const pick = <T>(list: T[]) => list[Math.floor(Math.random() * list.length)] as T;

let cluster: Cluster | undefined;
const scratch = mkdtempSync(join(tmpdir(), 'gatehouse-bench-scim-'));
let databaseUrl = process.env.BENCH_DATABASE_URL || undefined;
let server: NodeProcess | undefined;
try {
  if (args.pg && !databaseUrl) {
    cluster = await startCluster({ durable: true });
    databaseUrl = cluster.url;
  }
  if (databaseUrl)
    databaseUrl = await createDatabase(databaseUrl, `gatehouse_bench_scim_${randomBytes(4).toString('hex')}`);
  const dataDir = join(scratch, 'data');
  if (seedCount > 0) {
    log(`seeding ${seedCount.toLocaleString('en-US')} users`);
    const database = await openDatabase({ databaseUrl, dataDir });
    try {
      await migrate(database.db);
      await seedUsers(database.db, { count: seedCount, log });
    } finally {
      await database.close();
    }
  }
  execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--quiet'], { stdio: 'inherit' });
  server = await startNodeServer(
    'dist/main.js',
    {
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      RATE_LIMITS: 'off',
      LOG_LEVEL: 'warn',
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      MASTER_KEY: randomBytes(32).toString('base64'),
      ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
    },
    { port: await freePort(), logFile: join(scratch, 'server.log'), timeoutMs: 120_000 },
  );
  const base = server.baseUrl;
  const root = (await must(base, 'POST', '/api/token/', undefined, { email: ADMIN.email, password: ADMIN.password }))
    .access as string;
  const asRoot = { authorization: `Bearer ${root}` };
  const keyFor = async (organization: string) =>
    (
      await must(
        base,
        'POST',
        '/api/v1/api-keys/',
        undefined,
        { name: 'scim bench', organization, scopes: ['scim'] },
        asRoot,
      )
    ).key as string;
  await must(base, 'POST', '/api/v1/organizations/', undefined, { code: 'bench-scim', name: 'SCIM bench' }, asRoot);
  const key = await keyFor('bench-scim');
  const asKey = { authorization: `Bearer ${key}` };

  // 1. Writes.
  const run = randomBytes(3).toString('hex');
  let next = 0;
  log(`POST /Users, ${duration} s`);
  const writesMeter = cpuMeter(server.pid);
  const writes = await runLoad({
    url: base,
    connections: 20,
    duration,
    requests: [
      {
        method: 'POST',
        path: '/scim/v2/Users',
        headers: { ...asKey, 'content-type': 'application/scim+json' },
        setupRequest: (request) => ({ ...request, body: JSON.stringify(scimUser(`w${run}-${next++}`)) }),
      },
    ],
  });
  const writesCpu = writesMeter();
  if (writes.errors > 0 || writes.okPerSecond === 0) throw new Error(`writes: ${JSON.stringify(writes.statuses)}`);
  const written = Array.from({ length: Math.min(next, 50_000) }, (_, i) => `w${run}-${i}`);

  // 2. Filtered reads.
  log(`GET /Users?filter=userName eq, ${duration} s`);
  const readsMeter = cpuMeter(server.pid);
  const reads = await runLoad({
    url: base,
    connections: 50,
    duration,
    requests: [
      {
        method: 'GET',
        path: filterPath(written[0] as string),
        headers: asKey,
        setupRequest: (r) => ({ ...r, path: filterPath(pick(written)) }),
      },
    ],
  });
  const readsCpu = readsMeter();
  const sample = await must(base, 'GET', filterPath(written[0] as string), undefined, undefined, asKey);
  if (sample.totalResults !== 1) throw new Error(`filter answered ${JSON.stringify(sample)}`);

  // 3. Bulk: first the existing half (all creations), then the measured mix.
  const bulkRequests = Math.ceil(bulkUsers / 1000);
  const existing: string[] = [];
  const bulk = async (build: (n: number) => unknown[], requests: number) => {
    let sent = 0;
    const started = performance.now();
    const worker = async () => {
      while (sent < requests) {
        const n = sent++;
        const answer = await must(
          base,
          'POST',
          '/scim/v2/Bulk',
          undefined,
          { schemas: [BULK_SCHEMA], Operations: build(n) },
          asKey,
        );
        const results = answer.Operations as { method: string; status: string; location?: string }[];
        const failed = results.filter((o) => o.status !== (o.method === 'POST' ? '201' : '200'));
        if (failed.length > 0)
          throw new Error(`bulk: ${failed.length} operations failed: ${JSON.stringify(failed[0])}`);
        for (const o of results)
          if (o.method === 'POST' && o.location) existing.push(o.location.split('/').pop() as string);
      }
    };
    await Promise.all(Array.from({ length: bulkConnections }, worker));
    return (performance.now() - started) / 1000;
  };
  const creation = (name: string, i: number) => ({
    method: 'POST',
    path: '/Users',
    bulkId: `b${i}`,
    data: scimUser(name),
  });
  log(`Bulk setup: ${(bulkRequests * 500).toLocaleString('en-US')} existing users`);
  const setupSeconds = await bulk(
    (n) => Array.from({ length: 1000 }, (_, i) => creation(`e${run}-${n}-${i}`, i)),
    Math.ceil(bulkRequests / 2),
  );
  const toUpdate = [...existing];
  log(`Bulk: ${(bulkRequests * 1000).toLocaleString('en-US')} users, half new, half patched`);
  // Each request: 500 creations, then 500 PATCHes of distinct existing users (each user once in the run).
  const meter = cpuMeter(server.pid);
  const bulkSeconds = await bulk(
    (n) => [
      ...Array.from({ length: 500 }, (_, i) => creation(`b${run}-${n}-${i}`, i)),
      ...toUpdate.slice(n * 500, n * 500 + 500).map((id) => ({
        method: 'PATCH',
        path: `/Users/${id}`,
        data: {
          schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'],
          Operations: [{ op: 'replace', path: 'name.familyName', value: `Renamed${n}` }],
        },
      })),
    ],
    bulkRequests,
  );
  const bulkCpu = meter();
  const bulkRate = (bulkRequests * 1000) / bulkSeconds;
  const setupRate = (Math.ceil(bulkRequests / 2) * 1000) / setupSeconds;

  // 4. At scale.
  let atScale: LoadResult | undefined;
  let perOrganization = 0;
  if (seedCount > 0) {
    perOrganization = Math.floor(seedCount / 10);
    const seededKey = await keyFor('bench-org-0');
    // bench-org-0 holds users user0, user10, user20, …
    const seededName = () => `user${Math.floor(Math.random() * perOrganization) * 10}`;
    const check = await must(base, 'GET', filterPath(seededName()), seededKey);
    if (check.totalResults !== 1) throw new Error(`seeded filter answered ${JSON.stringify(check).slice(0, 300)}`);
    log(`userName eq at ${perOrganization.toLocaleString('en-US')} users in the organization, ${duration} s`);
    // A latency measurement, not a saturation one: 4 callers on a 2-core machine.
    atScale = await runLoad({
      url: base,
      connections: 4,
      duration,
      requests: [
        {
          method: 'GET',
          path: filterPath('user0'),
          headers: { authorization: `Bearer ${seededKey}` },
          setupRequest: (r) => ({ ...r, path: filterPath(seededName()) }),
        },
      ],
    });
  }

  const mode = databaseUrl ? 'PostgreSQL' : 'PGlite';
  const fmt = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 0 });
  const command = `npm run bench:scim${databaseUrl ? ' -- --pg' : ''}${seedCount > 0 ? `${databaseUrl ? '' : ' --'} --seed ${seedCount}` : ''}`;
  const lines = [
    `## SCIM (${mode})`,
    '',
    `- Command: \`${command}\``,
    `- Run: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; ${duration} s per measurement`,
    `- Machine: ${machine()}`,
    '',
    '| measurement | per second | p50 ms | p99 ms | target |',
    '|---|---:|---:|---:|---|',
    `| \`POST /scim/v2/Users\` (20 connections) | ${fmt(writes.okPerSecond)} writes | ${writes.p50Ms} | ${writes.p99Ms} | ≥ 500 |`,
    `| \`GET /scim/v2/Users?filter=userName eq "…"\` (50 connections, ${fmt(written.length)} users) | ${fmt(reads.okPerSecond)} | ${reads.p50Ms} | ${reads.p99Ms} | ≥ 2,000 |`,
    `| \`POST /scim/v2/Bulk\`, setup: 1,000 creations a request, ${bulkConnections} in flight (${fmt(Math.ceil(bulkRequests / 2) * 1000)} users in ${setupSeconds.toFixed(1)} s) | ${fmt(setupRate)} users | | | |`,
    `| **\`POST /scim/v2/Bulk\`, 500 creations + 500 PATCHes of existing users a request, ${bulkConnections} in flight (${fmt(bulkRequests * 1000)} users in ${bulkSeconds.toFixed(1)} s)** | **${fmt(bulkRate)} users** | | | ≥ ${databaseUrl ? '30,000' : '10,000'} |`,
    ...(atScale
      ? [
          `| \`userName eq\` in an organization of ${fmt(perOrganization)} (${fmt(seedCount)} users seeded, 4 connections) | ${fmt(atScale.okPerSecond)} | ${atScale.p50Ms} | ${atScale.p99Ms} | p99 < 10 ms |`,
        ]
      : []),
    '',
    `- CPU per write in \`POST /Users\`: ${cpuPerItem(writesCpu, writes.requests, databaseUrl !== undefined)}; per filtered read: ${cpuPerItem(readsCpu, reads.requests, databaseUrl !== undefined)}.`,
    `- CPU per user in the measured \`/Bulk\` phase (user + system, /proc): ${cpuPerItem(bulkCpu, bulkRequests * 1000, databaseUrl !== undefined)}.`,
  ];
  const section = lines.join('\n');
  console.log(section);
  if (!args['no-write'])
    writeReport(join(ROOT, 'docs/benchmarks.md'), `scim-${databaseUrl ? 'postgres' : 'pglite'}` as never, section);
} finally {
  await server?.stop();
  cluster?.stop();
  rmSync(scratch, { recursive: true, force: true });
}
