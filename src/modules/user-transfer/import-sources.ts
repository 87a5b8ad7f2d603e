import { isUtf8 } from 'node:buffer';
import { readFile } from 'node:fs/promises';
import { AppError } from '../../platform/http/errors.js';
import { withoutSecrets } from '../../platform/secret-text.js';
import { ColumnTwice, usersOfCsv } from './user-export.format.js';

/**
 * Where `gatehouse import` reads users from: a file an export wrote, or a running system's
 * seed-003 export endpoint, signed in the way seed 003's importer does (a browser-session login,
 * then `GET /api/admin/export-users/` with its cookie), or with a Bearer token.
 */

const refused = (detail: string) => new AppError(400, 'import_source', detail);

/**
 * The users of an export's JSON answer, a JSON array, NDJSON (one user per line), or a CSV export
 * (anything that does not start as JSON does: its first line names the columns).
 */
export function usersOfDocument(document: string, name: string): unknown[] {
  // A byte order mark, as editors on Windows write it, is no part of the JSON or the first column.
  const text = document.startsWith('\uFEFF') ? document.slice(1) : document;
  if (!/^\s*[[{]/.test(text)) {
    let users: Record<string, unknown>[];
    try {
      users = usersOfCsv(text);
    } catch (err) {
      if (err instanceof ColumnTwice) throw refused(`${name}: the first line names the column "${err.column}" twice.`);
      throw refused(`${name}: not JSON, NDJSON or CSV (${(err as Error).message}).`);
    }
    if (users.length > 0 && !('email' in (users[0] as object))) {
      throw refused(`${name}: a CSV export's first line names its columns, and one of them is email.`);
    }
    return users;
  }
  let whole: unknown;
  try {
    whole = JSON.parse(text);
  } catch {
    // Not one JSON document: NDJSON, one user per line.
    return text.split('\n').flatMap((line, i) => {
      if (line.trim() === '') return [];
      try {
        return [JSON.parse(line) as unknown];
      } catch {
        throw refused(`${name}, line ${i + 1}: not JSON (give an export's JSON answer, a JSON array or NDJSON).`);
      }
    });
  }
  if (Array.isArray(whole)) return whole;
  const users = (whole as { users?: unknown } | null)?.users;
  if (Array.isArray(users)) return users;
  // NDJSON of one user is one JSON document: a user, not a list.
  if (typeof whole === 'object' && whole !== null && 'email' in whole) return [whole];
  throw refused(`${name}: a JSON document must be an array of users or an object with a "users" array.`);
}

/**
 * The users of an export file. A file must be UTF-8, as every export writes it: read leniently, a
 * spreadsheet's Windows-1252 "Jürgen" was stored as "J\uFFFDrgen", and the API refuses those bytes.
 */
export async function usersOfFile(path: string): Promise<unknown[]> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    throw refused(`cannot read ${path}: ${(err as Error).message}`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw refused(`${path}, line ${firstLineNotUtf8(bytes)}: holds bytes that are not UTF-8 (save the file as UTF-8).`);
  }
  return usersOfDocument(text, path);
}

/** The number of the first line holding bytes that are not UTF-8; a line feed is never part of a UTF-8 sequence. */
function firstLineNotUtf8(bytes: Buffer): number {
  let line = 1;
  for (let start = 0; start <= bytes.length; line++) {
    const end = bytes.indexOf(0x0a, start);
    const stop = end === -1 ? bytes.length : end;
    if (!isUtf8(bytes.subarray(start, stop))) return line;
    if (end === -1) break;
    start = end + 1;
  }
  return line;
}

export interface RemoteSource {
  /** The system's base URL, e.g. https://watchtower.example.com */
  url: string;
  username?: string;
  password?: string;
  token?: string;
  /** Only this organization of a source that holds several (this product's `organization=`). */
  organization?: string;
}

const LOGIN_TIMEOUT_MS = 30_000;
const EXPORT_TIMEOUT_MS = 10 * 60_000;

/** A call to the source; a network failure or timeout is a refusal naming what failed. */
async function call(url: URL, init: RequestInit, what: string): Promise<Response> {
  try {
    return await fetch(url, init);
  } catch (err) {
    const { cause } = err as { cause?: { code?: string; message?: string } };
    const reason = cause?.code ?? cause?.message ?? (err as Error).message;
    throw refused(`${what} failed: ${reason}.`);
  }
}

/**
 * An answer's text. What is taken from an answer must be UTF-8, as JSON is (RFC 8259 §8.1) and as a
 * file must be: read leniently, a source's Windows-1252 "Jürgen" was imported as "J\uFFFDrgen".
 * A refusal is only quoted, so its bytes may be replaced.
 */
async function textOf(response: Response, what: string): Promise<string> {
  const bytes = await response.arrayBuffer();
  if (!response.ok) return new TextDecoder().decode(bytes);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    // The origin and path name the source; an origin never holds a user name or password.
    const { origin, pathname } = new URL(response.url);
    throw refused(`${what} (${origin}${pathname}) answered bytes that are not UTF-8.`);
  }
}

