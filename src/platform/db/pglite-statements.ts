import type { PGlite, QueryOptions, Results, Transaction } from '@electric-sql/pglite';
import { serialize } from 'pg-protocol';

/**
 * Named prepared statements for Drizzle on PGlite.
 *
 * `PGlite.query` parses and plans its SQL on every call, in six protocol exchanges, and its planner
 * runs in WebAssembly (on the database's thread, `pglite-thread.ts`): the user-by-id join behind
 * every authenticated call took ~400 µs that way against ~40 µs executed from a named statement as
 * one Bind/Execute/Sync message. A SQL text seen a second time is prepared under a name (Parse + Describe once, its
 * parameter types and row description kept); later calls send only its values. One-off texts (bulk
 * statements whose text changes with the number of rows) stay on `query`. PostgreSQL is not concerned:
 * node-postgres sends its named statements itself.
 *
 * Statement lifetime follows the session's: PGlite is one session, and a prepared statement survives
 * a rolled-back transaction. A schema change that alters a statement's result row makes PostgreSQL
 * refuse it (0A000); the statement is then dropped and the call goes through `query`.
 */

type Field = { name: string; dataTypeID: number };
type Parsers = Record<number | string, (value: string, typeId?: number) => unknown>;

interface Statement {
  name: string;
  paramTypes: number[];
  fields: Field[];
}

interface Message {
  name: string;
  dataTypeIDs?: number[];
  fields?: Field[] | (string | null)[];
  text?: string;
}

/** Statements kept, least recently used first out. */
const MAX_STATEMENTS = 500;
/** Texts remembered as seen once; the set starts over when full. */
const MAX_SEEN = 1000;

/** What Drizzle's PGlite driver calls on its client (the database or an open transaction). */
interface QueryTarget {
  query<T>(sql: string, params?: unknown[], options?: QueryOptions): Promise<Results<T>>;
}

class StatementCache {
  private readonly statements = new Map<string, Statement>();
  private readonly seen = new Set<string>();
  private readonly merged = new WeakMap<object, Parsers>();
  private next = 0;

  constructor(private readonly pglite: PGlite) {}

  /** Runs `sql` through a named statement when it is one worth keeping, else through `target.query`. */
  async query<T>(
    target: QueryTarget,
    inTransaction: boolean,
    sql: string,
    params: unknown[] = [],
    options?: QueryOptions,
  ): Promise<Results<T>> {
    if (options?.blob !== undefined || options?.paramTypes !== undefined) return target.query<T>(sql, params, options);
    let statement = this.statements.get(sql);
    if (statement === undefined) {
      if (!this.seen.has(sql)) {
        if (this.seen.size >= MAX_SEEN) this.seen.clear();
        this.seen.add(sql);
        return target.query<T>(sql, params, options);
      }
      this.seen.delete(sql);
      statement = await this.exclusive(inTransaction, () => this.prepare(sql));
      if (statement === undefined) return target.query<T>(sql, params, options);
    } else {
      // Least recently used first: a hit moves to the end.
      this.statements.delete(sql);
      this.statements.set(sql, statement);
    }
    const named = statement;
    try {
      return await this.exclusive(inTransaction, () => this.execute<T>(named, params, options, !inTransaction));
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code !== '0A000' && code !== '26000') {
        Object.assign(err as object, { query: sql, params, queryOptions: options });
        throw err;
      }
      await this.exclusive(inTransaction, () => this.forget(sql));
      return target.query<T>(sql, params, options);
    }
  }

  /** PGlite's parsers with a caller's on top, merged once per caller's object (Drizzle reuses one). */
  private parsersWith(own: NonNullable<QueryOptions['parsers']>): Parsers {
    let parsers = this.merged.get(own);
    if (parsers === undefined) {
      parsers = { ...this.pglite.parsers, ...own } as Parsers;
      this.merged.set(own, parsers);
    }
    return parsers;
  }

  /** PGlite's own locking: a root call waits for any transaction, every call for the current query. */
  private exclusive<T>(inTransaction: boolean, run: () => Promise<T>): Promise<T> {
    if (inTransaction) return this.pglite._runExclusiveQuery(run);
    return this.pglite._runExclusiveTransaction(() => this.pglite._runExclusiveQuery(run));
  }

  private async prepare(sql: string): Promise<Statement | undefined> {
    const name = `gh_${this.next++}`;
    let messages: Message[];
    try {
      ({ messages } = (await this.pglite.execProtocol(
        Buffer.concat([
          serialize.parse({ name, text: sql, types: [] }),
          serialize.describe({ type: 'S', name }),
          serialize.sync(),
        ]),
        { syncToFs: false },
      )) as { messages: Message[] });
    } catch {
      // `query` reports the error in its usual form.
      return undefined;
    }
    let paramTypes: number[] = [];
    let fields: Field[] = [];
    for (const message of messages) {
      if (message.name === 'parameterDescription') paramTypes = message.dataTypeIDs ?? [];
      else if (message.name === 'rowDescription') {
        fields = (message.fields as Field[]).map((f) => ({ name: f.name, dataTypeID: f.dataTypeID }));
      }
    }
    const statement = { name, paramTypes, fields };
    this.statements.set(sql, statement);
    if (this.statements.size > MAX_STATEMENTS) await this.forget(this.statements.keys().next().value as string);
    return statement;
  }

  /** Drops a statement here and in the session (inside the caller's exclusive section). */
  private async forget(sql: string): Promise<void> {
    const statement = this.statements.get(sql);
    if (statement === undefined) return;
    this.statements.delete(sql);
    try {
      await this.pglite.execProtocol(
        Buffer.concat([serialize.close({ type: 'S', name: statement.name }), serialize.sync()]),
        {
          syncToFs: false,
        },
      );
    } catch {
      // In an aborted transaction; the statement stays prepared under its unused name.
    }
  }

  private async execute<T>(
    statement: Statement,
    params: unknown[],
    options: QueryOptions | undefined,
    syncToFs: boolean,
  ): Promise<Results<T>> {
    const { serializers } = this.pglite;
    const values = params.map((param, i) => {
      if (param === null || param === undefined) return null;
      const oid = statement.paramTypes[i] as number;
      const serializer = options?.serializers?.[oid] ?? serializers[oid];
      return serializer ? serializer(param) : String(param);
    });
    const { messages } = (await this.pglite.execProtocol(
      Buffer.concat([serialize.bind({ statement: statement.name, values }), serialize.execute({}), serialize.sync()]),
      { syncToFs },
    )) as { messages: Message[] };
    return resultOf<T>(
      statement.fields,
      messages,
      options?.parsers ? this.parsersWith(options.parsers) : this.pglite.parsers,
      options?.rowMode === 'array',
    );
  }
}

