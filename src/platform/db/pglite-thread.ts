import { type MessagePort, parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { PGlite, type QueryOptions, type Results, type Transaction } from '@electric-sql/pglite';
import type { ThreadReply, ThreadRequest } from './pglite-remote.js';
import { withPreparedStatements } from './pglite-statements.js';

/**
 * The embedded database's own thread: PGlite (PostgreSQL compiled to WebAssembly) runs here, so its
 * parsing, planning, index maintenance and COPYs never hold the server's event loop. Requests arrive
 * as messages (`pglite-remote.ts` sends them) and are started as they come; PGlite's own locks order
 * them exactly as they would in one thread: a root query waits for an open transaction, a
 * transaction's queries run one at a time.
 */

const port = parentPort;
if (port === null) throw new Error('pglite-thread runs as a worker thread');

const { dataDir, statementPort, signal } = workerData as {
  dataDir: string | undefined;
  /** Where a transaction's statements arrive, their caller waiting on `signal`. */
  statementPort: MessagePort;
  signal: Int32Array;
};
const pglite = await PGlite.create(dataDir);
const client = withPreparedStatements(pglite);

/** Open transactions by id: their handle, and how to end them. */
const transactions = new Map<number, { tx: Transaction; end(commit: boolean): void; outcome: Promise<unknown> }>();
/** Thrown inside PGlite's transaction callback to make it roll back. */
const ROLLBACK = Symbol('rollback');

function reply(message: ThreadReply): void {
  (port as NonNullable<typeof port>).postMessage(message);
}

/** Answers a waiting caller: the reply is queued on its port before it is woken. */
function replyWaiting(message: ThreadReply): void {
  statementPort.postMessage(message);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
}

/** An error as plain data: its message and every scalar field PGlite sets (code, constraint, detail…). */
function plainError(err: unknown): Record<string, unknown> {
  const fields: Record<string, unknown> = { message: String((err as Error)?.message ?? err) };
  if (typeof err === 'object' && err !== null) {
    for (const [key, value] of Object.entries(err)) {
      if (value === null || ['string', 'number', 'boolean'].includes(typeof value)) fields[key] = value;
    }
    if (Array.isArray((err as { params?: unknown }).params)) fields.params = (err as { params: unknown[] }).params;
  }
  return fields;
}

/** Parsers that keep the text of the types the caller parses itself, by type list (Drizzle sends one). */
const rawParsers = new Map<string, QueryOptions['parsers']>();

/** Types whose raw text the caller asked for (it parses them itself: its parsers are functions). */
function queryOptions(request: { rowMode?: 'array' | 'object'; rawTypes?: number[] }): QueryOptions {
  const options: QueryOptions = {};
  if (request.rowMode !== undefined) options.rowMode = request.rowMode;
  if (request.rawTypes !== undefined) {
    const key = request.rawTypes.join(',');
    let parsers = rawParsers.get(key);
    if (parsers === undefined) {
      parsers = Object.fromEntries(request.rawTypes.map((oid) => [oid, (value: string) => value]));
      rawParsers.set(key, parsers);
    }
    options.parsers = parsers;
  }
  return options;
}

/** The root: queries through the statement cache, `exec` as PGlite's own. */
const root: Pick<Transaction, 'query' | 'exec'> = { query: client.query.bind(client), exec: pglite.exec.bind(pglite) };

/** The root, or an open transaction. */
function target(tx: number | undefined): Pick<Transaction, 'query' | 'exec'> {
  if (tx === undefined) return root;
  const open = transactions.get(tx);
  if (open === undefined) throw new Error(`transaction ${tx} is not open`);
  return open.tx;
}

/** Opens transaction `id`: BEGIN, under PGlite's transaction lock, which it holds until its end. */
async function begin(id: number): Promise<void> {
  let began: (tx: Transaction) => void = () => {};
  const started = new Promise<Transaction>((resolve) => {
    began = resolve;
  });
  let end: (commit: boolean) => void = () => {};
  const decided = new Promise<boolean>((resolve) => {
    end = resolve;
  });
  const outcome = client.transaction(async (tx) => {
    began(tx);
    if (!(await decided)) throw ROLLBACK;
  });
  // BEGIN itself may fail before the callback runs: the caller hears that instead.
  const tx = await Promise.race([started, outcome.then(() => undefined)]);
  if (tx === undefined) throw new Error('transaction ended before it began');
  transactions.set(id, { tx, end, outcome });
}

async function handle(request: ThreadRequest, answer: (message: ThreadReply) => void): Promise<void> {
  const { id } = request;
  try {
    switch (request.op) {
      case 'query': {
        if (request.begin) await begin(request.tx as number);
        const options = queryOptions(request);
        if (request.blob !== undefined) options.blob = new Blob([request.blob]);
        const result: Results = await target(request.tx).query(request.sql, request.params, options);
        answer({ id, ok: true, result });
        return;
      }
      case 'exec':
        if (request.begin) await begin(request.tx as number);
        answer({ id, ok: true, result: await target(request.tx).exec(request.sql) });
        return;
      case 'end': {
        const open = transactions.get(request.tx);
        if (open === undefined) throw new Error(`transaction ${request.tx} is not open`);
        open.end(request.commit);
        try {
          await open.outcome;
        } catch (err) {
          if (err !== ROLLBACK) throw err;
        } finally {
          transactions.delete(request.tx);
        }
        answer({ id, ok: true, result: null });
        return;
      }
      case 'close':
        await pglite.close();
        answer({ id, ok: true, result: null });
        port?.close();
        statementPort.close();
        return;
    }
  } catch (err) {
    answer({ id, ok: false, error: plainError(err) });
  }
}

/** Requests started and not yet answered. */
let inFlight = 0;
const SPIN_MS = 0.3;

async function serve(request: ThreadRequest, answer: (message: ThreadReply) => void): Promise<void> {
  inFlight++;
  try {
    await handle(request, answer);
  } finally {
    inFlight--;
  }
  if (inFlight === 0) pollBriefly();
}

/**
 * With nothing else to do, looks for the next request for a moment before going back to sleep: a
 * transaction's next statement usually follows within a fraction of a millisecond, and being woken
 * for it costs more than the look.
 */
function pollBriefly(): void {
  const until = performance.now() + SPIN_MS;
  do {
    const statement = receiveMessageOnPort(statementPort);
    if (statement !== undefined) return void serve(statement.message, replyWaiting);
    const root = receiveMessageOnPort(port as MessagePort);
    if (root !== undefined) return void serve(root.message, reply);
  } while (performance.now() < until);
}

port.on('message', (request: ThreadRequest) => void serve(request, reply));
statementPort.on('message', (request: ThreadRequest) => void serve(request, replyWaiting));
// A caller waiting on the signal when this thread dies is woken to find it gone.
process.on('exit', () => {
  Atomics.store(signal, 1, 1);
  Atomics.notify(signal, 0);
});
reply({ id: 0, ok: true, result: 'ready' });
