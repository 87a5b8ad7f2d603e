import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { organizationScopeOf, requireUser } from '../../platform/http/auth.js';
import { refuseOrganizationId } from '../../platform/http/organization-id-field.js';
import { toPage } from '../../platform/http/pagination.js';
import { PARTIAL_UPDATE_RULES, partialUpdate } from '../../platform/http/partial-update.js';
import { listingScope } from '../organizations/organizations.queries.js';
import { userErrors } from './users.errors.js';
import { findUserById, listUsers, userCursorKey, userSortOf } from './users.queries.js';
import {
  CreateUserBody,
  ListUsersQuery,
  toUserView,
  UpdateUserBody,
  UserIdParams,
  UserPage,
  UserView,
} from './users.schemas.js';
import {
  assertMayChangeStaff,
  assertMayGrantSuperuser,
  assertNotOwnAccount,
  createUser,
  deleteUser,
  findUserToManage,
  updateUser,
} from './users.service.js';

const tags = ['users'];

export const usersRoutes: FastifyPluginAsyncTypebox = async (app) => {
  async function userView(id: string, scopeOrganizationId: string | undefined) {
    const user = await findUserById(app.database.db, id, scopeOrganizationId);
    if (!user) throw userErrors.notFound(id);
    return toUserView(user);
  }

  app.get(
    '/api/v1/users',
    {
      config: { auth: { permission: 'users.view' } },
      schema: {
        operationId: 'listUsers',
        tags,
        description:
          'Users with prefix search, filters and keyset pagination: newest first by default, by email ' +
          'when `search` or `email` is given (index-backed at any size).',
        querystring: ListUsersQuery,
        response: { 200: UserPage },
      },
    },
    async (req) => {
      const { organization, ...query } = req.query;
      const limit = query.limit ?? 50;
      const organizationId = await listingScope(app.database.db, req.actor, organization);
      if (organizationId === null) return { results: [], next: null };
      const rows = await listUsers(app.database.db, { ...query, limit, organizationId });
      const page = toPage(rows, limit, (row) => userCursorKey(userSortOf(query), row));
      return { results: page.results.map(toUserView), next: page.next };
    },
  );

  app.post(
    '/api/v1/users',
    {
      config: { auth: { permission: 'users.update' } },
      preValidation: refuseOrganizationId,
      schema: {
        operationId: 'createUser',
        tags,
        description: 'Creates a user; `organization` is a code (default: the caller’s organization).',
        body: CreateUserBody,
        response: { 201: UserView },
      },
    },
    async (req, reply) => {
      const user = await createUser(app.database.db, requireUser(req.actor), req.body);
      return reply.code(201).send(toUserView(user));
    },
  );

  app.get(
    '/api/v1/users/:id',
    {
      config: { auth: { permission: 'users.view' } },
      schema: { operationId: 'getUser', tags, params: UserIdParams, response: { 200: UserView } },
    },
    async (req) => userView(req.params.id, organizationScopeOf(req.actor)),
  );

  app.get(
    '/api/v1/users/user/:id',
    {
      config: { auth: { scope: 'read:users', anyUser: true } },
      schema: {
        operationId: 'getUserForService',
        tags,
        description:
          'One user, for other services (seed 001): with an API key carrying `read:users`, any user of the key’s ' +
          'organization (every organization for a platform key); with a user Bearer token, the caller themself, or ' +
          'with `users.view` anyone of their organization (superusers: anyone). Everything else answers 404, so ' +
          'existence is not leaked.',
        params: UserIdParams,
        response: { 200: UserView },
      },
    },
    async (req) => {
      const actor = req.actor;
      const user = await findUserById(app.database.db, req.params.id);
      const scope = organizationScopeOf(actor);
      const visible =
        user !== undefined &&
        (scope === undefined ||
          (user.organizationId === scope &&
            (actor.kind !== 'user' ||
              actor.userId === user.id ||
              (await app.can(actor, { permission: 'users.view' })))));
      if (!visible) throw userErrors.notFound(req.params.id);
      return toUserView(user);
    },
  );

  app.patch(
    '/api/v1/users/:id',
    {
      config: { auth: { permission: 'users.update' } },
      schema: {
        operationId: 'updateUser',
        tags,
        description:
          'Partial update. A status other than `active` (or `is_active: false`), or a new password, ends the ' +
          `user’s sessions. ${PARTIAL_UPDATE_RULES}`,
        params: UserIdParams,
        body: UpdateUserBody,
        response: { 200: UserView },
      },
      ...partialUpdate({
        params: UserIdParams,
        body: UpdateUserBody,
        view: UserView,
        current: (req) => userView(req.params.id, organizationScopeOf(req.actor)),
      }),
    },
    async (req) => {
      assertMayGrantSuperuser(req.actor, req.body);
      const user = await findUserToManage(app.database.db, req.actor, req.params.id);
      assertMayChangeStaff(req.actor, req.body, user);
      assertNotOwnAccount(req.actor, user, req.body);
      return toUserView(
        await updateUser(app.database.db, user.id, req.body, organizationScopeOf(req.actor), req.actor),
      );
    },
  );

  app.post(
    '/api/v1/users/:id/deactivate',
    {
      config: { auth: { permission: 'users.update' } },
      schema: {
        operationId: 'deactivateUser',
        tags,
        description: 'Sets the status to `deactivated` and ends every session of the user. Idempotent.',
        params: UserIdParams,
        response: { 200: UserView },
      },
    },
    async (req) => {
      const user = await findUserToManage(app.database.db, req.actor, req.params.id);
      assertNotOwnAccount(req.actor, user, { status: 'deactivated' });
      return toUserView(
        await updateUser(
          app.database.db,
          user.id,
          { status: 'deactivated' },
          organizationScopeOf(req.actor),
          req.actor,
        ),
      );
    },
  );

  app.delete(
    '/api/v1/users/:id',
    {
      config: { auth: { permission: 'users.delete' } },
      schema: {
        operationId: 'deleteUser',
        tags,
        description: 'Deletes the user and their sessions.',
        params: UserIdParams,
      },
    },
    async (req, reply) => {
      const user = await findUserToManage(app.database.db, req.actor, req.params.id);
      assertNotOwnAccount(req.actor, user, 'delete');
      await deleteUser(app.database.db, user.id, organizationScopeOf(req.actor), req.actor);
      return reply.code(204).send();
    },
  );
};
