import { Type } from '@fastify/type-provider-typebox';
import type { FastifyInstance } from 'fastify';
import { isUuid } from '../db/columns.js';
import { AppError } from './errors.js';
import { unstorableTextField } from './text-guard.js';

/** The largest page a list answers. */
export const MAX_PAGE_SIZE = 500;

/** `?limit=&cursor=` as every list takes them (contract §5). */
export const PageQuery = {
  limit: Type.Optional(
    Type.Integer({
      minimum: 1,
      default: 50,
      description: `Page size; above ${MAX_PAGE_SIZE} it is read as ${MAX_PAGE_SIZE}.`,
    }),
  ),
  cursor: Type.Optional(Type.String({ maxLength: 512, description: 'The `next` value of the previous page.' })),
};

/**
 * A `limit` above the largest page is read as the largest page (as Django REST Framework's
 * `max_limit` does): the client gets a page and a cursor to the rest, not a refusal. After
 * validation, so the value is already a number; one place for every list.
 */
export function installPageSizeCap(app: FastifyInstance): void {
  app.addHook('preHandler', (request, _reply, done) => {
    const query = request.query as { limit?: unknown } | undefined;
    if (typeof query?.limit === 'number' && query.limit > MAX_PAGE_SIZE) query.limit = MAX_PAGE_SIZE;
    done();
  });
}

/** The list envelope: results and the opaque cursor of the next page, or null on the last one. */
export const Page = <T extends import('@sinclair/typebox').TSchema>(item: T) =>
  Type.Object({ results: Type.Array(item), next: Type.Union([Type.String(), Type.Null()]) });

/**
 * Cursors carry the sort key of the last row seen, so a page is found by an index seek and stays
 * correct while rows are inserted ahead of or behind it. They are opaque to clients.
 */
export function encodeCursor(values: unknown[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

export function decodeCursor(cursor: string, arity: number): unknown[] {
  try {
    const values = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    // A hand-made cursor may hold text the database cannot compare (NUL, half a surrogate pair).
    if (Array.isArray(values) && values.length === arity && unstorableTextField(values) === undefined) return values;
  } catch {
    // fall through to the refusal
  }
  throw invalidCursor();
}

/** The refusal for a cursor that was not produced by this list. */
export function invalidCursor(): AppError {
  return new AppError(400, 'invalid_cursor', 'The cursor is not valid for this list.', {
    errors: [{ field: 'cursor', message: 'Pass back the `next` value of a previous page unchanged.' }],
  });
}

/** Cuts a `limit + 1` fetch into the page and the next cursor. */
export function toPage<T>(
  rows: T[],
  limit: number,
  keyOf: (row: T) => unknown[],
): { results: T[]; next: string | null } {
  if (rows.length <= limit) return { results: rows, next: null };
  const results = rows.slice(0, limit);
  return { results, next: encodeCursor(keyOf(results[results.length - 1] as T)) };
}

/** The id a cursor of an id-ordered list carries (the last row of the previous page). */
export function cursorId(cursor: string): string {
  const [lastId] = decodeCursor(cursor, 1);
  if (typeof lastId !== 'string' || !isUuid(lastId)) throw invalidCursor();
  return lastId;
}
