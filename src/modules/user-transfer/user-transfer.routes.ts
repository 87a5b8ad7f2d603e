import { Readable } from 'node:stream';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@fastify/type-provider-typebox';
import type { Db } from '../../platform/db/client.js';
import { type Actor, requireUser, type UserActor } from '../../platform/http/auth.js';
import { AppError, commonErrors, logFailure, normaliseError } from '../../platform/http/errors.js';
import { noStore } from '../../platform/http/no-store.js';
import { recordAudit } from '../activity/audit.js';
import { findOrganizationByCode, findOrganizationById } from '../organizations/organizations.queries.js';
import { type ExportFilter, exportCounts, scimFilterOf } from './user-export.queries.js';
import { EXPORT_CONTENT_TYPES, exportDocument } from './user-export.stream.js';
import { importUsers } from './user-import.js';
import {
  ExportFailureView,
  type ExportStatsInput,
  ExportStatsQuery,
  ExportStatsView,
  ExportUsersQuery,
  ExportUsersView,
  ImportUsersBody,
  type ImportUsersInput,
  ImportUsersView,
} from './user-transfer.schemas.js';

/**
 * Seed 003's export for staff users (API-CONTRACT §5): `GET /api/admin/export-users/` and
 * `/api/admin/export-stats/`, with a signed-in staff user's cookie session or Bearer token.
 * Both keep seed 003's `{success: false, error}` failure shape instead of problem+json.
 */

const tags = ['export'];
const failures = {
  400: ExportFailureView,
  401: ExportFailureView,
  403: ExportFailureView,
  404: ExportFailureView,
  413: ExportFailureView,
};

/** What a route does, for its refusals. */
type Transfer = 'export' | 'import';

const refusals: Record<Transfer, { notStaff: string; otherOrganization: string }> = {
  export: {
    notStaff: 'Exporting users needs a staff user.',
    otherOrganization: 'Staff users export their own organization only.',
  },
  import: {
    notStaff: 'Importing users needs a staff user.',
    otherOrganization: 'Staff users import into their own organization only.',
  },
};

function staffOf(caller: Actor, transfer: Transfer): UserActor {
  const actor = requireUser(caller);
  if (!actor.isStaff && !actor.isSuperuser) throw commonErrors.forbidden(refusals[transfer].notStaff);
  return actor;
}

/** The organization an export covers or an import writes to: undefined for every organization (superusers only). */
async function organizationScope(
  db: Db,
  actor: UserActor,
  code: string | undefined,
  transfer: Transfer,
): Promise<string | undefined> {
  if (code === undefined) return actor.isSuperuser ? undefined : actor.organizationId;
  if (!actor.isSuperuser) {
    if (code !== actor.organizationCode) throw commonErrors.forbidden(refusals[transfer].otherOrganization);
    return actor.organizationId;
  }
  const organization = await findOrganizationByCode(db, code);
  if (!organization) throw commonErrors.notFound(`Organization ${code}`);
  return organization.id;
}

/** The code of the organization an import names, by `organization` or by `organization_id` (which must agree). */
async function importTargetCode(db: Db, body: ImportUsersInput): Promise<string | undefined> {
  if (body.organization_id === undefined) return body.organization;
  const named = await findOrganizationById(db, body.organization_id);
  if (!named) throw commonErrors.notFound(`Organization ${body.organization_id}`);
  if (body.organization !== undefined && body.organization !== named.code) {
    const detail = `Organization ${body.organization_id} is ${named.code}, not ${body.organization}.`;
    throw new AppError(400, 'validation_failed', detail, { errors: [{ field: 'organization_id', message: detail }] });
  }
  return named.code;
}

async function filterOf(db: Db, actor: UserActor, query: ExportStatsInput): Promise<ExportFilter> {
  return {
    organizationId: await organizationScope(db, actor, query.organization, 'export'),
    scim: query.filter === undefined ? undefined : scimFilterOf(query.filter),
    userType: query.user_type,
    flag: query.flag,
    includeInactive: query.include_inactive ?? false,
  };
}

/** The `users` of an import's body, which the import checks one by one. */
function usersOfBody(body: unknown): unknown[] | undefined {
  const users = typeof body === 'object' && body !== null ? (body as { users?: unknown }).users : undefined;
  return Array.isArray(users) ? users : undefined;
}

