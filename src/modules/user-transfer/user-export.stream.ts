import type { DbOrTx } from '../../platform/db/client.js';
import { CSV_HEADER, toCsvLine, toExportUser } from './user-export.format.js';
import { type ExportFilter, type ExportRow, exportChunk } from './user-export.queries.js';

export type ExportFormat = 'json' | 'csv' | 'ndjson';

export const EXPORT_CONTENT_TYPES: Record<ExportFormat, string> = {
  json: 'application/json; charset=utf-8',
  csv: 'text/csv; charset=utf-8',
  ndjson: 'application/x-ndjson',
};

const CHUNK_ROWS = 1000;

/**
 * The export's rows in keyset chunks; the next chunk is read while this one is sent, so at most two
 * are held whatever the size of the export. A client gone mid-stream leaves a prefetch nobody
 * awaits: its failure is not unhandled.
 */
async function* exportRows(db: DbOrTx, filter: ExportFilter): AsyncGenerator<ExportRow[]> {
  const fetchAfter = (afterId: string | undefined) => {
    const chunk = exportChunk(db, filter, CHUNK_ROWS, afterId);
    chunk.catch(() => undefined);
    return chunk;
  };
  let next = fetchAfter(undefined);
  for (;;) {
    const rows = await next;
    const last = rows.length === CHUNK_ROWS ? rows[rows.length - 1] : undefined;
    if (last) next = fetchAfter(last.id);
    if (rows.length > 0) yield rows;
    if (!last) return;
  }
}

/** Seed 003's JSON answer, streamed: `count` and `message` follow the users, once they are counted. */
async function* jsonDocument(rows: AsyncGenerator<ExportRow[]>): AsyncGenerator<string> {
  yield '{"success":true,"users":[';
  let count = 0;
  for await (const chunk of rows) {
    let text = '';
    for (const row of chunk) text += (count++ === 0 ? '' : ',') + JSON.stringify(toExportUser(row));
    yield text;
  }
  yield `],"count":${count},"message":${JSON.stringify(`Successfully exported ${count} users`)}}`;
}

async function* lineDocument(rows: AsyncGenerator<ExportRow[]>, csv: boolean): AsyncGenerator<string> {
  if (csv) yield CSV_HEADER;
  for await (const chunk of rows) {
    let text = '';
    for (const row of chunk) text += csv ? toCsvLine(toExportUser(row)) : `${JSON.stringify(toExportUser(row))}\n`;
    yield text;
  }
}

/** The whole export in one format, as texts to write in order (the HTTP answer or a file). */
export function exportDocument(db: DbOrTx, filter: ExportFilter, format: ExportFormat): AsyncGenerator<string> {
  const rows = exportRows(db, filter);
  return format === 'json' ? jsonDocument(rows) : lineDocument(rows, format === 'csv');
}
