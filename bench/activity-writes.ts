// `node --import tsx bench/activity-writes.ts [--batches 30] [--rounds 2]`: what one 1,000-row
// activity batch costs PostgreSQL (server backend CPU from /proc, wall time) and the Node process,
// for each way of writing it, in alternating rounds on a throwaway durable cluster: request rows
// through json_to_recordset, COPY text, with synchronous_commit off, into tables with fewer secondary
// indexes, and through the shipped ActivityBuffer; audit events through json_to_recordset, unnest of
// arrays, and the shipped recordAudits (COPY in the transaction). Prints a table; writes nothing.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { uuidv7 } from 'uuidv7';
import { startCluster } from '../scripts/pg-cluster.mjs';
import { ActivityBuffer } from '../src/modules/activity/activity-buffer.js';
import { ensureActivityPartitions } from '../src/modules/activity/activity-partitions.js';
import { type AuditEvent, recordAudits } from '../src/modules/activity/audit.js';
import { redactDetails } from '../src/modules/activity/redact.js';
import { ENV_KEY_ACTOR } from '../src/modules/api-keys/env-key.js';
import { openDatabase } from '../src/platform/db/client.js';
import { migrate } from '../src/platform/db/migrate.js';
import { cpuSeconds } from './lib/cpu.js';
import { createDatabase } from './lib/http.js';

const { values: args } = parseArgs({
  options: {
    batches: { type: 'string', default: '30' },
    rounds: { type: 'string', default: '2' },
    only: { type: 'string' },
  },
});
const BATCHES = Number(args.batches);
const ROUNDS = Number(args.rounds);
const ROWS = 1000;

/** CPU milliseconds a process has used so far. */
const ticks = (pid: number) => cpuSeconds(pid) * 1000;

const users = Array.from({ length: 50 }, () => uuidv7());
const orgs = [uuidv7(), uuidv7()];
const UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36';
function requestRows() {
  return Array.from({ length: ROWS }, (_, n) => ({
    t: Date.now() - 3.2,
    i: uuidv7(),
    a: 'user',
    o: orgs[n % 2] as string,
    u: users[n % 50] as string,
    k: null,
    p: '203.0.113.7',
    g: UA,
    m: 'GET',
    r: '/api/v1/users/:id',
    s: n % 50 === 0 ? 404 : 200,
    d: 1.2345 + n / 1000,
  }));
}
type Req = ReturnType<typeof requestRows>[number];

const jsonSql = `insert into activities (timestamp, id, kind, activity_type, category, severity, success, organization_id,
      user_id, actor_type, actor_id, api_key_id, description, ip_address, user_agent, method, path, status, duration_ms)
    select to_timestamp(r.t / 1000), r.i, 'request', 'api.request', 'api',
      case when r.s >= 500 then 'warning' else 'info' end, r.s < 400, r.o, r.u, r.a,
      case when r.a = 'user' then r.u end, r.k, r.m || ' ' || r.r, r.p, r.g, r.m, r.r, r.s, r.d
    from json_to_recordset($1::json) as r(t float8, i uuid, a text, o uuid, u uuid, k uuid,
      p text, g text, m text, r text, s smallint, d float8)`;

const esc = (v: string | null) =>
  v === null
    ? '\\N'
    : v.replace(/[\\\n\r\t]/g, (c) => (c === '\\' ? '\\\\' : c === '\n' ? '\\n' : c === '\r' ? '\\r' : '\\t'));
function copyText(rows: Req[], xid: boolean): string {
  let out = '';
  for (const r of rows) {
    out += `${new Date(r.t).toISOString()}\t${r.i}\trequest\tapi.request\tapi\t${r.s >= 500 ? 'warning' : 'info'}\t${r.s < 400 ? 't' : 'f'}\t${r.o ?? '\\N'}\t${r.u ?? '\\N'}\t${r.a}\t${r.a === 'user' ? r.u : '\\N'}\t${r.k ?? '\\N'}\t${esc(`${r.m} ${r.r}`)}\t${esc(r.p)}\t${esc(r.g)}\t${r.m}\t${esc(r.r)}\t${r.s}\t${r.d}${xid ? '\t0' : ''}\n`;
  }
  return out;
}
const COPY_COLS =
  'timestamp, id, kind, activity_type, category, severity, success, organization_id, user_id, actor_type, actor_id, api_key_id, description, ip_address, user_agent, method, path, status, duration_ms';