export const userTransferRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;

  // Every refusal of these two routes, from the credential check on, in seed 003's shape.
  app.setErrorHandler((err, request, reply) => {
    const normalised = normaliseError(err, request.routeOptions.bodyLimit);
    logFailure(request, err, normalised);
    const { error } = normalised;
    if (error.headers) reply.headers(error.headers);
    return reply.code(error.status).send({
      success: false,
      error: error.message,
      code: error.code,
      ...(error.errors ? { errors: error.errors } : {}),
    });
  });

  app.get(
    '/api/admin/export-users',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'exportUsers',
        tags,
        description:
          'Seed 003’s user export, for staff users (superusers: every organization; staff: their own). Active users ' +
          'by default, in the order they were created in this installation (an imported user keeps its ' +
          '`date_joined` but follows the users created before the import), narrowed by the filters. ' +
          '`format=json` (default) answers ' +
          '`{success, users, count, message}`; `csv` and `ndjson` give one user per line as a download. Each user ' +
          'carries seed 003’s fields (`id`, `username`, `email`, `first_name`, `last_name`, `is_active`, ' +
          '`date_joined`), then `status`, `user_type`, `organization`, `organization_id`, `external_id` (the ' +
          'identity provider’s subject), `scim_external_id` (the SCIM `externalId`), `last_login` and ' +
          '`attributes`; `import-users` takes them back. Every format ' +
          'is streamed, so an export of any size holds little memory; one that fails partway is cut off (the ' +
          'connection closes before the end of the answer), never ended as if whole. Each export is recorded as ' +
          'an audit event.',
        querystring: ExportUsersQuery,
        response: {
          200: {
            description: 'The users: JSON, or one per line in CSV (with a header line) or NDJSON.',
            content: {
              'application/json': { schema: ExportUsersView },
              'text/csv': { schema: Type.String() },
              'application/x-ndjson': { schema: Type.String() },
            },
          },
          ...failures,
        },
      },
    },
    async (req, reply) => {
      const actor = staffOf(req.actor, 'export');
      const filter = await filterOf(db, actor, req.query);
      const format = req.query.format ?? 'json';
      await recordAudit(db, {
        type: 'users.exported',
        category: 'user_management',
        organizationId: filter.organizationId ?? null,
        description: `Users exported as ${format}`,
        details: {
          format,
          filter: req.query.filter ?? null,
          user_type: req.query.user_type ?? null,
          flag: req.query.flag ?? null,
          include_inactive: filter.includeInactive,
          organization: req.query.organization ?? null,
        },
        tags: ['export'],
      });
      noStore(reply).type(EXPORT_CONTENT_TYPES[format]);
      if (format !== 'json') reply.header('content-disposition', `attachment; filename="users.${format}"`);
      const document = Readable.from(exportDocument(db, filter, format), { objectMode: false });
      // The 200 went out with the first bytes: a row that fails later (one the export cannot write, a
      // lost database) must not end the answer as if it were whole, which NDJSON and CSV would look
      // like. The connection is cut, so the client sees an incomplete transfer, and the cause logged.
      document.on('error', (err) => {
        req.log.error({ err, format }, 'user export failed partway');
        if (reply.raw.headersSent) reply.raw.destroy();
      });
      // A stream is sent as it is: the response schema documents the JSON it carries, unserialised.
      return reply.send(document as never);
    },
  );

  app.get(
    '/api/admin/export-stats',
    {
      config: { auth: 'authenticated' },
      schema: {
        operationId: 'exportStats',
        tags,
        description:
          'What `export-users` would give with the same filters, before running it: the users in scope, the active ' +
          'ones, the exportable ones and how they split by user type. Staff users only.',
        querystring: ExportStatsQuery,
        response: { 200: ExportStatsView, ...failures },
      },
    },
    async (req) => {
      const actor = staffOf(req.actor, 'export');
      const counts = await exportCounts(db, await filterOf(db, actor, req.query));
      return {
        success: true as const,
        stats: {
          total_users: counts.totalUsers,
          total_active_users: counts.totalActiveUsers,
          exportable_users: counts.exportableUsers,
          by_user_type: counts.byUserType.map((row) => ({ user_type: row.userType, count: row.count })),
        },
      };
    },
  );

  app.post(
    '/api/admin/import-users',
    {
      // An entry holding unstorable text, deep nesting or a `__proto__` key fails alone (importUsers);
      // the rest of the body is refused whole, as on any route.
      config: { auth: 'authenticated', bodyItems: usersOfBody },
      schema: {
        operationId: 'importUsers',
        tags,
        description:
          'Creates users exported by another system (seed 003’s `export-users` answer, or this one’s) in one ' +
          'organization, through the provisioning core. Each user keeps its `date_joined`, `status` and both ' +
          'external ids. A user whose email, username, external id or SCIM externalId the ' +
          'organization already holds is skipped; every other refusal is reported for its entry alone (text ' +
          'the database cannot store, nesting deeper than 64 levels and `__proto__` keys included; an ' +
          '`external_id`, `scim_external_id`, email address or username given twice fails the later entry with `duplicate_in_request`, ' +
          'naming the field). A `date_joined` ' +
          'without a zone (Django with `USE_TZ = False`) is read as UTC. ' +
          `Passwords and staff flags are never imported. Up to BULK_MAX_ITEMS users (default 10,000) a call; ` +
          '`dry_run: true` answers what would happen and writes nothing. Staff users holding `users.update` only.',
        body: ImportUsersBody,
        response: { 200: ImportUsersView, ...failures },
      },
    },
    async (req) => {
      const actor = staffOf(req.actor, 'import');
      // Creating users is what the admin API's users.update guards; being staff alone does not grant it.
      if (!(await app.can(actor, { permission: 'users.update' }))) {
        throw commonErrors.forbidden('Importing users needs the users.update permission.');
      }
      const { users, dry_run: dryRun = false } = req.body;
      if (users.length > app.config.bulkMaxItems) {
        const detail = `At most ${app.config.bulkMaxItems} users per import.`;
        throw new AppError(413, 'too_many_items', detail, { errors: [{ field: 'users', message: detail }] });
      }
      const organizationId = await organizationScope(db, actor, await importTargetCode(db, req.body), 'import');
      const organization =
        organizationId === undefined ? undefined : (await findOrganizationById(db, organizationId))?.code;
      if (!organization) {
        const detail = 'Name the organization to import into.';
        throw new AppError(400, 'validation_failed', detail, { errors: [{ field: 'organization', message: detail }] });
      }
      const report = await importUsers(db, actor, users, {
        organization,
        dryRun,
        sendInvite: req.body.send_invite,
        config: app.config,
      });
      const verb = dryRun ? 'would be created' : 'created';
      return {
        success: true as const,
        ...report,
        dry_run: dryRun,
        message: `${report.created} users ${verb}, ${report.skipped} skipped, ${report.failed} failed`,
      };
    },
  );
};
