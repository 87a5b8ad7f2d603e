import type pg from 'pg';

/**
 * Drops a scratch database (tests, benchmarks). `WITH (FORCE)` ends the sessions still connected,
 * but a role without superuser rights may not end an autovacuum worker, and one may be busy in a
 * database that was just filled: that refusal (42501) is retried until the worker is done.
 */
export async function dropDatabase(client: pg.Client, name: string): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await client.query(`drop database if exists ${name} with (force)`);
      return;
    } catch (err) {
      if ((err as { code?: string }).code !== '42501' || attempt >= 40) throw err;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
}
