import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { organizationScopeOf } from '../../platform/http/auth.js';
import { toPage } from '../../platform/http/pagination.js';
import { PARTIAL_UPDATE_RULES, partialUpdate } from '../../platform/http/partial-update.js';
import { organizationErrors } from './organizations.errors.js';
import { findOrganization, listOrganizations } from './organizations.queries.js';
import {
  CreateOrganizationBody,
  ListOrganizationsQuery,
  OrganizationPage,
  OrganizationRefParams,
  OrganizationView,
  UpdateOrganizationBody,
} from './organizations.schemas.js';
import { createOrganization, deleteOrganization, updateOrganization } from './organizations.service.js';
import type { Organization } from './organizations.table.js';

export function toOrganizationView(o: Organization) {
  return {
    id: o.id,
    code: o.code,
    name: o.name,
    description: o.description,
    settings: o.settings,
    is_active: o.isActive,
    created_at: o.createdAt.toISOString(),
    updated_at: o.updatedAt.toISOString(),
  };
}

const tags = ['organizations'];

export const organizationsRoutes: FastifyPluginAsyncTypebox = async (app) => {
  /** One organization as its GET answers it; a caller confined to one organization sees no other. */
  async function organizationView(ref: string, scopeOrganizationId: string | undefined) {
    const org = await findOrganization(app.database.db, ref, scopeOrganizationId);
    if (!org) throw organizationErrors.notFound(ref);
    return toOrganizationView(org);
  }

  app.get(
    '/api/v1/organizations',
    {
      config: { auth: { permission: 'organizations.view' } },
      schema: {
        operationId: 'listOrganizations',
        tags,
        description: 'Organizations, oldest first, with prefix search on code or name.',
        querystring: ListOrganizationsQuery,
        response: { 200: OrganizationPage },
      },
    },
    async (req) => {
      const limit = req.query.limit ?? 50;
      const rows = await listOrganizations(app.database.db, {
        ...req.query,
        limit,
        organizationId: organizationScopeOf(req.actor),
      });
      const page = toPage(rows, limit, (o) => [o.id]);
      return { results: page.results.map(toOrganizationView), next: page.next };
    },
  );

  app.post(
    '/api/v1/organizations',
    {
      config: { auth: { permission: 'organizations.manage' } },
      schema: {
        operationId: 'createOrganization',
        tags,
        body: CreateOrganizationBody,
        response: { 201: OrganizationView },
      },
    },
    async (req, reply) => {
      if (organizationScopeOf(req.actor) !== undefined)
        throw organizationErrors.superuserOnly('create an organization');
      const org = await createOrganization(app.database.db, req.body, req.actor);
      return reply.code(201).send(toOrganizationView(org));
    },
  );

  app.get(
    '/api/v1/organizations/:ref',
    {
      config: { auth: { permission: 'organizations.view' } },
      schema: {
        operationId: 'getOrganization',
        tags,
        params: OrganizationRefParams,
        response: { 200: OrganizationView },
      },
    },
    async (req) => organizationView(req.params.ref, organizationScopeOf(req.actor)),
  );

  app.patch(
    '/api/v1/organizations/:ref',
    {
      config: { auth: { permission: 'organizations.manage' } },
      schema: {
        operationId: 'updateOrganization',
        tags,
        description: `Partial update. Setting \`is_active\` to false ends every session of its users. ${PARTIAL_UPDATE_RULES}`,
        params: OrganizationRefParams,
        body: UpdateOrganizationBody,
        response: { 200: OrganizationView },
      },
      ...partialUpdate({
        params: OrganizationRefParams,
        body: UpdateOrganizationBody,
        view: OrganizationView,
        current: (req) => organizationView(req.params.ref, organizationScopeOf(req.actor)),
      }),
    },
    async (req) =>
      toOrganizationView(
        await updateOrganization(app.database.db, req.params.ref, req.body, organizationScopeOf(req.actor), req.actor),
      ),
  );

  app.post(
    '/api/v1/organizations/:ref/deactivate',
    {
      config: { auth: { permission: 'organizations.manage' } },
      schema: {
        operationId: 'deactivateOrganization',
        tags,
        description:
          "Stops the organization's logins and ends its users' sessions and mailed links. Until it is " +
          'reactivated, no user of it is created, changed, reactivated or invited, by anyone (409 ' +
          '`organization_inactive`); its users may still be deactivated and deleted.',
        params: OrganizationRefParams,
        response: { 200: OrganizationView },
      },
    },
    async (req) =>
      toOrganizationView(
        await updateOrganization(
          app.database.db,
          req.params.ref,
          { is_active: false },
          organizationScopeOf(req.actor),
          req.actor,
        ),
      ),
  );

  app.delete(
    '/api/v1/organizations/:ref',
    {
      config: { auth: { permission: 'organizations.manage' } },
      schema: {
        operationId: 'deleteOrganization',
        tags,
        description: 'Deletes an organization without users.',
        params: OrganizationRefParams,
      },
    },
    async (req, reply) => {
      await deleteOrganization(app.database.db, req.params.ref, organizationScopeOf(req.actor), req.actor);
      return reply.code(204).send();
    },
  );
};