async function copy(client: pg.PoolClient | pg.Client, text: string, xid: boolean) {
  await pipeline(
    Readable.from([text]),
    client.query(copyFrom(`copy activities (${COPY_COLS}${xid ? ', xid' : ''}) from stdin`)),
  );
}

// audit
function auditRecords() {
  return Array.from({ length: ROWS }, (_, n) => ({
    id: uuidv7(),
    type: 'user.created',
    category: 'user_management',
    severity: 'info',
    success: true,
    organization_id: orgs[0],
    user_id: uuidv7(),
    actor_type: 'api_key',
    actor_id: null,
    api_key_id: null,
    object_type: null,
    object_id: null,
    description: 'Created by provisioning',
    details: { email: `user${n}@example.com`, external_id: `ext-${n}`, username: `user${n}`, via: 'env' },
    tags: ['provisioning', 'bulk'],
    ip_address: '203.0.113.7',
    user_agent: UA,
  }));
}
type Aud = ReturnType<typeof auditRecords>[number];
const auditJsonSql = `insert into activities (id, kind, activity_type, category, severity, success, organization_id, user_id,
        actor_type, actor_id, api_key_id, object_type, object_id, description, details, tags, ip_address, user_agent)
      select v.id, 'audit', v.type, v.category, v.severity, v.success, v.organization_id, v.user_id,
        v.actor_type, v.actor_id, v.api_key_id, v.object_type, v.object_id, v.description, v.details, v.tags,
        v.ip_address, v.user_agent
      from json_to_recordset($1::json) as v(id uuid, type text, category text, severity text,
        success boolean, organization_id uuid, user_id uuid, actor_type text, actor_id uuid, api_key_id uuid,
        object_type text, object_id text, description text, details jsonb, tags text[], ip_address text,
        user_agent text)`;
const auditUnnestSql = `insert into activities (id, kind, activity_type, category, severity, success, organization_id, user_id,
        actor_type, actor_id, api_key_id, object_type, object_id, description, details, tags, ip_address, user_agent)
      select v.id, 'audit', v.type, v.category, v.severity, v.success, v.organization_id, v.user_id,
        v.actor_type, v.actor_id, v.api_key_id, v.object_type, v.object_id, v.description, v.details, v.tags::text[],
        v.ip_address, v.user_agent
      from unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::bool[], $6::uuid[], $7::uuid[], $8::text[], $9::uuid[],
        $10::uuid[], $11::text[], $12::text[], $13::text[], $14::jsonb[], $15::text[], $16::text[], $17::text[])
        as v(id, type, category, severity, success, organization_id, user_id, actor_type, actor_id, api_key_id,
        object_type, object_id, description, details, tags, ip_address, user_agent)`;
function pgArrayLit(tags: string[]) {
  return `{${tags.map((t) => `"${t.replace(/["\\]/g, '\\$&')}"`).join(',')}}`;
}
function unnestParams(rs: Aud[]) {
  const cols: unknown[][] = Array.from({ length: 17 }, () => []);
  for (const r of rs) {
    const v = [
      r.id,
      r.type,
      r.category,
      r.severity,
      r.success,
      r.organization_id,
      r.user_id,
      r.actor_type,
      r.actor_id,
      r.api_key_id,
      r.object_type,
      r.object_id,
      r.description,
      JSON.stringify(r.details),
      pgArrayLit(r.tags),
      r.ip_address,
      r.user_agent,
    ];
    for (const [i, x] of v.entries()) cols[i]?.push(x);
  }
  return cols;
}

