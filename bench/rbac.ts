// `npm run bench:rbac [-- --pg] [--duration 5] [--no-write]`: what authorization costs.
//
// 1. Guard cost: two probe routes that differ only in their rule (bench/guard-server.ts), called
//    with a non-superuser's token (a superuser skips the lookup), in alternating rounds A B B A so
//    drift on a shared machine falls on both; the check's cost is 1 − guarded / authenticated.
// 2. `POST /api/v1/authorize/` as other services call it (API key with the `authorize` scope when
//    the server has API keys, else the superuser's token).
// 3. With PostgreSQL (--pg or BENCH_DATABASE_URL): a second server process on the same database;
//    a role's grant is flipped on the first node and the second is polled until it answers
//    accordingly: the time for a change to reach every node.
// Results replace the `rbac` section of docs/benchmarks.md.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Cluster, freePort, startCluster } from '../scripts/pg-cluster.mjs';
import { call, createDatabase, login, must } from './lib/http.js';
import { type LoadResult, runLoad } from './lib/load.js';
import { machine, writeReport } from './lib/report.js';
import { type NodeProcess, ROOT, startNodeServer } from './lib/server.js';

const { values: args } = parseArgs({
  options: {
    pg: { type: 'boolean', default: false },
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '2' },
    flips: { type: 'string', default: '20' },
    'no-write': { type: 'boolean', default: false },
  },
});
const duration = Number(args.duration);
const rounds = Number(args.rounds);
const flips = Number(args.flips);
const ADMIN = { email: 'bench-admin@example.com', password: 'Gatehouse bench admin 2026!' };
const MEMBER_PASSWORD = 'Tangerine lighthouse 2026!';
const CONNECTIONS = 50;
const log = (m: string) => console.error(`bench:rbac: ${m}`);

const sum = (results: LoadResult[]) => results.reduce((a, r) => a + r.okPerSecond, 0) / results.length;
const worst = (results: LoadResult[], key: 'p99Ms' | 'p50Ms') => Math.max(...results.map((r) => r[key]));

