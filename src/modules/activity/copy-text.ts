import type pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';

// COPY's text format (PostgreSQL docs, "COPY", File Formats): one line a row, tab-separated,
// `\N` for null, backslash escapes for backslash, tab, carriage return and line feed.
const SPECIAL = /[\\\n\r\t\0]/;
const SPECIAL_ALL = /[\\\n\r\t\0]/g;
// NUL cannot be stored in a text column at all: it is dropped rather than failing the batch.
const ESCAPES: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\0': '' };

/** A value as a COPY text field. */
export function copyText(value: string | null): string {
  if (value === null) return '\\N';
  return SPECIAL.test(value) ? value.replace(SPECIAL_ALL, (c) => ESCAPES[c] as string) : value;
}

/** Runs `copy <target> from stdin` with `data` as its input (text, or binary), on one node-postgres connection. */
export async function copyIn(
  client: pg.ClientBase,
  target: string,
  data: string | Buffer,
  format: 'text' | 'binary' = 'text',
): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const stream = client.query(copyFrom(`copy ${target} from stdin${format === 'binary' ? ' (format binary)' : ''}`));
    stream.on('finish', resolve);
    stream.on('error', reject);
    stream.end(data);
  });
}