const cluster = await startCluster({ durable: true });
const url = await createDatabase(cluster.url, 'activity_writes');
const client = new pg.Client({ connectionString: url });
try {
  const mig = await openDatabase({ databaseUrl: url, poolSize: 2 });
  await migrate(mig.db);
  await ensureActivityPartitions(mig.db);
  await mig.close();
  await client.connect();
  const pid = Number((await client.query('select pg_backend_pid() as p')).rows[0].p);
  // The same table with fewer secondary indexes, each in its own database.
  const lean: Record<string, { c: pg.Client; pid: number }> = {};
  for (const [name, ddl] of Object.entries({
    'no org idx': 'drop index activities_org_idx',
    'org idx partial kind<>request':
      "drop index activities_org_idx; create index activities_org_idx on activities (organization_id, timestamp, id) where kind <> 'request'",
    'no user+org idx': 'drop index activities_org_idx; drop index activities_user_idx',
    'BRIN only':
      'drop index activities_org_idx; drop index activities_user_idx; create index activities_ts_brin on activities using brin (timestamp)',
  })) {
    const u = await createDatabase(cluster.url, `activity_writes_${Object.keys(lean).length}`);
    const m = await openDatabase({ databaseUrl: u, poolSize: 2 });
    await migrate(m.db);
    await ensureActivityPartitions(m.db);
    await m.close();
    const c = new pg.Client({ connectionString: u });
    await c.connect();
    await c.query(ddl);
    lean[name] = { c, pid: Number((await c.query('select pg_backend_pid() as p')).rows[0].p) };
  }
  let current = { c: client, pid };
  const variants: Record<string, () => Promise<void>> = {
    'request json_to_recordset': async () => {
      await client.query(jsonSql, [JSON.stringify(requestRows())]);
    },
    'request COPY text': async () => {
      await copy(client, copyText(requestRows(), false), false);
    },
    'request COPY text, sync_commit off': async () => {
      const text = copyText(requestRows(), false);
      await client.query('begin; set local synchronous_commit = off');
      await copy(client, text, false);
      await client.query('commit');
    },
    'request json, sync_commit off': async () => {
      const j = JSON.stringify(requestRows());
      await client.query('begin; set local synchronous_commit = off');
      await client.query(jsonSql, [j]);
      await client.query('commit');
    },
    'request COPY text, xid 0, sync off': async () => {
      const text = copyText(requestRows(), true);
      await client.query('begin; set local synchronous_commit = off');
      await copy(client, text, true);
      await client.query('commit');
    },
    'audit json_to_recordset (tx)': async () => {
      const j = JSON.stringify(auditRecords());
      await client.query('begin');
      await client.query(auditJsonSql, [j]);
      await client.query('commit');
    },
    'audit unnest arrays (tx)': async () => {
      const p = unnestParams(auditRecords());
      await client.query('begin');
      await client.query(auditUnnestSql, p);
      await client.query('commit');
    },
  };
  const copySyncOff = async (c: pg.Client) => {
    const text = copyText(requestRows(), false);
    await c.query('begin; set local synchronous_commit = off');
    await copy(c, text, false);
    await c.query('commit');
  };
  for (const [name, l] of Object.entries(lean)) variants[`request COPY sync off, ${name}`] = () => copySyncOff(l.c);
  const leanOf = (n: string) => {
    if (n.includes('shipped') || n.includes('before')) return lean.shipped as { c: pg.Client; pid: number };
    const hit = Object.entries(lean).find(([name]) => n.endsWith(`, ${name}`));
    return hit ? hit[1] : { c: client, pid };
  };
  // The shipped code paths, on a one-connection pool (so its server process is known).
  const shipped = await openDatabase({ databaseUrl: url, poolSize: 1 });
  const shippedPid = Number((await (shipped.pool as pg.Pool).query('select pg_backend_pid() as p')).rows[0].p);
  const buffer = new ActivityBuffer(shipped, {
    maxRows: 10_000,
    batchSize: 100_000,
    flushIntervalMs: 3_600_000,
    onError: (e) => {
      throw e;
    },
  });
  variants['request ActivityBuffer (shipped: COPY, sync off)'] = async () => {
    for (const r of requestRows())
      buffer.pushRequest({
        startedAt: r.t,
        id: r.i,
        actorType: 'user',
        organizationId: r.o,
        userId: r.u,
        apiKeyId: null,
        ipAddress: r.p,
        userAgent: r.g,
        method: r.m,
        route: r.r,
        status: r.s,
        durationMs: r.d,
      });
    await buffer.flush();
  };
  const events = (): AuditEvent[] =>
    Array.from({ length: ROWS }, (_, n) => ({
      type: 'user.created',
      category: 'user_management',
      organizationId: orgs[0] as string,
      userId: uuidv7(),
      actor: ENV_KEY_ACTOR,
      description: 'Created by provisioning',
      details: { email: `user${n}@example.com`, external_id: `ext-${n}`, username: `user${n}` },
      tags: ['provisioning', 'bulk'],
      ip: '203.0.113.7',
      userAgent: UA,
    }));
  variants['audit recordAudits before (json_to_recordset, tx)'] = async () => {
    const records = events().map((e) => ({
      id: uuidv7(),
      type: e.type,
      category: e.category,
      severity: 'info',
      success: true,
      organization_id: e.organizationId,
      user_id: e.userId,
      actor_type: 'api_key',
      actor_id: null,
      api_key_id: null,
      object_type: null,
      object_id: null,
      description: e.description,
      details: { ...redactDetails(e.details), via: 'env:PROVISIONING_API_KEY' },
      tags: e.tags,
      ip_address: e.ip,
      user_agent: e.userAgent,
    }));
    await shipped.pool?.query('begin');
    await shipped.pool?.query(auditJsonSql, [JSON.stringify(records)]);
    await shipped.pool?.query('commit');
  };
  variants['audit recordAudits after (shipped: COPY, tx)'] = async () => {
    const batch = events();
    await shipped.db.transaction((tx) => recordAudits(tx, batch));
  };
  lean.shipped = { c: client, pid: shippedPid };
  const names = Object.keys(variants).filter((n) => !args.only || n.includes(args.only));
  const results: Record<string, { wall: number; pgCpu: number; nodeCpu: number; n: number }> = {};
  // warm-up
  for (const n of names) for (let i = 0; i < 3; i++) await variants[n]?.();
  for (let round = 0; round < ROUNDS; round++) {
    const order = round % 2 === 0 ? names : [...names].reverse();
    for (const n of order) {
      results[n] ??= { wall: 0, pgCpu: 0, nodeCpu: 0, n: 0 };
      const r = results[n];
      current = leanOf(n);
      const t0 = performance.now();
      const c0 = ticks(current.pid);
      const u0 = process.cpuUsage();
      for (let i = 0; i < BATCHES; i++) await variants[n]?.();
      const u = process.cpuUsage(u0);
      r.wall += performance.now() - t0;
      r.pgCpu += ticks(current.pid) - c0;
      r.nodeCpu += (u.user + u.system) / 1000;
      r.n += BATCHES;
    }
  }
  console.log('| variant (1,000 rows a batch) | wall ms/batch | PostgreSQL CPU ms/batch | Node CPU ms/batch |');
  console.log('|---|---:|---:|---:|');
  for (const n of names) {
    const r = results[n]!;
    console.log(
      `| ${n} | ${(r.wall / r.n).toFixed(2)} | ${(r.pgCpu / r.n).toFixed(2)} | ${(r.nodeCpu / r.n).toFixed(2)} |`,
    );
  }
  await shipped.close();
  for (const l of Object.values(lean)) if (l.c !== client) await l.c.end();
} finally {
  await client.end().catch(() => {});
  cluster.stop();
}
