import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, freemem, loadavg, release, totalmem } from 'node:os';
import type { LimitKey } from '../scenario.js';
import type { LoadResult } from './load.js';

export interface Limit {
  key: LimitKey;
  label: string;
  value: number;
  unit: string;
  how: string;
}

export interface ScenarioOutcome {
  name: string;
  description: string;
  limit: LimitKey;
  connections: number;
  result?: LoadResult;
  note?: string;
  skipped?: string;
}

export interface Report {
  mode: 'postgres' | 'pglite';
  command: string;
  databaseVersion: string;
  date: string;
  durationSeconds: number;
  logLevel: string;
  limits: Limit[];
  scenarios: ScenarioOutcome[];
  memory: { idleMiB: number; peakMiB: number; afterLoadMiB: number; users: number };
  seeding?: { users: number; seconds: number; rowsPerSecond: number };
  stopExitCode: number | null;
}

const n0 = (v: number) => Math.round(v).toLocaleString('en-US');
const n1 = (v: number) => v.toLocaleString('en-US', { maximumFractionDigits: 1, minimumFractionDigits: 1 });
// autocannon records latency in whole milliseconds.
const ms = (v: number) => (v < 1 ? '<1' : String(Math.round(v)));

export function machine(): string {
  const cpu = cpus()[0]?.model.trim() ?? 'unknown CPU';
  return `${cpus().length} cores (\`nproc\` = ${cpus().length}, ${cpu}), ${(totalmem() / 2 ** 30).toFixed(1)} GiB memory (${(freemem() / 2 ** 30).toFixed(1)} GiB free at start), Linux ${release()}, Node ${process.version}; load average ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' / ')} at start`;
}

function share(outcome: ScenarioOutcome, limits: Limit[], key: LimitKey = outcome.limit): string {
  const limit = limits.find((l) => l.key === key);
  if (!outcome.result || !limit) return 'n/a';
  const pct = (outcome.result.okPerSecond / limit.value) * 100;
  return `${pct < 0.1 ? pct.toFixed(2) : pct.toFixed(1)} % of ${limit.label}`;
}

export function renderReport(r: Report, machineLine: string): string {
  const lines: string[] = [];
  const title = r.mode === 'postgres' ? 'PostgreSQL' : 'PGlite (embedded)';
  lines.push(`## ${title}`, '');
  lines.push(`- Command: \`${r.command}\``);
  lines.push(
    `- Run: ${r.date}; ${r.durationSeconds} s per scenario on 127.0.0.1; server with \`RATE_LIMITS=off\`, \`LOG_LEVEL=${r.logLevel}\` (logs to a file)`,
  );
  lines.push(`- Machine: ${machineLine}`);
  lines.push(`- Database: ${r.databaseVersion}`);
  lines.push('- The load generator (autocannon, one Node thread) shares the 2 cores with the server and the database.');
  lines.push('');
  lines.push('### Physical limits, measured in the same run', '');
  lines.push('| limit | measured | how |', '|---|---:|---|');
  for (const l of r.limits) lines.push(`| ${l.label} | ${n0(l.value)} ${l.unit} | ${l.how} |`);
  lines.push('');
  lines.push('### Scenarios', '');
  lines.push(
    '| scenario | request | 2xx req/s | p50 ms | p99 ms | non-2xx / errors | share of its limit | share of the HTTP ceiling | notes |',
  );
  lines.push('|---|---|---:|---:|---:|---:|---|---|---|');
  for (const s of r.scenarios) {
    if (s.skipped || !s.result) continue;
    const res = s.result;
    lines.push(
      `| ${s.name} | ${s.description} | ${n0(res.okPerSecond)} | ${ms(res.p50Ms)} | ${ms(res.p99Ms)} | ${n0(res.non2xx)} / ${n0(res.errors)} | ${share(s, r.limits)} | ${s.limit === 'http' ? '(same)' : share(s, r.limits, 'http')} | ${s.connections} connections${s.note ? `; ${s.note}` : ''} |`,
    );
  }
  const skipped = r.scenarios.filter((s) => s.skipped);
  if (skipped.length > 0) {
    lines.push('', 'Not run:', '');
    for (const s of skipped) lines.push(`- **${s.name}** — ${s.skipped}`);
  }
  lines.push('', '### Memory and data', '');
  lines.push(
    `- Server process RSS: ${n1(r.memory.idleMiB)} MiB idle after start${r.memory.users > 0 ? ` (${n0(r.memory.users)} seeded users)` : ''}, ${n1(r.memory.afterLoadMiB)} MiB after the scenarios, peak ${n1(r.memory.peakMiB)} MiB.`,
  );
  if (r.seeding) {
    const copy = r.limits.find((l) => l.key === 'pg-write' && l.unit === 'rows/s');
    lines.push(
      `- Seeding: ${n0(r.seeding.users)} users in ${n1(r.seeding.seconds)} s = ${n0(r.seeding.rowsPerSecond)} rows/s (set-based INSERT … SELECT generate_series, batches of 50,000, all indexes in place)${copy ? `, ${((r.seeding.rowsPerSecond / copy.value) * 100).toFixed(0)} % of the raw COPY ceiling` : ''}.`,
    );
  }
  lines.push(`- The server exited with code ${r.stopExitCode} on SIGTERM after the run.`);
  return lines.join('\n');
}

const HEADER = `# Benchmarks

Bounded load runs of the real server process (\`node dist/main.js\`, as \`npm start\` runs it) on
loopback, made with \`npm run bench\` (bench/run.ts). Every figure stands next to the physical limit it is
bounded by, measured in the same run on the same machine: a bare Fastify route for HTTP, \`pgbench\` for
database reads and write transactions, a raw \`COPY\` for bulk writes, and argon2id verifications for
password logins. Each run replaces the section of its database mode. See bench/README.md to run or add a
scenario.
`;

/** Replaces this mode's section of docs/benchmarks.md, keeping the other mode's. */
export function writeReport(file: string, mode: Report['mode'], section: string): void {
  const start = `<!-- bench:${mode} -->`;
  const end = `<!-- /bench:${mode} -->`;
  const block = `${start}\n${section}\n${end}`;
  let doc = existsSync(file) ? readFileSync(file, 'utf8') : `${HEADER}\n`;
  const from = doc.indexOf(start);
  const to = doc.indexOf(end);
  if (from !== -1 && to !== -1) doc = `${doc.slice(0, from)}${block}${doc.slice(to + end.length)}`;
  else if (mode === 'postgres' && doc.includes('<!-- bench:pglite -->')) {
    doc = doc.replace('<!-- bench:pglite -->', `${block}\n\n<!-- bench:pglite -->`);
  } else doc = `${doc.trimEnd()}\n\n${block}\n`;
  writeFileSync(file, doc);
}
