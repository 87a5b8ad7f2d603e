import type autocannon from 'autocannon';

/** The physical limit a scenario is compared with; each is measured in the same run. */
export type LimitKey = 'http' | 'pg-read' | 'pg-write' | 'argon2';

export interface Load {
  /** Requests each connection loops over (autocannon `requests`). */
  requests: autocannon.Request[];
  /** Shown beside the figure, e.g. "depth 1,000 pages". */
  note?: string;
}

export interface Skip {
  skip: string;
}

export interface Tokens {
  access: string;
  refresh: string;
  user: { id: string; [key: string]: unknown };
}

export interface Reply {
  status: number;
  // biome-ignore lint/suspicious/noExplicitAny: answers are JSON of any shape; scenarios read what they need.
  body: any;
}

export interface ScenarioContext {
  baseUrl: string;
  database: 'pglite' | 'postgres';
  /** The superuser the server creates at start from ADMIN_EMAIL / ADMIN_PASSWORD. */
  admin: { email: string; password: string };
  /** What `--seed N` put into the database before the server started (0 users without it). */
  seeded: { users: number; organizations: string[]; sampleUserIds: string[]; password: string };
  /** One JSON request over loopback. */
  call(method: string, path: string, options?: { body?: unknown; token?: string }): Promise<Reply>;
  /** Logs in through `POST /api/token/` (the admin by default); a Skip when that endpoint is missing or refuses. */
  login(credentials?: { email: string; password: string }): Promise<Tokens | Skip>;
}

/**
 * A bounded load against one route. Adding one is one file in bench/scenarios/ whose default
 * export is a Scenario; `npm run bench -- <name>` runs it alone.
 */
export interface Scenario {
  name: string;
  description: string;
  limit: LimitKey;
  connections: number;
  /** Seconds; `--duration` overrides it. */
  duration?: number;
  setup(ctx: ScenarioContext): Promise<Load | Skip>;
}

export const isSkip = (value: unknown): value is Skip => typeof value === 'object' && value !== null && 'skip' in value;

/**
 * A 404 that comes from the router (no such route yet), as opposed to a 404 about a resource.
 * The service renders unknown routes as problem+json with code `route_not_found`.
 */
export function isMissingRoute(reply: Reply): boolean {
  return reply.status === 404 && (reply.body?.code === 'route_not_found' || typeof reply.body !== 'object');
}

export function notAvailable(method: string, path: string): Skip {
  return { skip: `endpoint not available yet: ${method} ${path} answers 404` };
}

/** Checks that `path` answers 2xx with the token; a Skip naming the route otherwise. */
export async function probe(ctx: ScenarioContext, path: string, token?: string): Promise<Skip | undefined> {
  const reply = await ctx.call('GET', path, token ? { token } : {});
  if (isMissingRoute(reply)) return notAvailable('GET', path);
  if (reply.status >= 300) return { skip: `GET ${path} answers ${reply.status}: ${JSON.stringify(reply.body)}` };
  return undefined;
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
export const json = { 'content-type': 'application/json' };

/** A random element; the lists handed to it are never empty. */
export const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)] as T;