async function answerOf(response: Response, what: string): Promise<unknown> {
  const text = await textOf(response, what);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  if (!response.ok) {
    const error =
      (body as { error?: unknown; detail?: unknown } | undefined)?.error ?? (body as { detail?: unknown })?.detail;
    throw refused(`${what} answered ${response.status}${typeof error === 'string' ? `: ${error}` : ''}.`);
  }
  if (body === undefined) throw refused(`${what} did not answer JSON.`);
  return body;
}

/** The `name=value` pairs of a login answer's cookies, as a Cookie header sends them back. */
function cookieHeaderOf(response: Response): string {
  return response.headers
    .getSetCookie()
    .map((cookie) => cookie.split(';')[0]?.trim())
    .filter((pair): pair is string => Boolean(pair?.includes('=')))
    .join('; ');
}

/**
 * The users of a running system's export. A refusal quotes the source's answer, and a source may
 * echo what it was sent (the login body, the Authorization header): the password and the token are
 * cut from it before it is shown.
 */
export async function usersOfRemoteExport(source: RemoteSource): Promise<unknown[]> {
  try {
    return await readRemoteExport(source);
  } catch (err) {
    if (!(err instanceof AppError)) throw err;
    const secrets = [source.password ?? '', source.token ?? ''];
    throw refused(withoutSecrets(err.message, secrets));
  }
}

async function readRemoteExport(source: RemoteSource): Promise<unknown[]> {
  let base: URL;
  try {
    base = new URL(source.url.endsWith('/') ? source.url : `${source.url}/`);
  } catch {
    // Not quoted: what does not parse may still hold a password.
    throw refused('The source is not a URL.');
  }
  if (base.protocol !== 'http:' && base.protocol !== 'https:') throw refused('The source must be an http(s) URL.');
  // A password in the URL would show in the process list and in every refusal that quotes the URL
  // (fetch refuses such a URL, repeating it): the source's account comes from the options instead.
  if (base.username !== '' || base.password !== '') {
    throw refused(
      'The source URL must not hold a user name or password: give --username and --password-env, or --token-env.',
    );
  }
  const headers: Record<string, string> = { accept: 'application/json' };
  if (source.token) headers.authorization = `Bearer ${source.token}`;
  else {
    if (!source.username || source.password === undefined) {
      throw refused('Give the source a username and password, or a token.');
    }
    const login = await call(
      new URL('api/login/', base),
      {
        method: 'POST',
        headers: { 'content-type': 'application/json', accept: 'application/json' },
        body: JSON.stringify({ username: source.username, password: source.password }),
        signal: AbortSignal.timeout(LOGIN_TIMEOUT_MS),
      },
      'The source’s login',
    );
    await answerOf(login, 'The source’s login');
    const cookie = cookieHeaderOf(login);
    if (!cookie) throw refused('The source’s login set no session cookie.');
    headers.cookie = cookie;
  }
  // Every status, so suspended, locked and deactivated users arrive as such (this product's
  // `include_inactive`; seed 003's export has no such parameter and ignores it).
  const exportUrl = new URL('api/admin/export-users/', base);
  exportUrl.searchParams.set('include_inactive', 'true');
  if (source.organization !== undefined) exportUrl.searchParams.set('organization', source.organization);
  const exported = await call(
    exportUrl,
    { headers, signal: AbortSignal.timeout(EXPORT_TIMEOUT_MS) },
    'The source’s export',
  );
  const body = await answerOf(exported, 'The source’s export');
  const users = (body as { users?: unknown }).users;
  if (!Array.isArray(users)) throw refused('The source’s export has no "users" array.');
  return users;
}
