import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { asc, eq } from 'drizzle-orm';
import type { Db } from '../../platform/db/client.js';
import { organizationScopeOf, requireUser } from '../../platform/http/auth.js';
import { commonErrors } from '../../platform/http/errors.js';
import { userErrors } from '../users/users.errors.js';
import { findModule, findPermission } from './catalog.service.js';
import { accessOfCaller } from './delegation.js';
import { accessOf, type Decision, explain } from './effective-access.js';
import { AuthorizeBody, AuthorizeView, EffectivePermissionsView } from './rbac.schemas.js';
import { permissions, rbacModules } from './rbac.table.js';
import { listAssignments } from './roles.service.js';

/** The answers about effective access: the caller's own, and any user's for other services. */
export const accessRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;
  const tags = ['roles'];

  app.get(
    '/api/v1/users/profile/permissions',
    {
      config: { auth: 'authenticated' },
      schema: {
        tags,
        operationId: 'getMyPermissions',
        description:
          'The caller’s effective permissions and modules: the union over their roles (everything for superusers).',
        response: { 200: EffectivePermissionsView },
      },
    },
    async (req) => {
      const actor = requireUser(req.actor);
      const [access, held] = await Promise.all([accessOfCaller(db, actor), listAssignments(db, actor.userId)]);
      let permissionCodes = [...access.permissions.keys()];
      let moduleCodes = [...access.modules.keys()];
      if (access.isSuperuser) {
        const [allPermissions, activeModules] = await Promise.all([
          db
            .select({ code: permissions.code })
            .from(permissions)
            .innerJoin(rbacModules, eq(rbacModules.id, permissions.moduleId))
            .where(eq(rbacModules.isActive, true)),
          db
            .select({ code: rbacModules.code })
            .from(rbacModules)
            .where(eq(rbacModules.isActive, true))
            .orderBy(asc(rbacModules.code)),
        ]);
        permissionCodes = allPermissions.map((p) => p.code);
        moduleCodes = activeModules.map((m) => m.code);
      }
      return {
        permissions: permissionCodes.sort(),
        modules: moduleCodes.sort(),
        roles: held.map((a) => ({
          code: a.code,
          role_id: a.roleId,
          organization: a.organizationCode,
          level: a.level,
          is_primary: a.isPrimary,
        })),
        level: access.level,
        is_superuser: access.isSuperuser,
      };
    },
  );

  app.post(
    '/api/v1/authorize',
    {
      config: { auth: { scope: 'authorize' } },
      schema: {
        tags,
        operationId: 'authorize',
        description:
          'Whether a user holds a permission and/or has access to a module, with the reason: the role that grants ' +
          'it, or what is missing. For other services: an API key with the `authorize` scope (confined to its ' +
          'organization) or a superuser. A user outside the caller’s reach answers 404. A user who is not active, or ' +
          'whose organization is deactivated, is allowed nothing (the reason says which); so is anyone asking for a ' +
          'permission or module that does not exist or whose module is inactive (the reason says that too).',
        body: AuthorizeBody,
        response: { 200: AuthorizeView },
      },
    },
    async (req) => {
      const { user_id: userId, permission, module } = req.body;
      if (permission === undefined && module === undefined) {
        throw commonErrors.validation([{ field: 'permission', message: 'Name a permission, a module, or both.' }]);
      }
      const scope = organizationScopeOf(req.actor);
      const access = await accessOf(db, userId);
      if (!access || (scope !== undefined && access.organizationId !== scope)) throw userErrors.notFound(userId);
      const decisions: Decision[] = [];
      if (permission !== undefined) decisions.push(explain(access, { permission }));
      if (module !== undefined) decisions.push(explain(access, { module }));
      const refused = decisions.find((d) => !d.allowed);
      if (refused) {
        // "No role grants it" would send the caller looking at roles when the catalog is the reason.
        const catalogReason =
          access.organizationActive && access.status === 'active'
            ? await catalogRefusal(db, permission, module)
            : undefined;
        return catalogReason === undefined ? refused : { allowed: false, reason: catalogReason };
      }
      return { allowed: true, reason: [...new Set(decisions.map((d) => d.reason))].join(' ') };
    },
  );
};

/**
 * Why a refusal lies in the catalog rather than the user's roles: the permission or module does
 * not exist, or its module is inactive (an inactive module's grants count for no one).
 */
async function catalogRefusal(db: Db, permission?: string, module?: string): Promise<string | undefined> {
  if (permission !== undefined) {
    const found = await findPermission(db, permission);
    if (!found || found.code !== permission) return `There is no permission "${permission}".`;
    const owner = await findModule(db, found.moduleCode);
    if (owner && !owner.isActive) {
      return `The module "${owner.code}" of permission "${permission}" is inactive: it grants nothing.`;
    }
  }
  if (module !== undefined) {
    const found = await findModule(db, module);
    if (!found || found.code !== module) return `There is no module "${module}".`;
    if (!found.isActive) return `The module "${module}" is inactive: it grants nothing.`;
  }
  return undefined;
}
