import { execFileSync } from 'node:child_process';
// `npm run bench [-- <scenario…>] [--duration 10] [--pg] [--seed N] [--no-baselines] [--no-write]`
//
// Starts the real server process with RATE_LIMITS=off on loopback — on PostgreSQL when
// BENCH_DATABASE_URL / DATABASE_URL is set (a fresh database is created on that server and dropped
// afterwards) or with --pg (a throwaway durable cluster), else on PGlite in a temp folder — measures
// the physical limits, runs each scenario of bench/scenarios/ for a bounded time, and writes the
// table into docs/benchmarks.md. See bench/README.md.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { type Cluster, freePort, startCluster } from '../scripts/pg-cluster.mjs';
import { openDatabase } from '../src/platform/db/client.js';
import { dropDatabase } from '../src/platform/db/drop-database.js';
import { migrate } from '../src/platform/db/migrate.js';
import { measureArgon2, measureBareFastify, measurePostgres } from './lib/baselines.js';
import { runLoad } from './lib/load.js';
import { type Limit, machine, type Report, renderReport, type ScenarioOutcome, writeReport } from './lib/report.js';
import { type NodeProcess, ROOT, startNodeServer } from './lib/server.js';
import { isSkip, type Reply, type Scenario, type ScenarioContext, type Skip, type Tokens } from './scenario.js';
import { SEEDED_PASSWORD, type SeedResult, seedUsers } from './seed-users.js';

const ADMIN = { email: 'bench-admin@example.com', password: 'bench superuser secret 1' };

const log = (line: string) => console.error(`bench: ${line}`);

const { values: args, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    duration: { type: 'string' },
    connections: { type: 'string' },
    pg: { type: 'boolean', default: false },
    seed: { type: 'string', default: '0' },
    'no-baselines': { type: 'boolean', default: false },
    'no-write': { type: 'boolean', default: false },
    write: { type: 'boolean', default: false },
    'log-level': { type: 'string', default: 'info' },
    out: { type: 'string', default: join(ROOT, 'docs/benchmarks.md') },
    help: { type: 'boolean', default: false },
  },
});

async function loadScenarios(): Promise<Scenario[]> {
  const dir = join(ROOT, 'bench/scenarios');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.ts'))
    .sort();
  const all: Scenario[] = [];
  for (const file of files) {
    const mod = (await import(join(dir, file))) as { default: Scenario };
    all.push(mod.default);
  }
  // Cheap routes first, password logins last: argon2 load must not warm or starve the others.
  const order = ['health', 'validate-token', 'user-by-id', 'users-list', 'users-filter', 'users-search'];
  const rank = (s: Scenario) => (order.includes(s.name) ? order.indexOf(s.name) : order.length);
  return all.sort((a, b) => rank(a) - rank(b));
}

function positiveInt(raw: string | undefined, name: string): number | undefined {
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a whole number`);
  return n;
}

function contextFor(baseUrl: string, mode: Report['mode'], seeded: ScenarioContext['seeded']): ScenarioContext {
  const call = async (method: string, path: string, options: { body?: unknown; token?: string } = {}) => {
    const headers: Record<string, string> = {};
    if (options.body !== undefined) headers['content-type'] = 'application/json';
    if (options.token) headers.authorization = `Bearer ${options.token}`;
    const res = await fetch(`${baseUrl}${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
      signal: AbortSignal.timeout(30_000),
    });
    const text = await res.text();
    let body: unknown = text;
    try {
      body = JSON.parse(text);
    } catch {
      // not JSON
    }
    return { status: res.status, body } as Reply;
  };
  return {
    baseUrl,
    database: mode,
    admin: ADMIN,
    seeded,
    call,
    login: async (credentials = ADMIN): Promise<Tokens | Skip> => {
      const reply = await call('POST', '/api/token/', { body: credentials });
      if (reply.status === 404)
        return { skip: 'endpoint not available yet: POST /api/token/ answers 404 (needed to log in)' };
      if (reply.status !== 200 || typeof reply.body?.access !== 'string') {
        return {
          skip: `POST /api/token/ answers ${reply.status} for the ADMIN_EMAIL superuser: ${JSON.stringify(reply.body)}`,
        };
      }
      return reply.body as Tokens;
    },
  };
}

/** The command as a reader would retype it: where the report is written is not part of it. */
function shownCommand(externalServer: boolean): string {
  const argv = process.argv
    .slice(2)
    .filter((a, i, all) => a !== '--out' && all[i - 1] !== '--out' && !a.startsWith('--out='));
  return `${externalServer ? 'BENCH_DATABASE_URL=postgres://… ' : ''}npm run bench${argv.length > 0 ? ` -- ${argv.join(' ')}` : ''}`;
}

