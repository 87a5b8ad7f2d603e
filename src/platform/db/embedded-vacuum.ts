import type { FastifyBaseLogger } from 'fastify';
import type { EmbeddedDatabase } from './pglite-remote.js';

/**
 * Vacuum and statistics for the embedded database. PGlite runs PostgreSQL as a single backend with
 * no autovacuum: without this, dead row versions (refresh-token rotation, job rows, user updates)
 * and index entries pile up for ever, and the planner never gets statistics (a table never
 * analyzed is planned from its size alone; a `userName eq` filter was once answered by scanning an
 * organization's users through the wrong index). Its activity counters stay at zero, so every table
 * is visited in turn instead of the ones that changed.
 *
 * One statement per table, never one for the whole database: each holds the database's only
 * session while it runs, and other queries get it between tables. A table whose pages are all
 * visible is vacuumed from its visibility map in milliseconds; the first pass over a large table
 * reads it whole (1,000,000 users: ~0.3 s). `VACUUM (ANALYZE)` of every table at 1,000,000 users takes
 * ~0.6 s in all.
 */

/** Tables (partitions included) and partitioned parents of the product's schemas. */
const TABLES = `
  select format('%I.%I', n.nspname, c.relname) as name, c.relkind = 'p' as partitioned
  from pg_class c join pg_namespace n on n.oid = c.relnamespace
  where c.relkind in ('r', 'p') and n.nspname not in ('pg_catalog', 'information_schema')
    and n.nspname not like 'pg_toast%' and n.nspname not like 'pg_temp%'
  order by n.nspname, c.relname`;

/**
 * One pass: `VACUUM (ANALYZE)` of each table, `ANALYZE` of each partitioned parent (its own
 * statistics over all partitions; vacuum reaches partitions one by one). Stops between tables when
 * `shouldStop` says so.
 */
export async function vacuumEmbedded(
  database: Pick<EmbeddedDatabase, 'query' | 'exec'>,
  shouldStop: () => boolean = () => false,
): Promise<{ tables: number }> {
  const { rows } = await database.query<{ name: string; partitioned: boolean }>(TABLES);
  let tables = 0;
  for (const { name, partitioned } of rows) {
    if (shouldStop()) break;
    await database.exec(partitioned ? `analyze ${name}` : `vacuum (analyze) ${name}`);
    tables++;
  }
  return { tables };
}

export interface EmbeddedVacuumOptions {
  /** Before the first pass: a server that restarts often still gets one. */
  firstAfterMs?: number;
  intervalMs?: number;
}

/** Runs `vacuumEmbedded` shortly after start and then every interval, until stopped. */
export function startEmbeddedVacuum(
  database: Pick<EmbeddedDatabase, 'query' | 'exec'>,
  log: Pick<FastifyBaseLogger, 'debug' | 'warn'>,
  options: EmbeddedVacuumOptions = {},
): { stop(): Promise<void> } {
  let stopped = false;
  let running: Promise<void> | undefined;
  const pass = () => {
    if (running || stopped) return;
    const started = Date.now();
    running = vacuumEmbedded(database, () => stopped)
      .then(({ tables }) => log.debug({ tables, ms: Date.now() - started }, 'embedded database vacuumed'))
      .catch((err: unknown) =>
        log.warn({ error: err instanceof Error ? err.message : String(err) }, 'embedded database vacuum failed'),
      )
      .finally(() => {
        running = undefined;
      });
  };
  let interval: NodeJS.Timeout | undefined;
  const first = setTimeout(
    () => {
      pass();
      interval = setInterval(pass, options.intervalMs ?? 3_600_000);
      interval.unref();
    },
    options.firstAfterMs ?? 5 * 60_000,
  );
  first.unref();
  return {
    async stop() {
      stopped = true;
      clearTimeout(first);
      clearInterval(interval);
      await running;
    },
  };
}
