// `npm run bench:activity [-- --pg] [--duration 5] [--rounds 4] [--rows 10000000] [--no-write]`:
// what activity tracking costs and how its tables answer at scale.
//
// 1. Request tracking on versus off: two servers (ACTIVITY_TRACKING=on / off, each on its own
//    database), loaded in turn in alternating rounds A B B A, each round on a new process of its
//    server (two processes of one build differ by up to a third on a cheap route) with the route
//    warmed up first, on
//    authenticated GET routes (`/api/v1/users/profile` and `validate-token/` with a user's token,
//    user-by-id with a superuser's); throughput loss and added p99. Latency percentiles come from every
//    response's own (fractional) latency, pooled over the rounds. At saturation the tail is mostly
//    queueing, so the added p99 is also measured at half the untracked throughput, with an evenly
//    paced open-model load (bench/lib/paced-load.ts; autocannon's `overallRate` sends in bursts that
//    made the tail), in rounds A B B A again. Each round's own figures are reported too, with how late
//    the generator sent the paced requests: on two shared cores the rounds of one and the same server
//    differ by more than tracking changes, and that spread is what a difference has to beat. The
//    servers' own event-loop delay in each paced round (from /metrics) shows what tracking adds on the
//    server's thread alone.
// 2. Acknowledged changes versus audit rows: concurrent `PATCH /api/v1/users/{id}` for a few
//    seconds; every 2xx must have its `user.updated` event (counted through the API).
// 3. With PostgreSQL (--pg or BENCH_DATABASE_URL): `--rows` request rows over 90 days (1,000 users,
//    10 organizations) plus 1,000,000 rows in one hour, written with generate_series; then a filtered
//    page (one user, one week) through the API (p99 of sequential calls), the hourly aggregation
//    of the 1,000,000-row hour, and streamed NDJSON and CSV exports of it (rows/s, server RSS growth).
// Results replace the `activity` section of docs/benchmarks.md.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sql } from 'drizzle-orm';
import type pg from 'pg';
import { type Cluster, freePort, startCluster } from '../scripts/pg-cluster.mjs';
import { aggregateHour } from '../src/modules/activity/activity-stats.js';
import { openDatabase } from '../src/platform/db/client.js';
import { cpuSeconds } from './lib/cpu.js';
import { call, createDatabase, login, must } from './lib/http.js';
import { type LoadResult, quantile, runLoad } from './lib/load.js';
import { runPaced } from './lib/paced-load.js';
import { machine, writeReport } from './lib/report.js';
import { type NodeProcess, ROOT, startNodeServer } from './lib/server.js';

const { values: args } = parseArgs({
  options: {
    pg: { type: 'boolean', default: false },
    duration: { type: 'string', default: '5' },
    rounds: { type: 'string', default: '4' },
    rows: { type: 'string', default: '10000000' },
    'hour-rows': { type: 'string', default: '1000000' },
    'no-write': { type: 'boolean', default: false },
  },
});
const duration = Number(args.duration);
const rounds = Number(args.rounds);
const rows = Number(args.rows);
const hourRows = Number(args['hour-rows']);
const ADMIN = { email: 'bench-admin@example.com', password: 'Gatehouse bench admin 2026!' };
const MEMBER_PASSWORD = 'Tangerine lighthouse 2026!';
const CONNECTIONS = 50;
const log = (m: string) => console.error(`bench:activity: ${m}`);
const fmt = (n: number, digits = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

const mean = (results: LoadResult[]) => results.reduce((a, r) => a + r.okPerSecond, 0) / results.length;
/** A quantile of every response's own latency over the rounds (pooled, fractional milliseconds). */
const pooled = (results: LoadResult[], q: number) =>
  quantile(
    results.flatMap((r) => r.latenciesMs ?? []),
    q,
  );

/** Values of unlabelled metrics, from one scrape (a scrape also restarts the event-loop delay figures). */
async function metrics(base: string, ...names: string[]): Promise<number[]> {
  const lines = (await (await fetch(`${base}/metrics`)).text()).split('\n');
  return names.map((name) => {
    const line = lines.find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(' ')[1]) : 0;
  });
}

