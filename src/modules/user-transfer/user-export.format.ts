import { parse } from 'csv-parse/sync';
import type { ExportRow } from './user-export.queries.js';

/**
 * An exported user: seed 003's fields first (`id, username, email, first_name, last_name,
 * is_active, date_joined`), then what Gatehouse adds. A user without a username shows the email,
 * as seed 003's importers key users by username.
 */
export function toExportUser(row: ExportRow) {
  return {
    id: row.id,
    username: row.username ?? row.email,
    email: row.email,
    first_name: row.firstName,
    last_name: row.lastName,
    is_active: row.status === 'active',
    date_joined: row.dateJoined.toISOString(),
    status: row.status,
    user_type: row.userType,
    organization: row.organizationCode,
    organization_id: row.organizationId,
    external_id: row.externalId,
    scim_external_id: row.scimExternalId,
    last_login: row.lastLogin?.toISOString() ?? null,
    attributes: row.attributes,
  };
}

export type ExportUser = ReturnType<typeof toExportUser>;

const CSV_COLUMNS: (keyof ExportUser)[] = [
  'id',
  'username',
  'email',
  'first_name',
  'last_name',
  'is_active',
  'date_joined',
  'status',
  'user_type',
  'organization',
  'organization_id',
  'external_id',
  'scim_external_id',
  'last_login',
  'attributes',
];

export const CSV_HEADER = `${CSV_COLUMNS.join(',')}\r\n`;

/**
 * Text a spreadsheet would run as a formula, which the export defuses with a leading apostrophe;
 * text that starts with an apostrophe gets one too, so that reading it back removes exactly one.
 */
const NEEDS_APOSTROPHE = /^[=+\-@\t\r']/;
/** A field the export gave a leading apostrophe. */
const DEFUSED = /^'[=+\-@\t\r']/;

/**
 * One RFC 4180 field. Text is always quoted, and text a spreadsheet would run as a formula
 * (leading = + - @ tab or CR) gets a leading apostrophe: names and attributes come from users.
 * Null is the one unquoted empty field, so an empty text and a missing value stay apart.
 */
function csvField(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'boolean' || typeof value === 'number') return String(value);
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  const defused = NEEDS_APOSTROPHE.test(text) ? `'${text}` : text;
  return `"${defused.replaceAll('"', '""')}"`;
}

export function toCsvLine(user: ExportUser): string {
  return `${CSV_COLUMNS.map((column) => csvField(user[column])).join(',')}\r\n`;
}

/** A CSV header naming a column twice, of which only the last would be read. */
export class ColumnTwice extends Error {
  constructor(readonly column: string) {
    super(`The first line names the column "${column}" twice.`);
  }
}

function namesOnce(header: string[]): string[] {
  const seen = new Set<string>();
  for (const column of header) {
    if (seen.has(column)) throw new ColumnTwice(column);
    seen.add(column);
  }
  return header;
}

/**
 * The users of a CSV export (a header row naming the columns, then one user per row), as the
 * importer takes them: an unquoted empty field is null, `is_active` a boolean, `attributes` the
 * object its JSON names, and a formula the export defused gets its apostrophe back off. A value
 * that does not read as its column's type is passed on as text, for the importer to refuse that
 * entry alone. Throws `Error` naming the line when the CSV itself is broken, `ColumnTwice` for a
 * header naming a column twice (the last one would silently win).
 */
export function usersOfCsv(text: string): Record<string, unknown>[] {
  return parse(text, {
    bom: true,
    columns: namesOnce,
    skip_empty_lines: true,
    cast: (value, context) => {
      if (context.header) return value;
      if (value === '' && !context.quoting) return null;
      const field = DEFUSED.test(value) ? value.slice(1) : value;
      if (context.column === 'is_active' && (field === 'true' || field === 'false')) return field === 'true';
      if (context.column === 'attributes') {
        try {
          return JSON.parse(field) as unknown;
        } catch {
          return field;
        }
      }
      return field;
    },
  }) as Record<string, unknown>[];
}
