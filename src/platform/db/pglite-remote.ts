import { MessageChannel, type MessagePort, receiveMessageOnPort, Worker } from 'node:worker_threads';
import { type QueryOptions, type Results, types } from '@electric-sql/pglite';

/**
 * The server's side of the embedded database's thread (`pglite-thread.ts`). PGlite runs PostgreSQL
 * in WebAssembly, and in the server's own thread every statement's parse, plan and execution held
 * the event loop: a 500-row activity COPY for ~7 ms, a user look-up for ~40 µs of every
 * authenticated call. On its own thread that work runs beside the HTTP handling, on the machine's
 * other core. What crosses is plain data: SQL, parameters, rows, errors as their fields.
 *
 * `EmbeddedDatabase` offers what the product asks of PGlite (Drizzle's driver, pg-boss, COPY from a
 * blob): `query`, `exec`, `transaction` and `close`, shaped as PGlite's own.
 */

export type ThreadRequest =
  | {
      id: number;
      op: 'query';
      tx?: number;
      sql: string;
      params: unknown[];
      /** The transaction's first statement: BEGIN comes first, in the same crossing. */
      begin?: true;
      rowMode?: 'array' | 'object';
      rawTypes?: number[];
      blob?: ArrayBuffer;
    }
  | { id: number; op: 'exec'; tx?: number; begin?: true; sql: string }
  | { id: number; op: 'end'; tx: number; commit: boolean }
  | { id: number; op: 'close' };

export type ThreadReply =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: Record<string, unknown> };

type Parser = (value: string, typeId?: number) => unknown;

/** A transaction on the server's side: its id, whether its BEGIN has been sent, its last statement. */
interface OpenTransaction {
  id: number;
  begun: boolean;
  /** Settles when the statement sent last has been answered: the next one is sent after it. */
  last: Promise<unknown>;
}

const SPIN_MS = 0.5;

/** The calls a transaction's callback may make: the same as on the database, inside the transaction. */
export interface EmbeddedQueries {
  query<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>>;
  exec(sql: string): Promise<Results[]>;
}

export interface EmbeddedDatabase extends EmbeddedQueries {
  transaction<T>(callback: (tx: EmbeddedQueries) => Promise<T>): Promise<T>;
  close(): Promise<void>;
  /** Settles with why, if the database thread stops without `close`; every call fails from then on. */
  readonly lost: Promise<Error>;
}

/** An error raised in the database thread, rebuilt with its fields (`code`, `constraint`, `detail`…). */
function rebuilt(fields: Record<string, unknown>): Error {
  const { message, ...rest } = fields;
  return Object.assign(new Error(String(message)), rest);
}

/**
 * json and jsonb cross the thread as text and are parsed on this side, as PGlite would have parsed
 * them. A value parsed in the thread crosses as a structured clone, which Node cannot rebuild beyond
 * some two thousand levels of nesting: it drops that message without a word, and its caller waited
 * forever (a transaction's statement with the event loop held). Older versions stored `attributes`
 * that deep; text crosses at any depth, and JSON.parse reads it without recursing.
 */
const JSON_PARSERS: Record<number, Parser> = {
  [types.JSON]: (value) => JSON.parse(value),
  [types.JSONB]: (value) => JSON.parse(value),
};

/** Applies the caller's parsers to the columns the thread left as text. */
function parsedLocally<T>(result: Results<T>, parsers: Record<number, Parser>, arrays: boolean): Results<T> {
  const columns: [number, string, Parser][] = [];
  result.fields.forEach((field, i) => {
    const parser = parsers[field.dataTypeID];
    if (parser !== undefined) columns.push([i, field.name, parser]);
  });
  if (columns.length === 0) return result;
  for (const row of result.rows as unknown as Record<string | number, unknown>[]) {
    for (const [i, name, parser] of columns) {
      const key = arrays ? i : name;
      const value = row[key];
      if (typeof value === 'string') row[key] = parser(value, result.fields[i]?.dataTypeID);
    }
  }
  return result;
}

/**
 * How the worker is started: the compiled module, or the TypeScript source through tsx (tests). It
 * gets the statement port and the signal its waiting callers sleep on.
 */
