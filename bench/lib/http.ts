import pg from 'pg';

/**
 * What the benchmark scripts need to set up their data through the API: one JSON request over
 * loopback (SCIM paths as `application/scim+json`), the same refusing anything but 2xx, a login.
 */

export interface Answer {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: answers are JSON of any shape; scripts read what they need.
  json: any;
}

export async function call(
  base: string,
  method: string,
  path: string,
  token?: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const contentType = path.startsWith('/scim/') ? 'application/scim+json' : 'application/json';
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body === undefined ? {} : { 'content-type': contentType }),
      ...headers,
    },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(120_000),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined };
}

// biome-ignore lint/suspicious/noExplicitAny: answers are JSON of any shape; scripts read what they need.
export async function must(...args: Parameters<typeof call>): Promise<any> {
  const res = await call(...args);
  if (res.status >= 300) throw new Error(`${args[1]} ${args[2]} answered ${res.status}: ${JSON.stringify(res.json)}`);
  return res.json;
}

/** An access token from `POST /api/token/`. */
export async function login(base: string, email: string, password: string): Promise<string> {
  return (await must(base, 'POST', '/api/token/', undefined, { email, password })).access as string;
}

/** Creates a database on a PostgreSQL server and returns its URL. */
export async function createDatabase(serverUrl: string, name: string): Promise<string> {
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return url.toString();
}