async function main(): Promise<number> {
  if (args.help) {
    console.log(readFileSync(join(ROOT, 'bench/README.md'), 'utf8'));
    return 0;
  }
  const durationOverride = positiveInt(args.duration, 'duration');
  const connectionsOverride = positiveInt(args.connections, 'connections');
  const seedCount = positiveInt(args.seed, 'seed') ?? 0;
  const all = await loadScenarios();
  const unknown = positionals.filter((p) => !all.some((s) => s.name === p));
  if (unknown.length > 0) {
    log(`unknown scenario ${unknown.join(', ')}; known: ${all.map((s) => s.name).join(', ')}`);
    return 2;
  }
  const scenarios = positionals.length > 0 ? all.filter((s) => positionals.includes(s.name)) : all;
  const baselineSeconds = durationOverride ?? 10;
  const machineLine = machine();

  const scratch = mkdtempSync(join(tmpdir(), 'gatehouse-bench-'));
  let cluster: Cluster | undefined;
  let server: NodeProcess | undefined;
  let serverUrl = process.env.BENCH_DATABASE_URL || process.env.DATABASE_URL || undefined;
  let databaseUrl: string | undefined;
  let databaseName: string | undefined;
  try {
    if (args.pg && !serverUrl) {
      // Durable settings (fsync on): figures for a real deployment, unlike the test cluster.
      cluster = await startCluster({ durable: true, settings: { shared_buffers: "'512MB'" } });
      serverUrl = cluster.url;
      log(`throwaway cluster ${cluster.version} at ${cluster.url}`);
    }
    const mode: Report['mode'] = serverUrl ? 'postgres' : 'pglite';
    let databaseVersion: string;
    const dataDir = join(scratch, 'data');
    if (serverUrl) {
      databaseName = `gatehouse_bench_${randomBytes(4).toString('hex')}`;
      const adminClient = new pg.Client({ connectionString: serverUrl });
      await adminClient.connect();
      const version = await adminClient.query<{ server_version: string }>('show server_version');
      await adminClient.query(`create database ${databaseName}`);
      await adminClient.end();
      databaseVersion = `PostgreSQL ${version.rows[0]?.server_version}, default settings${cluster ? " except shared_buffers = '512MB' (throwaway cluster, fsync on)" : ''}`;
      const url = new URL(serverUrl);
      url.pathname = `/${databaseName}`;
      databaseUrl = url.toString();
    } else {
      const pkg = JSON.parse(readFileSync(join(ROOT, 'node_modules/@electric-sql/pglite/package.json'), 'utf8'));
      databaseVersion = `PGlite ${pkg.version} (PostgreSQL in WebAssembly, in the server process), data in a temp folder`;
    }

    const limits: Limit[] = [];
    const connections = (s: Scenario) => connectionsOverride || s.connections;
    if (!args['no-baselines']) {
      log(`bare Fastify for ${baselineSeconds} s`);
      const bare = await measureBareFastify({
        duration: baselineSeconds,
        connections: connectionsOverride || 10,
        logFile: join(scratch, 'bare-fastify.log'),
      });
      limits.push({
        key: 'http',
        label: 'bare Fastify route',
        value: bare.okPerSecond,
        unit: 'req/s',
        how: `GET /health on Fastify without logger or plugins, one \`node --import tsx\` process, ${connectionsOverride || 10} connections (p99 ${bare.p99Ms} ms)`,
      });
      if (serverUrl) {
        const pgLimits = await measurePostgres(serverUrl, {
          duration: baselineSeconds,
          clients: 10,
          scratchDir: scratch,
          log,
        });
        limits.push(
          {
            key: 'pg-read',
            label: 'pgbench -S',
            value: pgLimits.readTps,
            unit: 'TPS',
            how: `select-only, scale ${pgLimits.scale}, ${pgLimits.clients} clients, 2 threads, prepared`,
          },
          {
            key: 'pg-write',
            label: 'pgbench -N',
            value: pgLimits.writeTps,
            unit: 'TPS',
            how: `durable UPDATE + SELECT + INSERT transactions, scale ${pgLimits.scale}, ${pgLimits.clients} clients`,
          },
          {
            key: 'pg-write',
            label: 'COPY',
            value: pgLimits.copyRowsPerSecond,
            unit: 'rows/s',
            how: `psql \\copy of ${pgLimits.copyRows.toLocaleString('en-US')} users-shaped rows (UUIDv7 ids) into a table with a primary key and two indexes`,
          },
        );
      }
      log(`argon2id verifications for ${Math.min(baselineSeconds, 5)} s`);
      const argon = await measureArgon2(Math.min(baselineSeconds, 5));
      limits.push({
        key: 'argon2',
        label: 'argon2id verify',
        value: argon.perSecond,
        unit: 'verifications/s',
        how: `the service's hashPassword/verifyPassword (argon2id m=19 MiB, t=2), 8 callers, ${argon.msEach} ms for one alone`,
      });
    }

    // Seeded data goes in before the server starts: on PGlite the server holds the data folder.
    let seeded: SeedResult | undefined;
    if (seedCount > 0) {
      log(`seeding ${seedCount.toLocaleString('en-US')} users`);
      const database = await openDatabase({ databaseUrl, dataDir });
      try {
        await migrate(database.db);
        seeded = await seedUsers(database.db, { count: seedCount, log });
      } finally {
        await database.close();
      }
      log(`seeded in ${seeded.seconds.toFixed(1)} s (${Math.round(seeded.rowsPerSecond)} rows/s)`);
    }

    log(`starting the server on ${mode}`);
    execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--quiet'], { stdio: 'inherit' });
    server = await startNodeServer(
      'dist/main.js',
      {
        HOST: '127.0.0.1',
        DATA_DIR: dataDir,
        RATE_LIMITS: 'off',
        LOG_LEVEL: args['log-level'] as string,
        ADMIN_EMAIL: ADMIN.email,
        ADMIN_PASSWORD: ADMIN.password,
        ...(databaseUrl ? { DATABASE_URL: databaseUrl, MASTER_KEY: randomBytes(32).toString('base64') } : {}),
        ...(process.env.ACTIVITY_TRACKING ? { ACTIVITY_TRACKING: process.env.ACTIVITY_TRACKING } : {}),
      },
      { port: await freePort(), logFile: join(scratch, 'server.log') },
    );
    // Idle: started, migrated, answered /health once, then left alone for two seconds.
    await new Promise((r) => setTimeout(r, 2000));
    const idle = server.memory();

    const ctx = contextFor(server.baseUrl, mode, {
      users: seeded?.inserted ?? 0,
      organizations: seeded?.organizations ?? [],
      sampleUserIds: seeded?.sampleUserIds ?? [],
      password: SEEDED_PASSWORD,
    });
    const outcomes: ScenarioOutcome[] = [];
    for (const scenario of scenarios) {
      const outcome: ScenarioOutcome = {
        name: scenario.name,
        description: scenario.description,
        limit: scenario.limit,
        connections: connections(scenario),
      };
      outcomes.push(outcome);
      let load: Awaited<ReturnType<Scenario['setup']>>;
      try {
        load = await scenario.setup(ctx);
      } catch (err) {
        load = { skip: `setup failed: ${err instanceof Error ? err.message : String(err)}` };
      }
      if (isSkip(load)) {
        outcome.skipped = load.skip;
        log(`${scenario.name}: skipped — ${load.skip}`);
        continue;
      }
      const duration = durationOverride ?? scenario.duration ?? 10;
      log(`${scenario.name}: ${duration} s, ${outcome.connections} connections`);
      outcome.note = load.note;
      outcome.result = await runLoad({
        url: server.baseUrl,
        connections: outcome.connections,
        duration,
        requests: load.requests,
      });
      const r = outcome.result;
      log(
        `${scenario.name}: ${Math.round(r.okPerSecond)} req/s, p99 ${r.p99Ms} ms, statuses ${JSON.stringify(r.statuses)}`,
      );
    }
    const after = server.memory();
    const stopExitCode = await server.stop();
    server = undefined;

    const report: Report = {
      mode,
      command: shownCommand(Boolean(serverUrl && !cluster)),
      databaseVersion,
      date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
      durationSeconds: durationOverride ?? 10,
      logLevel: args['log-level'] as string,
      limits,
      scenarios: outcomes,
      memory: {
        idleMiB: idle.rssMiB,
        afterLoadMiB: after.rssMiB,
        peakMiB: after.peakMiB,
        users: seeded?.inserted ?? 0,
      },
      ...(seeded
        ? { seeding: { users: seeded.inserted, seconds: seeded.seconds, rowsPerSecond: seeded.rowsPerSecond } }
        : {}),
      stopExitCode,
    };
    const section = renderReport(report, machineLine);
    console.log(`\n${section}\n`);
    // A run of some scenarios would replace the full section with a partial one: it only prints,
    // unless --write asks for it.
    if (args.write || (!args['no-write'] && positionals.length === 0)) {
      writeReport(args.out as string, mode, section);
      log(`wrote ${args.out}`);
    } else {
      log(
        `not written to ${args.out}${positionals.length > 0 ? ' (some scenarios only; --write to replace the section)' : ''}`,
      );
    }
    const failed = outcomes.filter((o) => o.result && (o.result.errors > 0 || o.result.okPerSecond === 0));
    for (const o of failed) {
      log(
        `${o.name}: ${o.result?.errors} connection errors or timeouts, ${Math.round(o.result?.okPerSecond ?? 0)} 2xx/s`,
      );
    }
    if (stopExitCode !== 0) log(`the server exited with ${stopExitCode} on SIGTERM`);
    return failed.length > 0 || stopExitCode !== 0 ? 1 : 0;
  } finally {
    if (server) await server.stop();
    if (databaseName && serverUrl) {
      const c = new pg.Client({ connectionString: serverUrl });
      await c.connect();
      await dropDatabase(c, databaseName);
      await c.end();
    }
    cluster?.stop();
    rmSync(scratch, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    // Drizzle's "Failed query" carries the driver's message in `cause`.
    const cause = err instanceof Error && err.cause instanceof Error ? `\ncaused by: ${err.cause.message}` : '';
    log(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}${cause}`);
    process.exit(1);
  },
);