let cluster: Cluster | undefined;
const scratch = mkdtempSync(join(tmpdir(), 'gatehouse-bench-rbac-'));
let databaseUrl = process.env.BENCH_DATABASE_URL || undefined;
const servers: NodeProcess[] = [];
try {
  if (args.pg && !databaseUrl) {
    cluster = await startCluster({ durable: true });
    databaseUrl = cluster.url;
  }
  if (databaseUrl)
    databaseUrl = await createDatabase(databaseUrl, `gatehouse_bench_rbac_${randomBytes(4).toString('hex')}`);
  execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--quiet'], { stdio: 'inherit' });
  const env = {
    HOST: '127.0.0.1',
    DATA_DIR: join(scratch, 'data'),
    RATE_LIMITS: 'off',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    MASTER_KEY: randomBytes(32).toString('base64'),
    ...(databaseUrl ? { DATABASE_URL: databaseUrl } : {}),
  };
  const nodeA = await startNodeServer('bench/guard-server.ts', env, {
    port: await freePort(),
    logFile: join(scratch, 'node-a.log'),
  });
  servers.push(nodeA);
  const a = nodeA.baseUrl;

  // A member of a fresh organization holding a role with `users.view`.
  const root = await login(a, ADMIN.email, ADMIN.password);
  const org = await must(a, 'POST', '/api/v1/organizations/', root, { code: 'bench-rbac', name: 'Bench RBAC' });
  const member = await must(a, 'POST', '/api/v1/users/', root, {
    email: 'reader@rbac-bench.example',
    password: MEMBER_PASSWORD,
    organization: org.code,
  });
  const role = await must(a, 'POST', '/api/v1/roles/', root, {
    code: 'bench_reader',
    name: 'Bench reader',
    level: 5,
    organization: org.code,
    permissions: ['users.view'],
  });
  await must(a, 'POST', `/api/v1/users/${member.id}/roles/`, root, { role: 'bench_reader' });
  const memberToken = await login(a, member.email, MEMBER_PASSWORD);

  // 1. Guard cost, ABBA rounds.
  const probe = (path: string) => [
    { method: 'GET' as const, path, headers: { authorization: `Bearer ${memberToken}` } },
  ];
  const open: LoadResult[] = [];
  const guarded: LoadResult[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? ['open', 'guarded'] : ['guarded', 'open'];
    for (const which of order) {
      log(`round ${round + 1}: ${which}, ${duration} s`);
      const result = await runLoad({
        url: a,
        connections: CONNECTIONS,
        duration,
        requests: probe(which === 'open' ? '/bench/authenticated' : '/bench/guarded'),
      });
      if (result.non2xx > 0) throw new Error(`${which}: ${JSON.stringify(result.statuses)}`);
      (which === 'open' ? open : guarded).push(result);
    }
  }
  const cost = 1 - sum(guarded) / sum(open);

  // 2. authorize.
  const key = await call(a, 'POST', '/api/v1/api-keys/', root, {
    name: 'bench',
    organization: org.code,
    scopes: ['authorize'],
  });
  const credential: { headers: Record<string, string>; label: string } =
    key.status === 201
      ? { headers: { 'x-api-key': key.json.key as string }, label: 'API key with the `authorize` scope' }
      : { headers: { authorization: `Bearer ${root}` }, label: 'superuser Bearer token (no API keys on this server)' };
  const body = JSON.stringify({ user_id: member.id, permission: 'users.view' });
  const check = await call(a, 'POST', '/api/v1/authorize/', undefined, JSON.parse(body), credential.headers);
  if (check.json?.allowed !== true)
    throw new Error(`authorize answered ${check.status}: ${JSON.stringify(check.json)}`);
  log(`authorize, ${duration * 2} s`);
  const authorize = await runLoad({
    url: a,
    connections: CONNECTIONS,
    duration: duration * 2,
    requests: [
      {
        method: 'POST',
        path: '/api/v1/authorize/',
        headers: { ...credential.headers, 'content-type': 'application/json' },
        body,
      },
    ],
  });

  // 3. Propagation to a second node.
  let propagation: number[] | undefined;
  if (databaseUrl) {
    const nodeB = await startNodeServer('dist/main.js', env, {
      port: await freePort(),
      logFile: join(scratch, 'node-b.log'),
    });
    servers.push(nodeB);
    const tokenOnB = await login(nodeB.baseUrl, member.email, MEMBER_PASSWORD);
    propagation = [];
    for (let flip = 0; flip < flips; flip++) {
      const grant = flip % 2 === 1;
      const expected = grant ? 200 : 403;
      // Warm B's cache with the old answer first, so the change must arrive through the bus.
      await call(nodeB.baseUrl, 'GET', '/api/v1/users/?limit=1', tokenOnB);
      await must(a, 'PATCH', `/api/v1/roles/${role.id}`, root, { permissions: grant ? ['users.view'] : [] });
      const changedAt = performance.now();
      for (;;) {
        const res = await call(nodeB.baseUrl, 'GET', '/api/v1/users/?limit=1', tokenOnB);
        if (res.status === expected) break;
        if (performance.now() - changedAt > 10_000) throw new Error(`node B still answers ${res.status} after 10 s`);
        await new Promise((r) => setTimeout(r, 2));
      }
      propagation.push(performance.now() - changedAt);
    }
    propagation.sort((x, y) => x - y);
  }

  const mode = databaseUrl ? 'PostgreSQL' : 'PGlite';
  const fmt = (n: number) => n.toLocaleString('en-US', { maximumFractionDigits: 0 });
  const lines = [
    `## Authorization (${mode})`,
    '',
    `- Command: \`npm run bench:rbac${databaseUrl ? ' -- --pg' : ''}\``,
    `- Run: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; ${CONNECTIONS} connections, ${duration} s per round, ${rounds} rounds each (A B B A)`,
    `- Machine: ${machine()}`,
    '',
    '| measurement | req/s (2xx) | p50 ms | p99 ms |',
    '|---|---:|---:|---:|',
    `| \`GET /bench/authenticated\` (signed-in user, no permission) | ${fmt(sum(open))} | ${worst(open, 'p50Ms')} | ${worst(open, 'p99Ms')} |`,
    `| \`GET /bench/guarded\` (\`users.view\` through a role) | ${fmt(sum(guarded))} | ${worst(guarded, 'p50Ms')} | ${worst(guarded, 'p99Ms')} |`,
    `| \`POST /api/v1/authorize/\` (${credential.label}) | ${fmt(authorize.okPerSecond)} | ${authorize.p50Ms} | ${authorize.p99Ms} |`,
    '',
    `- Permission check cost: **${(cost * 100).toFixed(1)} %** of throughput (1 − guarded / authenticated, means over the rounds; target < 5 %; a negative figure means the difference is below this machine's noise).`,
    `- \`POST /api/v1/authorize/\`: **${fmt(authorize.okPerSecond)} req/s** (target ≥ 10,000).`,
    propagation
      ? `- A grant change on one node reaches a second server process on the same database in p50 ${propagation[Math.floor(propagation.length / 2)]?.toFixed(1)} ms, max ${propagation[propagation.length - 1]?.toFixed(1)} ms over ${flips} changes (target < 1 s; measured from the answer of the changing request to the first changed answer of the other node, polled every 2 ms).`
      : '- Propagation between nodes is measured on PostgreSQL only (`--pg`); PGlite is one process.',
  ];
  const section = lines.join('\n');
  console.log(section);
  if (!args['no-write'])
    writeReport(join(ROOT, 'docs/benchmarks.md'), `rbac-${databaseUrl ? 'postgres' : 'pglite'}` as never, section);
} finally {
  for (const server of servers.reverse()) await server.stop();
  cluster?.stop();
  rmSync(scratch, { recursive: true, force: true });
}
