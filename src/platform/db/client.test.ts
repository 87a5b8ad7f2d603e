import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DrizzleQueryError } from 'drizzle-orm';
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { freePort } from '../../../scripts/pg-cluster.mjs';
import { DatabaseUnreachableError, openDatabase, unreachableDatabaseReason } from './client.js';

/** An error as node-postgres raises it: a server's carries its SQLSTATE, a socket's its errno code. */
function driverError(message: string, code?: string): Error {
  return Object.assign(new Error(message), code === undefined ? {} : { code });
}

/** What a failed query throws: Drizzle's wrapper with the driver's error as its cause. */
function failedQuery(cause: unknown): Error {
  return new DrizzleQueryError('select 1', [], cause as Error);
}

/** The error of a real connection attempt to a port where nothing listens. */
async function refusedOn(port: number): Promise<unknown> {
  const client = new pg.Client({ host: '127.0.0.1', port, user: 'x', database: 'x' });
  return client.connect().then(
    () => undefined,
    (err: unknown) => err,
  );
}

describe('unreachableDatabaseReason', () => {
  it.each([
    ['a refused connection', driverError('connect ECONNREFUSED 127.0.0.1:5432', 'ECONNREFUSED')],
    ['a reset connection', driverError('read ECONNRESET', 'ECONNRESET')],
    ['a connection ended under a query', new Error('Connection terminated unexpectedly')],
    ['a pool that could not connect in time', new Error('timeout exceeded when trying to connect')],
    ['a connect timeout', new Error('Connection terminated due to connection timeout')],
    ['an administrator shutdown', driverError('terminating connection due to administrator command', '57P01')],
    ['a server starting or stopping', driverError('the database system is shutting down', '57P03')],
    ['a connection exception', driverError('connection failure', '08006')],
    [
      'a refusal on every address of a name',
      new AggregateError([driverError('connect ECONNREFUSED ::1:5432', 'ECONNREFUSED')]),
    ],
  ])('recognises %s under a failed query', (_what, err) => {
    expect(unreachableDatabaseReason(failedQuery(err))).toEqual(expect.any(String));
  });

  it.each([
    ['a unique violation', driverError('duplicate key value', '23505')],
    ['a missing table', driverError('relation "x" does not exist', '42P01')],
    ['a statement timeout', driverError('canceling statement due to statement timeout', '57014')],
    ['any other error', new Error('boom')],
    ['a value that is not an error', 'boom'],
  ])('leaves %s to be what it is', (_what, err) => {
    expect(unreachableDatabaseReason(failedQuery(err))).toBeUndefined();
  });

  it("takes a bare socket error for the database's only when it names a database server's port", async () => {
    const databasePort = await freePort();
    await expect(openDatabase({ databaseUrl: `postgres://x@127.0.0.1:${databasePort}/x` })).rejects.toThrow(
      DatabaseUnreachableError,
    );
    // A transaction's own connection fails outside any query wrapper.
    expect(unreachableDatabaseReason(await refusedOn(databasePort))).toMatch(/^ECONNREFUSED/);
    // The same refusal from another service (a mail server, an integration) is no database outage.
    expect(unreachableDatabaseReason(await refusedOn(await freePort()))).toBeUndefined();
  });

  it('gives up on a server that accepts connections and never answers, as unreachable', async () => {
    // A host that went silent: the TCP connection opens, the startup message gets no answer.
    const held: Socket[] = [];
    const silent = createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const { port } = silent.address() as { port: number };
    try {
      const started = Date.now();
      const err = await openDatabase({
        databaseUrl: `postgres://x:secret@127.0.0.1:${port}/x`,
        connectTimeoutMs: 300,
      }).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(DatabaseUnreachableError);
      expect((err as Error).message).not.toContain('secret');
      expect(unreachableDatabaseReason((err as Error).cause)).toEqual(expect.any(String));
      expect(Date.now() - started).toBeLessThan(5_000);
    } finally {
      for (const socket of held) socket.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

describe('the embedded database folder', () => {
  it('is readable by its owner alone, new or made wider by an earlier version', async () => {
    const root = mkdtempSync(join(tmpdir(), 'gatehouse-pgdata-'));
    try {
      for (const earlier of [false, true]) {
        const dataDir = join(root, String(earlier));
        mkdirSync(dataDir);
        if (earlier) {
          mkdirSync(join(dataDir, 'pgdata'));
          chmodSync(join(dataDir, 'pgdata'), 0o777);
        }
        const database = await openDatabase({ dataDir });
        await database.close();
        expect(statSync(join(dataDir, 'pgdata')).mode & 0o777, `earlier folder: ${earlier}`).toBe(0o700);
      }
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  }, 60_000);
});
