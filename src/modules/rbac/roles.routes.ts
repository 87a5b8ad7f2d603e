import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { organizationScopeOf, requireUser } from '../../platform/http/auth.js';
import { refuseOrganizationId } from '../../platform/http/organization-id-field.js';
import { toPage } from '../../platform/http/pagination.js';
import { PARTIAL_UPDATE_RULES, partialUpdate } from '../../platform/http/partial-update.js';
import { accessOfCaller, keyCeilingOf } from './delegation.js';
import { rbacErrors } from './rbac.errors.js';
import {
  AssignmentPage,
  AssignmentView,
  AssignRoleBody,
  CreateRoleBody,
  ListRolesQuery,
  ListUserRolesQuery,
  RoleIdParams,
  RolePage,
  RoleView,
  UpdateRoleBody,
  UserRoleParams,
  UserRolesParams,
} from './rbac.schemas.js';
import {
  assignmentKeyOf,
  assignRole,
  createRole,
  deleteRole,
  findRole,
  listAssignments,
  listRoles,
  removeRole,
  toAssignmentView,
  toRoleView,
  updateRole,
  userInScope,
} from './roles.service.js';

const manage = { auth: { permission: 'roles.manage' } } as const;

/** `/api/v1/roles/` with their grants, and `/api/v1/users/{id}/roles/`. */
export const rolesRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;
  const tags = ['roles'];

  app.get(
    '/api/v1/roles',
    {
      config: { auth: { permission: 'roles.view' } },
      schema: {
        tags,
        operationId: 'listRoles',
        description: 'Global roles and the caller’s organization’s (every organization’s for superusers).',
        querystring: ListRolesQuery,
        response: { 200: RolePage },
      },
    },
    async (req) => {
      const limit = req.query.limit ?? 50;
      const { actor } = req;
      const ceiling = !req.query.assignable
        ? undefined
        : actor.kind === 'user'
          ? actor.isSuperuser
            ? undefined
            : await accessOfCaller(db, actor)
          : await keyCeilingOf(db, actor);
      const rows = await listRoles(db, organizationScopeOf(actor), { ...req.query, limit }, ceiling);
      const page = toPage(rows, limit, (r) => [r.id]);
      return { results: page.results.map(toRoleView), next: page.next };
    },
  );

  app.post(
    '/api/v1/roles',
    {
      config: manage,
      preValidation: refuseOrganizationId,
      schema: {
        tags,
        operationId: 'createRole',
        description:
          'Creates a role with its grants. The delegation ceiling applies: the level must be at or below the ' +
          'caller’s own (a number ≥ theirs) and every permission and module must be held by the caller.',
        body: CreateRoleBody,
        response: { 201: RoleView },
      },
    },
    async (req, reply) => reply.code(201).send(toRoleView(await createRole(db, requireUser(req.actor), req.body))),
  );

  app.get(
    '/api/v1/roles/:id',
    {
      config: { auth: { permission: 'roles.view' } },
      schema: { tags, operationId: 'getRole', params: RoleIdParams, response: { 200: RoleView } },
    },
    async (req) => toRoleView(await findRole(db, req.params.id, organizationScopeOf(req.actor))),
  );

  app.patch(
    '/api/v1/roles/:id',
    {
      config: manage,
      schema: {
        tags,
        operationId: 'updateRole',
        description: `Partial update; grant lists given replace the current ones. Holders see the change at once. A built-in role keeps its level (409 \`builtin_role\`). ${PARTIAL_UPDATE_RULES}`,
        params: RoleIdParams,
        body: UpdateRoleBody,
        response: { 200: RoleView },
      },
      ...partialUpdate({
        params: RoleIdParams,
        body: UpdateRoleBody,
        view: RoleView,
        current: async (req) => toRoleView(await findRole(db, req.params.id, organizationScopeOf(req.actor))),
      }),
    },
    async (req) => toRoleView(await updateRole(db, requireUser(req.actor), req.params.id, req.body)),
  );

  app.delete(
    '/api/v1/roles/:id',
    {
      config: manage,
      schema: {
        tags,
        operationId: 'deleteRole',
        description:
          'Deletes a role and its assignments; built-in roles stay (409). Each user who held it as primary gets ' +
          'their most powerful remaining role as primary.',
        params: RoleIdParams,
      },
    },
    async (req, reply) => {
      await deleteRole(db, requireUser(req.actor), req.params.id);
      return reply.code(204).send();
    },
  );

  app.get(
    '/api/v1/users/:id/roles',
    {
      config: { auth: { permission: 'users.view' } },
      schema: {
        tags,
        operationId: 'listUserRoles',
        description: 'The user’s roles, most powerful first (lowest level, then code).',
        params: UserRolesParams,
        querystring: ListUserRolesQuery,
        response: { 200: AssignmentPage },
      },
    },
    async (req) => {
      const user = await userInScope(db, req.params.id, organizationScopeOf(req.actor));
      const limit = req.query.limit ?? 50;
      const after = req.query.cursor ? assignmentKeyOf(req.query.cursor) : undefined;
      const rows = await listAssignments(db, user.id, { limit, after });
      const page = toPage(rows, limit, (a) => [a.level, a.code, a.roleId]);
      return { results: page.results.map(toAssignmentView), next: page.next };
    },
  );

  app.post(
    '/api/v1/users/:id/roles',
    {
      config: manage,
      schema: {
        tags,
        operationId: 'assignRole',
        description:
          'Gives the user a role by code (their organization’s role first, then the global one): 201; 200 when ' +
          'they hold it and `is_primary` changes; 409 `role_already_assigned` when they already hold it as asked. ' +
          'Exactly one of a user’s roles is primary (see `is_primary`). ' +
          'Nobody changes their own roles; the delegation ceiling applies.',
        params: UserRolesParams,
        body: AssignRoleBody,
        response: { 200: AssignmentView, 201: AssignmentView },
      },
    },
    async (req, reply) => {
      const { assignment, outcome } = await assignRole(db, requireUser(req.actor), req.params.id, req.body);
      if (outcome === 'unchanged') throw rbacErrors.roleAlreadyAssigned(assignment.code);
      return reply.code(outcome === 'created' ? 201 : 200).send(toAssignmentView(assignment));
    },
  );

  app.delete(
    '/api/v1/users/:id/roles/:role',
    {
      config: manage,
      schema: {
        tags,
        operationId: 'removeRole',
        description:
          'Takes a role (id or code) from the user; when it was primary, their most powerful remaining role becomes primary.',
        params: UserRoleParams,
      },
    },
    async (req, reply) => {
      await removeRole(db, requireUser(req.actor), req.params.id, req.params.role);
      return reply.code(204).send();
    },
  );
};