function startWorker(dataDir: string | undefined, statementPort: MessagePort, signal: Int32Array): Worker {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = new URL(fromSource ? './pglite-thread.ts' : './pglite-thread.js', import.meta.url);
  const options = { workerData: { dataDir, statementPort, signal }, transferList: [statementPort] };
  if (!fromSource) return new Worker(entry, options);
  // Node 20 does not apply `--import` loaders to a worker's entry module: register tsx first.
  const tsx = import.meta.resolve('tsx/esm/api');
  const boot = `import(${JSON.stringify(tsx)}).then(({ register }) => { register(); return import(${JSON.stringify(entry.href)}); })`;
  return new Worker(boot, { ...options, eval: true });
}

/**
 * Root calls are messages answered asynchronously: the event loop serves other requests meanwhile.
 * A transaction's statements are sent on their own port and waited for (`Atomics.wait`), which holds
 * the event loop for one statement as an in-thread PGlite did. Asynchronous answers would let other
 * work queue ahead of each one while the transaction holds the database's only session: SCIM
 * writes, several statements each, ran 25 % slower that way.
 */
class ThreadClient implements EmbeddedDatabase {
  private readonly pending = new Map<number, { resolve(value: unknown): void; reject(err: Error): void }>();
  private next = 1;
  private failure: Error | undefined;
  /** Transactions whose BEGIN has been sent and whose end has not. */
  private openTransactions = 0;
  private closing = false;
  private reportLoss: (err: Error) => void = () => {};
  readonly lost = new Promise<Error>((resolve) => {
    this.reportLoss = resolve;
  });

  constructor(
    private readonly worker: Worker,
    private readonly statementPort: MessagePort,
    /** [0]: an answer is on `statementPort`; [1]: the thread is gone. */
    private readonly signal: Int32Array,
  ) {
    worker.on('message', (message: ThreadReply) => this.settle(message));
    worker.on('error', (err) => this.fail(err));
    worker.on('exit', (code) => this.fail(new Error(`the embedded database thread exited (code ${code})`)));
    // The thread keeps the process alive only while an answer is awaited, as an in-thread PGlite would.
    worker.unref();
  }

  /** Resolves once the thread has opened the database (or rejects with why it could not). */
  ready(): Promise<unknown> {
    return this.await(0);
  }

  private settle(message: ThreadReply): void {
    const waiting = this.pending.get(message.id);
    if (waiting === undefined) return;
    this.pending.delete(message.id);
    if (this.pending.size === 0) this.worker.unref();
    if (message.ok) waiting.resolve(message.result);
    else waiting.reject(rebuilt(message.error));
  }

  private fail(err: Error): void {
    if (this.failure === undefined && !this.closing) this.reportLoss(err);
    this.failure ??= err;
    for (const waiting of this.pending.values()) waiting.reject(err);
    this.pending.clear();
  }