/** A user with a token on a fresh server: the load's caller and the object it reads. */
async function prepare(base: string) {
  const root = await login(base, ADMIN.email, ADMIN.password);
  const org = await must(base, 'POST', '/api/v1/organizations/', root, {
    code: 'bench-activity',
    name: 'Bench activity',
  });
  const member = await must(base, 'POST', '/api/v1/users/', root, {
    email: 'reader@activity-bench.example',
    password: MEMBER_PASSWORD,
    organization: org.code,
  });
  return { root, member, token: await login(base, member.email, MEMBER_PASSWORD) };
}

let cluster: Cluster | undefined;
const scratch = mkdtempSync(join(tmpdir(), 'gatehouse-bench-activity-'));
let serverUrl = process.env.BENCH_DATABASE_URL || undefined;
const servers: NodeProcess[] = [];
try {
  if (args.pg && !serverUrl) {
    cluster = await startCluster({ durable: true });
    serverUrl = cluster.url;
  }
  const suffix = randomBytes(4).toString('hex');
  const urls = serverUrl
    ? {
        on: await createDatabase(serverUrl, `gatehouse_bench_activity_on_${suffix}`),
        off: await createDatabase(serverUrl, `gatehouse_bench_activity_off_${suffix}`),
      }
    : undefined;
  execFileSync(process.execPath, [join(ROOT, 'scripts/build.mjs'), '--quiet'], { stdio: 'inherit' });
  const env = (which: 'on' | 'off') => ({
    HOST: '127.0.0.1',
    DATA_DIR: join(scratch, which),
    RATE_LIMITS: 'off',
    LOG_LEVEL: 'warn',
    ADMIN_EMAIL: ADMIN.email,
    ADMIN_PASSWORD: ADMIN.password,
    MASTER_KEY: randomBytes(32).toString('base64'),
    ACTIVITY_TRACKING: which,
    // Fixed, not the port's: tokens name it as their issuer, and they outlive each server process.
    PUBLIC_URL: `http://bench-${which}.gatehouse.test`,
    ...(urls ? { DATABASE_URL: urls[which] } : {}),
  });
  // One environment per kind, master key included: a restarted server reads what the last one wrote.
  const envs = { on: env('on'), off: env('off') };
  const start = async (which: 'on' | 'off') => {
    const server = await startNodeServer('dist/main.js', envs[which], {
      port: await freePort(),
      logFile: join(scratch, `${which}.log`),
    });
    servers.push(server);
    return server;
  };
  const current = { on: await start('on'), off: await start('off') };
  const setups = { on: await prepare(current.on.baseUrl), off: await prepare(current.off.baseUrl) };
  // Request rows written and dropped by the tracked servers stopped so far.
  const stopped = { written: 0, dropped: 0 };
  /**
   * A new process for one kind, on the same database. Two processes of one and the same build differ
   * by up to a third in throughput on a cheap route (compiled code, memory layout), more than tracking
   * changes, so each measured round gets processes of its own, and the rounds average that out. The
   * tracked server is first given a flush interval and its counters read: its rows are all written.
   */
  const restart = async (which: 'on' | 'off') => {
    const old = current[which];
    if (which === 'on') {
      await new Promise((r) => setTimeout(r, 1100));
      const [written = 0, dropped = 0] = await metrics(
        old.baseUrl,
        'activity_rows_written_total',
        'activity_requests_dropped_total',
      );
      stopped.written += written;
      stopped.dropped += dropped;
    }
    await old.stop();
    current[which] = await start(which);
    return current[which];
  };

  // 1. Tracking on versus off, A B B A, per route: the cheaper the route, the larger the share a
  //    tracked request adds to it.
  const routes = (which: 'on' | 'off') => {
    const { root, member, token } = setups[which];
    return [
      { label: '`GET /api/v1/users/profile` (user token)', path: '/api/v1/users/profile', token },
      { label: '`GET /api/v1/users/validate-token/` (user token)', path: '/api/v1/users/validate-token/', token },
      { label: '`GET /api/v1/users/{id}/` (superuser token)', path: `/api/v1/users/${member.id}/`, token: root },
    ];
  };
  type Comparison = {
    label: string;
    results: Record<'on' | 'off', LoadResult[]>;
    cpu: Record<'on' | 'off', number>;
    /** Latencies of the paced rounds at `pacedRate` requests per second. */
    paced: Record<'on' | 'off', number[]>;
    /** How late the paced requests left the generator (its own share of their latencies). */
    sendLags: Record<'on' | 'off', number[]>;
    /** Each paced round's own p99: how far rounds of the same server differ is this machine's noise. */
    roundP99s: Record<'on' | 'off', number[]>;
    /**
     * The server's own event-loop delay in each paced round (prom-client's p99 and maximum, from
     * /metrics): what tracking adds on the server's thread, without the network, the database or the
     * load generator.
     */
    loopP99s: Record<'on' | 'off', number[]>;
    loopMaxes: Record<'on' | 'off', number[]>;
    pacedRate: number;
    pacedFailed: number;
  };
  const comparisons: Comparison[] = routes('on').map((r) => ({
    label: r.label,
    results: { on: [], off: [] },
    cpu: { on: 0, off: 0 },
    paced: { on: [], off: [] },
    sendLags: { on: [], off: [] },
    roundP99s: { on: [], off: [] },
    loopP99s: { on: [], off: [] },
    loopMaxes: { on: [], off: [] },
    pacedRate: 0,
    pacedFailed: 0,
  }));
  let warmUpServed = 0;
  let pacedServed = 0;
  /** A fresh server of this kind, its route warmed up (unrecorded) so the round does not pay for compiling it. */
  const freshFor = async (which: 'on' | 'off', route: { path: string; token: string }) => {
    const server = await restart(which);
    const warmUp = await runLoad({
      url: server.baseUrl,
      connections: CONNECTIONS,
      duration: Math.min(2, duration),
      requests: [{ method: 'GET', path: route.path, headers: { authorization: `Bearer ${route.token}` } }],
    });
    if (which === 'on') warmUpServed += warmUp.requests;
    return server;
  };
  for (const [index, comparison] of comparisons.entries()) {
    const { results, cpu } = comparison;
    for (let round = 0; round < rounds; round++) {
      const order: ('on' | 'off')[] = round % 2 === 0 ? ['on', 'off'] : ['off', 'on'];
      for (const which of order) {
        const route = routes(which)[index] as { path: string; token: string };
        log(`${comparison.label} round ${round + 1}: tracking ${which}, ${duration} s`);
        const server = await freshFor(which, route);
        const cpuBefore = cpuSeconds(server.pid);
        const result = await runLoad({
          url: server.baseUrl,
          connections: CONNECTIONS,
          duration,
          requests: [{ method: 'GET', path: route.path, headers: { authorization: `Bearer ${route.token}` } }],
          exactLatency: true,
        });
        if (result.non2xx > 0) throw new Error(`${which} ${route.path}: ${JSON.stringify(result.statuses)}`);
        cpu[which] += cpuSeconds(server.pid) - cpuBefore;
        results[which].push(result);
      }
    }
    comparison.pacedRate = Math.round(mean(results.off) / 2);
    for (let round = 0; round < rounds; round++) {
      const order: ('on' | 'off')[] = round % 2 === 0 ? ['on', 'off'] : ['off', 'on'];
      for (const which of order) {
        const route = routes(which)[index] as { path: string; token: string };
        log(`${comparison.label} paced round ${round + 1}: tracking ${which}, ${comparison.pacedRate} req/s`);
        const server = await freshFor(which, route);
        await metrics(server.baseUrl); // restarts the event-loop delay histogram
        const paced = await runPaced({
          url: server.baseUrl,
          path: route.path,
          headers: { authorization: `Bearer ${route.token}` },
          rate: comparison.pacedRate,
          duration,
          connections: CONNECTIONS,
        });
        comparison.paced[which].push(...paced.latenciesMs);
        comparison.sendLags[which].push(...paced.sendLagsMs);
        comparison.roundP99s[which].push(quantile(paced.latenciesMs, 0.99));
        const [loopP99 = 0, loopMax = 0] = await metrics(
          server.baseUrl,
          'nodejs_eventloop_lag_p99_seconds',
          'nodejs_eventloop_lag_max_seconds',
        );
        comparison.loopP99s[which].push(loopP99 * 1000);
        comparison.loopMaxes[which].push(loopMax * 1000);
        comparison.pacedFailed += paced.failed;
        if (which === 'on') pacedServed += paced.sent;
      }
    }
  }
  await new Promise((r) => setTimeout(r, 1500)); // one flush interval
  const served = comparisons.reduce(
    (a, c) => a + c.results.on.reduce((b, r) => b + r.requests, 0),
    warmUpServed + pacedServed,
  );
  const [lastWritten = 0, lastDropped = 0] = await metrics(
    current.on.baseUrl,
    'activity_rows_written_total',
    'activity_requests_dropped_total',
  );
  const written = stopped.written + lastWritten;
  const dropped = stopped.dropped + lastDropped;
  const on = current.on;
  const requestsOf = (c: Comparison, which: 'on' | 'off') => c.results[which].reduce((a, r) => a + r.requests, 0);
  const cpuPerRequest = (c: Comparison, which: 'on' | 'off') => (c.cpu[which] / requestsOf(c, which)) * 1e6;
  const trackingTable = comparisons.flatMap((c) => {
    const loss = 1 - mean(c.results.on) / mean(c.results.off);
    const addedP99 = pooled(c.results.on, 0.99) - pooled(c.results.off, 0.99);
    const pacedAddedP99 = quantile(c.paced.on, 0.99) - quantile(c.paced.off, 0.99);
    const signed = (ms: number) => `${ms >= 0 ? '+' : '−'}${fmt(Math.abs(ms), 2)} ms`;
    return [
      `| ${c.label} | req/s (2xx) | p50 ms | p99 ms |`,
      '|---|---:|---:|---:|',
      ...(['off', 'on'] as const).map(
        (which) =>
          `| request tracking ${which} | ${fmt(mean(c.results[which]))} | ${fmt(pooled(c.results[which], 0.5), 2)} | ${fmt(pooled(c.results[which], 0.99), 2)} |`,
      ),
      ...(['off', 'on'] as const).map(
        (which) =>
          `| request tracking ${which}, paced at ${fmt(c.pacedRate)} req/s (half the untracked throughput) | ${fmt(c.pacedRate)} offered | ${fmt(quantile(c.paced[which], 0.5), 2)} | ${fmt(quantile(c.paced[which], 0.99), 2)} |`,
      ),
      '',
      `- Throughput loss with tracking: **${(loss * 100).toFixed(1)} %** (target ≤ 10 %; negative = below this machine's noise).`,
      `- Added p99 at half load (paced): **${signed(pacedAddedP99)}** (target ≤ 1 ms; latency from each request's due time, pooled over the rounds${c.pacedFailed > 0 ? `; ${fmt(c.pacedFailed)} paced requests failed` : ''}); at saturation: ${signed(addedP99)} (there the tail is mostly queueing, and follows the throughput loss).`,
      `- Server process CPU per request (user + system, /proc): ${fmt(cpuPerRequest(c, 'off'), 1)} µs off, ${fmt(cpuPerRequest(c, 'on'), 1)} µs on.`,
      `- Each round on its own (the spread between rounds of one server is this machine's noise): req/s ${(['off', 'on'] as const).map((which) => `${which} ${c.results[which].map((r) => fmt(r.okPerSecond)).join(', ')}`).join('; ')}; paced p99 ms ${(['off', 'on'] as const).map((which) => `${which} ${c.roundP99s[which].map((ms) => fmt(ms, 1)).join(', ')}`).join('; ')}.`,
      `- The server's event-loop delay in each paced round, p99 / maximum ms (prom-client's figures, its 10 ms sampling interval included): ${(['off', 'on'] as const).map((which) => `${which} ${c.loopP99s[which].map((ms, i) => `${fmt(ms, 1)} / ${fmt(c.loopMaxes[which][i] ?? 0, 1)}`).join(', ')}`).join('; ')}.`,
      `- The generator's own lag in the paced rounds (how late a request left it), p50 / p99: ${(['off', 'on'] as const).map((which) => `${fmt(quantile(c.sendLags[which], 0.5), 2)} / ${fmt(quantile(c.sendLags[which], 0.99), 2)} ms ${which}`).join(', ')}.`,
      '',
    ];
  });

  // 2. Acknowledged changes versus audit rows.
  log(`acknowledged changes: concurrent PATCH /api/v1/users/{id}, ${duration} s`);
  const { root, member } = setups.on;
  let acknowledged = 0;
  let refused = 0;
  const until = performance.now() + duration * 1000;
  await Promise.all(
    Array.from({ length: 20 }, async (_, worker) => {
      for (let i = 0; performance.now() < until; i++) {
        const res = await call(on.baseUrl, 'PATCH', `/api/v1/users/${member.id}`, root, {
          first_name: `w${worker}-${i}`,
        });
        if (res.status === 200) acknowledged++;
        else refused++;
      }
    }),
  );
  let audited = 0;
  for (let cursor: string | null = ''; cursor !== null; ) {
    const page = await must(
      on.baseUrl,
      'GET',
      `/api/v1/activities/?activity_type=user.updated&user=${member.id}&limit=500${cursor ? `&cursor=${cursor}` : ''}`,
      root,
    );
    audited += page.results.length;
    cursor = page.next;
  }

  // 3. Scale, on PostgreSQL.
  const scale: string[] = [];
  if (urls && rows > 0) {
    const database = await openDatabase({ databaseUrl: urls.on, poolSize: 4 });
    try {
      const now = Date.now();
      const hourStart = new Date(Math.floor((now - 100 * 86_400_000) / 3_600_000) * 3_600_000);
      log(`seeding ${fmt(rows)} rows over 90 days and ${fmt(hourRows)} rows in ${hourStart.toISOString()}`);
      const seeded = performance.now();
      const user = (expr: string) => `('00000000-0000-4000-8000-' || lpad(to_hex(${expr}), 12, '0'))::uuid`;
      const org = (expr: string) => `('00000000-0000-4000-9000-' || lpad(to_hex(${expr}), 12, '0'))::uuid`;
      const insert = (count: number, from: number, spanMs: number) => `
        insert into activities (timestamp, id, kind, activity_type, category, success, organization_id, user_id,
          actor_type, actor_id, description, method, path, status, duration_ms, ip_address, user_agent)
        select to_timestamp(${from / 1000} + (i::float8 * ${spanMs / 1000} / ${count})), gen_random_uuid(), 'request',
          'api.request', 'api', i % 50 <> 0, ${org('i % 10')}, ${user('i % 1000')}, 'user', ${user('i % 1000')},
          'GET /api/v1/users/:id', 'GET', '/api/v1/users/:id', case when i % 50 = 0 then 404 else 200 end,
          (i % 97) * 0.37, '203.0.113.' || (i % 250), 'Mozilla/5.0 (X11; Linux x86_64) bench'
        from generate_series(1, ${count}) as i`;
      // Partitions for the months the rows fall in (the job keeps only the coming months).
      await database.db.execute(
        sql.raw(`do $$ declare m timestamp := date_trunc('month', now() at time zone 'UTC') - interval '5 months';
          begin for i in 0..5 loop execute format('create table if not exists %I partition of activities for values from (%L) to (%L)',
            'activities_p' || to_char(m + make_interval(months => i), 'YYYYMM'), to_char(m + make_interval(months => i), 'YYYY-MM-DD') || ' 00:00:00+00',
            to_char(m + make_interval(months => i + 1), 'YYYY-MM-DD') || ' 00:00:00+00'); end loop; end $$`),
      );
      const pool = database.pool as pg.Pool;
      const chunk = 1_000_000;
      for (let done = 0; done < rows; done += chunk) {
        const n = Math.min(chunk, rows - done);
        const span = 90 * 86_400_000;
        await pool.query(insert(n, now - span + (span * done) / rows, (span * n) / rows));
        log(`  ${fmt(done + n)} rows`);
      }
      await pool.query(insert(hourRows, hourStart.getTime(), 3_599_000));
      await pool.query('analyze activities');
      const seedSeconds = (performance.now() - seeded) / 1000;

      // Filtered page: one user, one week, through the API.
      const target = '00000000-0000-4000-8000-00000000002a';
      const since = new Date(now - 14 * 86_400_000).toISOString();
      const untilWeek = new Date(now - 7 * 86_400_000).toISOString();
      const samples: number[] = [];
      let pageRows = 0;
      for (let i = 0; i < 300; i++) {
        const started = performance.now();
        const page = await must(
          on.baseUrl,
          'GET',
          `/api/v1/activities/?user=${target}&since=${since}&until=${untilWeek}&limit=50`,
          root,
        );
        samples.push(performance.now() - started);
        pageRows = page.results.length;
      }
      samples.sort((a, b) => a - b);
      const p = (q: number) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] as number;

      // Hourly aggregation of the 1,000,000-row hour.
      const aggStarted = performance.now();
      await aggregateHour(database.db, hourStart);
      const aggSeconds = (performance.now() - aggStarted) / 1000;

      // Streamed exports of the same hour, NDJSON then CSV: rows/s and the server's RSS growth.
      const range = `since=${hourStart.toISOString()}&until=${new Date(hourStart.getTime() + 3_600_000).toISOString()}`;
      const timeExport = async (format: 'ndjson' | 'csv') => {
        const rssBefore = on.memory().rssMiB;
        let rssPeak = rssBefore;
        const sampler = setInterval(() => {
          rssPeak = Math.max(rssPeak, on.memory().rssMiB);
        }, 25);
        const started = performance.now();
        const res = await fetch(`${on.baseUrl}/api/v1/activities/export?format=${format}&${range}`, {
          headers: { authorization: `Bearer ${root}` },
        });
        let lines = 0;
        const reader = (res.body as ReadableStream<Uint8Array>).getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          for (let at = value.indexOf(10); at !== -1; at = value.indexOf(10, at + 1)) lines++;
        }
        const seconds = (performance.now() - started) / 1000;
        clearInterval(sampler);
        // The CSV header is a line, not a row (no bench row holds a line break).
        const exported = format === 'csv' ? lines - 1 : lines;
        log(`export ${format}: ${fmt(exported)} rows in ${fmt(seconds, 2)} s`);
        return { rows: exported, perSecond: exported / seconds, rssMiB: rssPeak - rssBefore };
      };
      const ndjson = await timeExport('ndjson');
      const csv = await timeExport('csv');
      scale.push(
        '',
        `Scale (PostgreSQL): ${fmt(rows)} request rows over 90 days (1,000 users, 10 organizations) plus ${fmt(hourRows)} rows in one hour, seeded in ${fmt(seedSeconds)} s.`,
        '',
        '| measurement | result | target |',
        '|---|---:|---:|',
        `| filtered page (one user, one week, 50 rows; ${pageRows} returned), 300 sequential calls through the API | p50 ${fmt(p(0.5), 1)} ms, p99 ${fmt(p(0.99), 1)} ms | p99 < 30 ms |`,
        `| hourly aggregation of ${fmt(hourRows)} rows (\`aggregateHour\`) | ${fmt(aggSeconds, 2)} s | < 10 s |`,
        `| streamed NDJSON export of ${fmt(ndjson.rows)} rows | ${fmt(ndjson.perSecond)} rows/s, server RSS +${fmt(ndjson.rssMiB, 1)} MiB | ≥ 100,000 rows/s, < 64 MB |`,
        `| streamed CSV export of ${fmt(csv.rows)} rows | ${fmt(csv.perSecond)} rows/s, server RSS +${fmt(csv.rssMiB, 1)} MiB | |`,
      );
    } finally {
      await database.close();
    }
  }

  const mode = urls ? 'PostgreSQL' : 'PGlite';
  const lines = [
    `## Activity tracking (${mode})`,
    '',
    `- Command: \`npm run bench:activity${urls ? ` -- --pg --rows ${rows}` : ''}\``,
    `- Run: ${new Date().toISOString().replace(/\.\d+Z$/, 'Z')}; ${CONNECTIONS} connections, ${duration} s per round, ${rounds} rounds each (A B B A)`,
    `- Machine: ${machine()}`,
    '',
    ...trackingTable,
    `- CPU figures: ${urls ? "the bulk writes' cost in the PostgreSQL server is not included" : 'PGlite runs inside the server process, so they include the database'}.`,
    `- Request rows: ${fmt(served)} requests served with tracking on (warm-up included), ${fmt(written)} activity rows written, ${fmt(dropped)} dropped by a full buffer.`,
    `- Audit rows for acknowledged changes: ${fmt(acknowledged)} \`PATCH /api/v1/users/{id}\` answered 200 (${fmt(refused)} other answers) and ${fmt(audited)} \`user.updated\` events exist: **${fmt(acknowledged - audited)} lost**.`,
    ...(scale.length > 0 ? scale : ['', '- Scale figures are measured on PostgreSQL only (`--pg`, `--rows` > 0).']),
  ];
  const section = lines.join('\n');
  console.log(section);
  if (!args['no-write'])
    writeReport(join(ROOT, 'docs/benchmarks.md'), `activity-${urls ? 'postgres' : 'pglite'}` as never, section);
} finally {
  for (const server of servers.reverse()) await server.stop();
  cluster?.stop();
  rmSync(scratch, { recursive: true, force: true });
}
