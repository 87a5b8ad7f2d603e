import { readdirSync, readFileSync } from 'node:fs';

/** CPU seconds (user + system, from /proc) a process has used so far; NaN once it is gone. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return Number.NaN;
  }
}

/** CPU seconds so far of every PostgreSQL process on this machine (backends, writers, autovacuum), by pid. */
function postgresSeconds(): Map<number, number> {
  const out = new Map<number, number>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').startsWith('postgres')) continue;
    } catch {
      continue;
    }
    const seconds = cpuSeconds(Number(entry));
    if (!Number.isNaN(seconds)) out.set(Number(entry), seconds);
  }
  return out;
}

/**
 * Starts counting the CPU time of the server, of PostgreSQL (all its processes: the work a write
 * causes is spread over backends, the WAL writer and autovacuum) and of this process (the load
 * generator). The returned function answers the seconds each used since. A PostgreSQL process that
 * ends meanwhile is not counted.
 */
export function cpuMeter(serverPid: number): () => { server: number; postgres: number; generator: number } {
  const server = cpuSeconds(serverPid);
  const generator = process.cpuUsage();
  const postgres = postgresSeconds();
  return () => {
    let postgresUsed = 0;
    for (const [pid, seconds] of postgresSeconds()) postgresUsed += seconds - (postgres.get(pid) ?? 0);
    const used = process.cpuUsage(generator);
    return {
      server: cpuSeconds(serverPid) - server,
      postgres: postgresUsed,
      generator: (used.user + used.system) / 1e6,
    };
  };
}

/**
 * "server 26.3 µs, PostgreSQL 40.5 µs, load generator 4.7 µs" per item; without PostgreSQL when the
 * database runs inside the server (PGlite).
 */
export function cpuPerItem(
  used: { server: number; postgres: number; generator: number },
  items: number,
  postgres: boolean,
): string {
  const µs = (seconds: number) => `${((seconds / items) * 1e6).toFixed(1)} µs`;
  const database = postgres ? `, PostgreSQL ${µs(used.postgres)}` : ' (with the embedded database)';
  return `server ${µs(used.server)}${database}, load generator ${µs(used.generator)}`;
}
