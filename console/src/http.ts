import { HttpError } from 'react-admin';

/** RFC 9457 problem details as the API renders them. */
export interface Problem {
  status?: number;
  code?: string;
  detail?: string;
  title?: string;
  errors?: { field?: string; message: string }[];
}

const UNSAFE_METHODS = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * The CSRF token is read from the readable `gatehouse_csrf` cookie at each call rather than kept in
 * storage: it survives a page reload that way, and nothing sensitive is ever written to localStorage.
 */
export function csrfToken(): string | undefined {
  const entry = document.cookie.split('; ').find((part) => part.startsWith('gatehouse_csrf='));
  return entry ? decodeURIComponent(entry.slice('gatehouse_csrf='.length)) : undefined;
}

let beforeCall: (() => Promise<void>) | undefined;

/**
 * Sets what runs before each call: the auth provider checks there that the session cookie, shared by
 * every tab, still belongs to the user this page shows, so no request goes out as someone else.
 */
export function checkBeforeEachCall(check: () => Promise<void>): void {
  beforeCall = check;
}

/**
 * Calls the API with the session cookie; a problem+json answer becomes an HttpError whose body is the
 * problem (the data provider turns the field errors of a refused save into the form's errors).
 * `unchecked` skips the check above (for the reads that check itself makes).
 */
export async function api<T = unknown>(
  path: string,
  init: { method?: string; body?: unknown; unchecked?: boolean } = {},
): Promise<T> {
  if (!init.unchecked) await beforeCall?.();
  const method = init.method ?? 'GET';
  const headers: Record<string, string> = { accept: 'application/json' };
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const token = UNSAFE_METHODS.has(method) ? csrfToken() : undefined;
  if (token) headers['x-csrf-token'] = token;
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    body: init.body === undefined ? undefined : JSON.stringify(init.body),
  });
  if (response.status === 204) return undefined as T;
  const text = await response.text();
  const body = text ? JSON.parse(text) : undefined;
  if (!response.ok) {
    const problem: Problem = body ?? {};
    throw new HttpError(problem.detail ?? problem.title ?? response.statusText, response.status, problem);
  }
  return body as T;
}

/**
 * What a refusal says in a notification: the problem's detail, then each field error as `field:
 * message`. The detail of a refused query ("The request is not valid.") names no parameter; the field
 * errors do (a list's filter, a bulk action's body).
 */
export function problemMessage(error: unknown): string {
  if (!(error instanceof HttpError)) return error instanceof Error ? error.message : String(error);
  const problem = (error.body ?? {}) as Problem;
  const fields = Array.isArray(problem.errors)
    ? problem.errors.map(({ field, message }) => (field && field !== 'body' ? `${field}: ${message}` : message))
    : [];
  return [error.message, ...fields].join(' ');
}

/** Query string of the defined, non-empty values. */
export function query(params: Record<string, unknown>): string {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') continue;
    // A list is the parameter repeated, as the API reads several values (`?id=…&id=…`).
    for (const item of Array.isArray(value) ? value : [value]) search.append(key, String(item));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}
