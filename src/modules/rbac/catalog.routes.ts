import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { toPage } from '../../platform/http/pagination.js';
import { PARTIAL_UPDATE_RULES, partialUpdate } from '../../platform/http/partial-update.js';
import {
  createModule,
  createPermission,
  deleteModule,
  deletePermission,
  findModule,
  findPermission,
  listModules,
  listPermissions,
  moduleSortKey,
  permissionSortKey,
  toModuleView,
  toPermissionView,
  updateModule,
  updatePermission,
} from './catalog.service.js';
import { rbacErrors } from './rbac.errors.js';
import {
  CatalogRefParams,
  CreateModuleBody,
  CreatePermissionBody,
  ListModulesQuery,
  ListPermissionsQuery,
  ModulePage,
  ModuleView,
  PermissionPage,
  PermissionView,
  UpdateModuleBody,
  UpdatePermissionBody,
} from './rbac.schemas.js';

const view = { auth: { permission: 'roles.view' } } as const;

/** `/api/v1/modules/` and `/api/v1/permissions/`: the platform-wide catalog roles draw on. */
export const catalogRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;
  const modules = { tags: ['modules'] };
  const manageModules = { auth: { permission: 'modules.manage' } } as const;

  async function moduleView(ref: string) {
    const module = await findModule(db, ref);
    if (!module) throw rbacErrors.moduleNotFound(ref);
    return toModuleView(module);
  }

  app.get(
    '/api/v1/modules',
    {
      config: view,
      schema: {
        ...modules,
        operationId: 'listModules',
        description: 'Modules by `order`, then code.',
        querystring: ListModulesQuery,
        response: { 200: ModulePage },
      },
    },
    async (req) => {
      const limit = req.query.limit ?? 50;
      const page = toPage(await listModules(db, { ...req.query, limit }), limit, moduleSortKey);
      return { results: page.results.map(toModuleView), next: page.next };
    },
  );

  app.post(
    '/api/v1/modules',
    {
      config: manageModules,
      schema: { ...modules, operationId: 'createModule', body: CreateModuleBody, response: { 201: ModuleView } },
    },
    async (req, reply) => reply.code(201).send(toModuleView(await createModule(db, req.body))),
  );

  app.get(
    '/api/v1/modules/:ref',
    {
      config: view,
      schema: {
        ...modules,
        operationId: 'getModule',
        description: 'A module by code or id.',
        params: CatalogRefParams,
        response: { 200: ModuleView },
      },
    },
    async (req) => moduleView(req.params.ref),
  );

  app.patch(
    '/api/v1/modules/:ref',
    {
      config: manageModules,
      schema: {
        ...modules,
        operationId: 'updateModule',
        description: `Deactivating a module withdraws access to it and its permissions from everyone at once. ${PARTIAL_UPDATE_RULES}`,
        params: CatalogRefParams,
        body: UpdateModuleBody,
        response: { 200: ModuleView },
      },
      ...partialUpdate({
        params: CatalogRefParams,
        body: UpdateModuleBody,
        view: ModuleView,
        current: (req) => moduleView(req.params.ref),
      }),
    },
    async (req) => toModuleView(await updateModule(db, req.params.ref, req.body)),
  );

  app.delete(
    '/api/v1/modules/:ref',
    {
      config: manageModules,
      schema: {
        ...modules,
        operationId: 'deleteModule',
        description:
          'Deletes a module that has no permissions left and that no role grants (409 `module_in_use` otherwise: ' +
          'delete its permissions and take it out of those roles first).',
        params: CatalogRefParams,
      },
    },
    async (req, reply) => {
      await deleteModule(db, req.params.ref);
      return reply.code(204).send();
    },
  );

  const perms = { tags: ['permissions'] };
  const managePermissions = { auth: { permission: 'permissions.manage' } } as const;

  async function permissionView(ref: string) {
    const permission = await findPermission(db, ref);
    if (!permission) throw rbacErrors.permissionNotFound(ref);
    return toPermissionView(permission);
  }

  app.get(
    '/api/v1/permissions',
    {
      config: view,
      schema: {
        ...perms,
        operationId: 'listPermissions',
        description:
          'Permissions grouped under their modules, in the modules’ order (`order`, then code), then by code.',
        querystring: ListPermissionsQuery,
        response: { 200: PermissionPage },
      },
    },
    async (req) => {
      const limit = req.query.limit ?? 50;
      const page = toPage(await listPermissions(db, { ...req.query, limit }), limit, permissionSortKey);
      return { results: page.results.map(toPermissionView), next: page.next };
    },
  );

  app.post(
    '/api/v1/permissions',
    {
      config: managePermissions,
      schema: {
        ...perms,
        operationId: 'createPermission',
        body: CreatePermissionBody,
        response: { 201: PermissionView },
      },
    },
    async (req, reply) => reply.code(201).send(toPermissionView(await createPermission(db, req.body))),
  );

  app.get(
    '/api/v1/permissions/:ref',
    {
      config: view,
      schema: {
        ...perms,
        operationId: 'getPermission',
        description: 'A permission by code or id.',
        params: CatalogRefParams,
        response: { 200: PermissionView },
      },
    },
    async (req) => permissionView(req.params.ref),
  );

  app.patch(
    '/api/v1/permissions/:ref',
    {
      config: managePermissions,
      schema: {
        ...perms,
        operationId: 'updatePermission',
        description: PARTIAL_UPDATE_RULES,
        params: CatalogRefParams,
        body: UpdatePermissionBody,
        response: { 200: PermissionView },
      },
      ...partialUpdate({
        params: CatalogRefParams,
        body: UpdatePermissionBody,
        view: PermissionView,
        current: (req) => permissionView(req.params.ref),
      }),
    },
    async (req) => toPermissionView(await updatePermission(db, req.params.ref, req.body)),
  );

  app.delete(
    '/api/v1/permissions/:ref',
    {
      config: managePermissions,
      schema: {
        ...perms,
        operationId: 'deletePermission',
        description:
          'Deletes a permission that no role grants (409 `permission_in_use` otherwise: take it out of those roles first).',
        params: CatalogRefParams,
      },
    },
    async (req, reply) => {
      await deletePermission(db, req.params.ref);
      return reply.code(204).send();
    },
  );
};