  private await(id: number): Promise<unknown> {
    if (this.failure !== undefined) return Promise.reject(this.failure);
    if (this.pending.size === 0) this.worker.ref();
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  private send(request: ThreadRequest, transfer?: ArrayBuffer[]): Promise<unknown> {
    const answer = this.await(request.id);
    if (this.failure === undefined) this.worker.postMessage(request, transfer);
    return answer;
  }

  /** Sends a transaction's statement and waits, the event loop held, for its answer. */
  private sendWaiting(request: ThreadRequest, transfer?: ArrayBuffer[]): unknown {
    if (this.failure !== undefined) throw this.failure;
    Atomics.store(this.signal, 0, 0);
    this.statementPort.postMessage(request, transfer);
    // Most statements are answered within a fraction of a millisecond: polling that long costs less
    // than being woken from Atomics.wait (~35 µs of CPU a wake-up on a virtual machine).
    const spinUntil = performance.now() + SPIN_MS;
    while (Atomics.load(this.signal, 0) === 0 && performance.now() < spinUntil);
    for (;;) {
      const received = receiveMessageOnPort(this.statementPort);
      if (received !== undefined) {
        const reply = received.message as ThreadReply;
        if (!reply.ok) throw rebuilt(reply.error);
        return reply.result;
      }
      if (Atomics.load(this.signal, 1) === 1) {
        this.fail(new Error('the embedded database thread exited'));
        throw this.failure;
      }
      Atomics.wait(this.signal, 0, 0, 1000);
      Atomics.store(this.signal, 0, 0);
    }
  }

  async runQuery<T>(tx: OpenTransaction | undefined, sql: string, params: unknown[] = [], options?: QueryOptions) {
    const request: ThreadRequest = { id: this.next++, op: 'query', sql, params };
    if (options?.rowMode !== undefined) request.rowMode = options.rowMode;
    if (options?.serializers !== undefined) throw new Error('custom serializers do not cross to the database thread');
    // The caller's own parser for a JSON type wins over ours.
    const parsers = { ...JSON_PARSERS, ...(options?.parsers as Record<number, Parser> | undefined) };
    request.rawTypes = Object.keys(parsers).map(Number);
    let transfer: ArrayBuffer[] | undefined;
    if (options?.blob !== undefined) {
      request.blob = await options.blob.arrayBuffer();
      transfer = [request.blob];
    }
    const result = (await this.dispatch(tx, request, transfer)) as Results<T>;
    return parsedLocally(result, parsers, options?.rowMode === 'array');
  }

  async runExec(tx: OpenTransaction | undefined, sql: string): Promise<Results[]> {
    return (await this.dispatch(tx, { id: this.next++, op: 'exec', sql })) as Results[];
  }

  /**
   * Sends a root call asynchronously, and a transaction's statements waited for. A transaction's
   * first statement carries its BEGIN. It is waited for only when no other transaction of this
   * thread is open: then whatever holds the database finishes without this thread's help. Answered
   * asynchronously, the transaction would hold the database's only session while other work queued
   * ahead of its next statement (SCIM writes ran 25 % slower). When one is open, it may be waiting on
   * this event loop (an `await` inside its callback), and a BEGIN waited for would wait for it forever.
   */
  private dispatch(
    tx: OpenTransaction | undefined,
    request: ThreadRequest & { op: 'query' | 'exec' },
    transfer?: ArrayBuffer[],
  ): Promise<unknown> {
    if (tx === undefined) return this.send(request, transfer);
    // One statement of a transaction at a time, even under Promise.all: a first one sent as a root
    // call (BEGIN answered asynchronously) must have begun the transaction before the next is sent.
    const answer = tx.last.then(() => {
      request.tx = tx.id;
      if (tx.begun) return this.sendWaiting(request, transfer);
      request.begin = true;
      tx.begun = true;
      const waited = this.openTransactions === 0;
      this.openTransactions++;
      return waited ? this.sendWaiting(request, transfer) : this.send(request, transfer);
    });
    tx.last = answer.catch(() => {});
    return answer;
  }

  query<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>> {
    return this.runQuery<T>(undefined, sql, params, options);
  }

  exec(sql: string): Promise<Results[]> {
    return this.runExec(undefined, sql);
  }

  async transaction<T>(callback: (tx: EmbeddedQueries) => Promise<T>): Promise<T> {
    const tx: OpenTransaction = { id: this.next++, begun: false, last: Promise.resolve() };
    const queries: EmbeddedQueries = {
      query: (sql, params, options) => this.runQuery(tx, sql, params, options),
      exec: (sql) => this.runExec(tx, sql),
    };
    transactionClients.add(queries);
    let commit = false;
    let result: T;
    try {
      result = await callback(queries);
      commit = true;
    } finally {
      // A transaction that ran no statement never began. Once sent, the end needs nothing more from
      // this thread: the transaction no longer counts as open. A statement still under way (the
      // callback failed beside it) is answered first.
      await tx.last;
      if (tx.begun) {
        const ended = this.send({ id: this.next++, op: 'end', tx: tx.id, commit });
        this.openTransactions--;
        if (commit) await ended;
        else await ended.catch(() => {});
      }
    }
    return result;
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.failure === undefined) await this.send({ id: this.next++, op: 'close' });
    await this.worker.terminate();
    this.statementPort.close();
  }
}

const transactionClients = new WeakSet<object>();

/** Opens PGlite in its own thread (`dataDir` undefined: in memory) and waits until it is ready. */
export async function openEmbeddedDatabase(dataDir: string | undefined): Promise<EmbeddedDatabase> {
  const { port1, port2 } = new MessageChannel();
  const signal = new Int32Array(new SharedArrayBuffer(8));
  const client = new ThreadClient(startWorker(dataDir, port2, signal), port1, signal);
  try {
    await client.ready();
  } catch (err) {
    await client.close().catch(() => {});
    throw err;
  }
  return client;
}

/** `candidate` if it is the embedded database or one of its transactions (what Drizzle holds). */
export function asEmbeddedQueries(candidate: unknown): EmbeddedQueries | undefined {
  if (candidate instanceof ThreadClient) return candidate;
  return typeof candidate === 'object' && candidate !== null && transactionClients.has(candidate)
    ? (candidate as EmbeddedQueries)
    : undefined;
}
