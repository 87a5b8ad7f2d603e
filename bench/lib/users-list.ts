import { bearer, isMissingRoute, isSkip, notAvailable, type ScenarioContext, type Skip } from '../scenario.js';

export const USERS_PATH = '/api/v1/users/';
export const PAGE_SIZE = 50;

/** A superuser access token, or a Skip when login or the users list is not available yet. */
export async function listAccess(ctx: ScenarioContext): Promise<{ token: string } | Skip> {
  const tokens = await ctx.login();
  if (isSkip(tokens)) return tokens;
  const reply = await ctx.call('GET', `${USERS_PATH}?limit=1`, { token: tokens.access });
  if (isMissingRoute(reply)) return notAvailable('GET', USERS_PATH);
  if (reply.status !== 200) return { skip: `GET ${USERS_PATH} answers ${reply.status}: ${JSON.stringify(reply.body)}` };
  if (ctx.seeded.users === 0) return { skip: 'needs seeded users: run with --seed 1000000 (or another count)' };
  return { token: tokens.access };
}

/**
 * Follows `next` from the first page of `query` for up to `pages` pages and keeps the cursors of
 * the deepest ones, so the load reads deep pages rather than the cached first one.
 */
export async function deepCursors(
  ctx: ScenarioContext,
  token: string,
  query: string,
  pages: number,
): Promise<{ cursors: string[]; depth: number } | Skip> {
  const cursors: string[] = [];
  let cursor: string | null = null;
  let depth = 0;
  while (depth < pages) {
    const path = `${USERS_PATH}?${query}&limit=${PAGE_SIZE}${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`;
    const reply = await ctx.call('GET', path, { token });
    if (reply.status !== 200) return { skip: `GET ${path} answers ${reply.status}: ${JSON.stringify(reply.body)}` };
    depth++;
    cursor = reply.body.next;
    if (!cursor) break;
    cursors.push(cursor);
    if (cursors.length > 100) cursors.shift();
  }
  if (cursors.length === 0) return { skip: `${USERS_PATH}?${query} has a single page; seed more users` };
  return { cursors, depth };
}

export function pagePath(query: string, cursor: string): string {
  return `${USERS_PATH}?${query}&limit=${PAGE_SIZE}&cursor=${encodeURIComponent(cursor)}`;
}

export { bearer };
