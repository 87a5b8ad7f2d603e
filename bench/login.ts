// `npm run bench:login [-- --pg] [--duration 10]`: password logins against the argon2id ceiling.
//
// 1. The ceiling, as the hashing cost allows it: cores × 1000 / ms per argon2id verification
//    (median of sequential verifications with the service's own parameters, in this process).
// 2. Saturation: 8 connections log in as fast as answers come; logins/s as a share of the ceiling.
// 3. Paced: an open-model load at 80 % of the ceiling; p99 latency.
// 4. Storm: 300 connections; the hashing queue is capped, so excess requests get 503 + Retry-After
//    instead of memory; RSS growth of the server across the storm.
// Results replace the `login` section of docs/benchmarks.md.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Cluster, freePort, startCluster } from '../scripts/pg-cluster.mjs';
import { hashPassword, verifyPassword } from '../src/platform/crypto/passwords.js';
import { runLoad } from './lib/load.js';
import { machine, writeReport } from './lib/report.js';
import { ROOT, startNodeServer } from './lib/server.js';

const { values: args } = parseArgs({
  options: {
    pg: { type: 'boolean', default: false },
    duration: { type: 'string', default: '10' },
    'no-write': { type: 'boolean', default: false },
  },
});
const duration = Number(args.duration);
const ADMIN = { email: 'bench-admin@example.com', password: 'Gatehouse bench admin 2026!' };
const log = (m: string) => console.error(`bench:login: ${m}`);

async function msPerHash(): Promise<number> {
  const hash = await hashPassword('bench-baseline-password');
  const samples: number[] = [];
  for (let i = 0; i < 25; i++) {
    const started = performance.now();
    await verifyPassword(hash, 'bench-baseline-password');
    samples.push(performance.now() - started);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)] as number;
}

const cores = availableParallelism();
const ms = await msPerHash();
const ceiling = (cores * 1000) / ms;
log(`argon2id verification ${ms.toFixed(1)} ms → ceiling ${ceiling.toFixed(0)} logins/s on ${cores} cores`);

let cluster: Cluster | undefined;
const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-bench-login-'));
try {
  if (args.pg) cluster = await startCluster({ durable: true });
  execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--quiet'], { stdio: 'inherit' });
  const server = await startNodeServer(
    'dist/main.js',
    {
      HOST: '127.0.0.1',
      DATA_DIR: dataDir,
      RATE_LIMITS: 'off',
      LOG_LEVEL: 'warn',
      ADMIN_EMAIL: ADMIN.email,
      ADMIN_PASSWORD: ADMIN.password,
      ...(cluster ? { DATABASE_URL: cluster.url, MASTER_KEY: randomBytes(32).toString('base64') } : {}),
    },
    { port: await freePort(), logFile: join(dataDir, 'server.log') },
  );
  const login = [
    {
      method: 'POST' as const,
      path: '/api/token/',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(ADMIN),
    },
  ];
  try {
    log(`saturation: 8 connections, ${duration} s`);
    const saturated = await runLoad({ url: server.baseUrl, connections: 8, duration, requests: login });
    const rate = Math.floor(0.8 * ceiling);
    log(`paced: ${rate} logins/s (80 % of the ceiling), ${duration} s`);
    const paced = await runLoad({ url: server.baseUrl, connections: 50, duration, requests: login, overallRate: rate });
    const before = server.memory().rssMiB;
    log(`storm: 300 connections, ${duration} s`);
    const storm = await runLoad({ url: server.baseUrl, connections: 300, duration, requests: login });
    const after = server.memory();
    const exit = await server.stop();

    const pct = (v: number) => `${((100 * v) / ceiling).toFixed(0)} %`;
    const section = [
      `## Password logins (${cluster ? 'PostgreSQL' : 'PGlite'})`,
      '',
      `- Command: \`npm run bench:login --${cluster ? ' --pg' : ''}\``,
      `- Run: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; ${duration} s per phase; server with \`RATE_LIMITS=off\`, \`LOG_LEVEL=warn\``,
      `- Machine: ${machine()}`,
      `- Ceiling: ${cores} cores × 1000 / ${ms.toFixed(1)} ms per argon2id verification (m=19 MiB, t=2, p=1) = **${ceiling.toFixed(0)} logins/s**`,
      '',
      '| phase | load | logins/s (2xx) | share of ceiling | p50 ms | p99 ms | other answers |',
      '|---|---|---:|---:|---:|---:|---|',
      `| saturation | 8 connections | ${saturated.okPerSecond.toFixed(0)} | ${pct(saturated.okPerSecond)} | ${saturated.p50Ms} | ${saturated.p99Ms} | ${JSON.stringify(saturated.statuses)} |`,
      `| paced | ${rate}/s offered (80 % of ceiling) | ${paced.okPerSecond.toFixed(0)} | ${pct(paced.okPerSecond)} | ${paced.p50Ms} | ${paced.p99Ms} | ${JSON.stringify(paced.statuses)} |`,
      `| storm | 300 connections | ${storm.okPerSecond.toFixed(0)} | ${pct(storm.okPerSecond)} | ${storm.p50Ms} | ${storm.p99Ms} | ${JSON.stringify(storm.statuses)}, ${storm.errors} errors |`,
      '',
      `- Per core: ${(saturated.okPerSecond / cores).toFixed(0)} logins/s per core (Keycloak's sizing guide: 15 password logins/s per vCPU, with argon2id m=7 MiB, t=5).`,
      `- Memory: RSS ${before.toFixed(0)} MiB before the storm, ${after.rssMiB.toFixed(0)} MiB after, peak ${after.peakMiB.toFixed(0)} MiB over the whole run (growth across the storm ${(after.rssMiB - before).toFixed(0)} MiB). Requests past the hashing queue's deadline answer 503 with Retry-After.`,
      `- The server exited with code ${exit} on SIGTERM.`,
    ].join('\n');
    console.log(section);
    if (!args['no-write'])
      writeReport(join(ROOT, 'docs/benchmarks.md'), `login-${cluster ? 'postgres' : 'pglite'}` as never, section);
  } finally {
    await server.stop();
  }
} finally {
  cluster?.stop();
  rmSync(dataDir, { recursive: true, force: true });
}
