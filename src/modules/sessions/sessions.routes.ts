import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { type Actor, organizationScopeOf, requireUser } from '../../platform/http/auth.js';
import { AppError } from '../../platform/http/errors.js';
import { decodeCursor, invalidCursor, toPage } from '../../platform/http/pagination.js';
import { recordAudit } from '../activity/audit.js';
import { revokeSession } from '../auth/auth.service.js';
import { listingScope } from '../organizations/organizations.queries.js';
import { findUserToManage } from '../users/users.service.js';
import { findSession, listSessions, type SessionRow } from './sessions.queries.js';
import {
  AdminSessionPage,
  AdminSessionView,
  ListOwnSessionsQuery,
  ListSessionsQuery,
  SessionIdParams,
  SessionPage,
} from './sessions.schemas.js';

const sessionNotFound = (id: string) => new AppError(404, 'session_not_found', `Session ${id} was not found.`);

function afterCursor(cursor: string | undefined): string | undefined {
  if (cursor === undefined) return undefined;
  const [id] = decodeCursor(cursor, 1);
  if (typeof id !== 'string' || !isUuid(id)) throw invalidCursor();
  return id;
}

function toSessionView(row: SessionRow, currentSessionId: string | undefined) {
  return {
    id: row.id,
    ip_address: row.ipAddress,
    device_type: row.deviceType,
    browser: row.browser,
    os: row.os,
    user_agent: row.userAgent,
    created_at: row.createdAt.toISOString(),
    last_activity_at: row.lastActivityAt.toISOString(),
    expires_at: row.expiresAt.toISOString(),
    current: row.id === currentSessionId,
    active: row.active,
  };
}

function toAdminSessionView(row: SessionRow, currentSessionId: string | undefined) {
  return {
    ...toSessionView(row, currentSessionId),
    user_id: row.userId,
    organization: row.organizationCode,
    organization_id: row.organizationId,
    revoked_at: row.revokedAt?.toISOString() ?? null,
  };
}

export const sessionsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;

  app.get(
    '/api/v1/users/sessions',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'listOwnSessions',
        tags: ['sessions'],
        description:
          'The caller’s sessions, newest first: where and on what each was opened, when it was last used, and whether ' +
          'it is still open (`active`) and the one making this request (`current`).',
        querystring: ListOwnSessionsQuery,
        response: { 200: SessionPage },
      },
    },
    async (req) => {
      const actor = requireUser(req.actor);
      const limit = req.query.limit ?? 50;
      const rows = await listSessions(db, {
        userId: actor.userId,
        active: req.query.active,
        after: afterCursor(req.query.cursor),
        limit,
      });
      const page = toPage(rows, limit, (r) => [r.id]);
      return { results: page.results.map((r) => toSessionView(r, actor.sessionId)), next: page.next };
    },
  );

  app.delete(
    '/api/v1/users/sessions/:id',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'revokeOwnSession',
        tags: ['sessions'],
        description:
          'Ends one of the caller’s sessions (a lost phone, a shared computer): its tokens and cookie stop working at ' +
          'once. Another user’s session answers 404. Ending an already ended session is not an error.',
        params: SessionIdParams,
        response: { 204: { type: 'null', description: 'Ended.' } },
      },
    },
    async (req, reply) => {
      const actor = requireUser(req.actor);
      const session = isUuid(req.params.id) ? await findSession(db, req.params.id) : undefined;
      if (!session || session.userId !== actor.userId) throw sessionNotFound(req.params.id);
      await endSession(db, session, actor, 'revoked_by_user');
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/v1/user-sessions',
    {
      config: { auth: { permission: 'sessions.manage' } },
      schema: {
        operationId: 'listSessions',
        tags: ['sessions'],
        description:
          'Sessions of every user of the caller’s organization (all organizations for superusers, or the one named by ' +
          '`organization`), or of `user`, newest first. Naming an organization outside the caller’s reach lists nothing.',
        querystring: ListSessionsQuery,
        response: { 200: AdminSessionPage },
      },
    },
    async (req) => {
      const current = req.actor.kind === 'user' ? req.actor.sessionId : undefined;
      const limit = req.query.limit ?? 50;
      const organizationId = await listingScope(db, req.actor, req.query.organization);
      if (organizationId === null) return { results: [], next: null };
      const rows = await listSessions(db, {
        organizationId,
        userId: req.query.user,
        active: req.query.active,
        after: afterCursor(req.query.cursor),
        limit,
      });
      const page = toPage(rows, limit, (r) => [r.id]);
      return { results: page.results.map((r) => toAdminSessionView(r, current)), next: page.next };
    },
  );

  app.get(
    '/api/v1/user-sessions/:id',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'getSession',
        tags: ['sessions'],
        description:
          'One session, as the list shows it. Anyone signed in reads their own sessions; holders of `sessions.manage` ' +
          'read those of their organization’s users (any for superusers). Any other session answers 404, as an ' +
          'unknown id does.',
        params: SessionIdParams,
        response: { 200: AdminSessionView },
      },
    },
    async (req) => {
      const actor = requireUser(req.actor);
      const session = isUuid(req.params.id) ? await findSession(db, req.params.id) : undefined;
      if (!session) throw sessionNotFound(req.params.id);
      const own = session.userId === actor.userId;
      if (!own) {
        // The list's rule: the permission, then the organization it confines to.
        const scope = organizationScopeOf(actor);
        const listed = scope === undefined || session.organizationId === scope;
        if (!listed || !(await app.can(actor, { permission: 'sessions.manage' }))) {
          throw sessionNotFound(req.params.id);
        }
      }
      return toAdminSessionView(session, actor.sessionId);
    },
  );

  app.delete(
    '/api/v1/user-sessions/:id',
    {
      config: { auth: { permission: 'sessions.manage' } },
      schema: {
        operationId: 'revokeSession',
        tags: ['sessions'],
        description:
          'Ends a session of a user of the caller’s organization (any for superusers); its tokens and cookie stop working at once.',
        params: SessionIdParams,
        response: { 204: { type: 'null', description: 'Ended.' } },
      },
    },
    async (req, reply) => {
      const scope = organizationScopeOf(req.actor);
      const session = isUuid(req.params.id) ? await findSession(db, req.params.id) : undefined;
      if (!session || (scope !== undefined && session.organizationId !== scope)) throw sessionNotFound(req.params.id);
      // Ending someone's session is a write to that user: the delegation rule applies.
      await findUserToManage(db, req.actor, session.userId);
      await endSession(db, session, req.actor, 'revoked_by_admin');
      return reply.code(204).send();
    },
  );
};

/**
 * Ends a session and records who ended it, in one transaction. An already ended session changes
 * nothing, so nothing is recorded (ending it again is not an error for either caller).
 */
async function endSession(
  db: Db,
  session: SessionRow,
  actor: Actor,
  reason: 'revoked_by_user' | 'revoked_by_admin',
): Promise<void> {
  await db.transaction(async (tx) => {
    if (!(await revokeSession(tx, session.id, reason))) return;
    await recordAudit(tx, {
      type: 'session.revoked',
      category: 'authentication',
      organizationId: session.organizationId,
      userId: session.userId,
      actor,
      description: reason === 'revoked_by_user' ? 'Session ended by its user' : 'Session ended by an administrator',
      details: { session_id: session.id },
      objectType: 'session',
      objectId: session.id,
    });
  });
}