/** The rows and counts of one executed statement, shaped as `PGlite.query` answers them. */
function resultOf<T>(fields: Field[], messages: Message[], parsers: Parsers, arrays: boolean): Results<T> {
  const parserOf = fields.map((f) => parsers[f.dataTypeID]);
  const rows: unknown[] = [];
  let affectedRows = 0;
  let rowCount: number | undefined;
  let command: string | undefined;
  for (const message of messages) {
    if (message.name === 'dataRow') {
      const values = message.fields as (string | null)[];
      if (arrays) {
        const row = new Array(values.length);
        for (let i = 0; i < values.length; i++) row[i] = parsed(values[i] ?? null, fields[i] as Field, parserOf[i]);
        rows.push(row);
      } else {
        const row: Record<string, unknown> = {};
        for (let i = 0; i < values.length; i++) {
          const field = fields[i] as Field;
          row[field.name] = parsed(values[i] ?? null, field, parserOf[i]);
        }
        rows.push(row);
      }
    } else if (message.name === 'commandComplete') {
      // "SELECT 2", "UPDATE 3", "INSERT 0 5": the count is the last word when there is one.
      const parts = (message.text ?? '').split(' ');
      command = parts[0];
      const count = Number.parseInt(parts[parts.length - 1] as string, 10);
      if (!Number.isNaN(count)) rowCount = count;
      if (['INSERT', 'UPDATE', 'DELETE', 'COPY', 'MERGE'].includes(command as string)) affectedRows += count;
    }
  }
  return {
    rows: rows as T[],
    fields,
    affectedRows,
    ...(command !== undefined ? { command } : {}),
    ...(rowCount !== undefined ? { rowCount } : {}),
  } as Results<T>;
}

function parsed(
  value: string | null,
  field: Field,
  parser: ((value: string, typeId?: number) => unknown) | undefined,
): unknown {
  if (value === null) return null;
  return parser ? parser(value, field.dataTypeID) : value;
}

/**
 * The client Drizzle's PGlite driver is given. Drizzle calls two methods on it: `query`, here through
 * the statement cache, and `transaction`, whose callback gets a transaction that queries through it
 * too. A plain object rather than a proxy of PGlite: PGlite's methods read private fields, which only
 * work on PGlite itself.
 */
export function withPreparedStatements(pglite: PGlite): PGlite {
  const cache = new StatementCache(pglite);
  const client = {
    query: <T>(sql: string, params?: unknown[], options?: QueryOptions) =>
      cache.query<T>(pglite, false, sql, params, options),
    transaction: <T>(callback: (tx: Transaction) => Promise<T>) =>
      pglite.transaction((tx) => {
        const wrapped = {
          query: <R>(sql: string, params?: unknown[], options?: QueryOptions) =>
            cache.query<R>(tx, true, sql, params, options),
          sql: tx.sql.bind(tx),
          exec: tx.exec.bind(tx),
          rollback: tx.rollback.bind(tx),
          listen: tx.listen.bind(tx),
          get closed() {
            return tx.closed;
          },
        };
        return callback(wrapped as Transaction);
      }),
  };
  return client as unknown as PGlite;
}
