import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest, FastifySchemaCompiler } from 'fastify';
import { AppError, fieldErrorsFromValidation, normaliseError } from '../../platform/http/errors.js';
import { forbiddenKeyIn } from '../../platform/http/json-body.js';
import { bodyItemProblem } from '../../platform/http/text-guard.js';
import { validatorCompiler } from '../../platform/http/validation.js';
import { provisioningErrors } from './provisioning.errors.js';
import { deactivateUser, findProvisionedUser, listProvisionedUsers } from './provisioning.lookup.js';
import {
  BulkProvisionBody,
  BulkProvisionView,
  ClientUsersView,
  DeactivationView,
  DryRunQuery,
  KeycloakIdParams,
  ListByClientQuery,
  ProvisionedUserDetail,
  ProvisionedUserView,
  ProvisionUserBody,
  type ProvisionUserInput,
} from './provisioning.schemas.js';
import {
  type ProvisionItem,
  type ProvisionOutcome,
  provisionUsers,
  type RequestContext,
  recordRefusedCall,
} from './provisioning.service.js';

const tags = ['provisioning'];
const auth = { scope: 'provisioning' };

/** Seed 000's item in the core's terms. */
function toItem(body: ProvisionUserInput): ProvisionItem {
  return {
    externalId: body.keycloak_id,
    email: body.email,
    organization: body.engagemx_client_id,
    // A name left out keeps the stored one (a new user's is empty); null empties it.
    ...(body.first_name !== undefined ? { firstName: body.first_name ?? '' } : {}),
    ...(body.last_name !== undefined ? { lastName: body.last_name ?? '' } : {}),
    // API-CONTRACT §3: is_active defaults to true.
    active: body.is_active ?? true,
    ...(body.send_invite !== undefined ? { sendInvite: body.send_invite } : {}),
  };
}

/**
 * The core names fields as the admin API does; seed 000's client knows only its own request's
 * names. Every field an answer names (dry-run changes, a refusal's field errors) goes through here.
 */
const SEED_FIELDS: Record<string, string> = { external_id: 'keycloak_id', organization: 'engagemx_client_id' };

function seedFieldOf(field: string): string {
  const [head = '', ...rest] = field.split('.');
  return [SEED_FIELDS[head] ?? head, ...rest].join('.');
}

function renameChanges(changes: { field: string; from: unknown; to: unknown }[]) {
  return changes.filter((c) => c.field !== 'status').map((c) => ({ ...c, field: seedFieldOf(c.field) }));
}

/** A core refusal with its fields named as in seed 000's request. */
function inSeedTerms(error: AppError): AppError {
  if (!error.errors?.some((e) => seedFieldOf(e.field) !== e.field)) return error;
  const errors = error.errors.map((e) => ({ ...e, field: seedFieldOf(e.field) }));
  // A validation refusal's detail lists its fields: it is written again from the renamed ones.
  if (error.code === 'validation_failed') return provisioningErrors.invalid(errors);
  return new AppError(error.status, error.code, error.message, {
    title: error.title,
    errors,
    ...(error.headers ? { headers: error.headers } : {}),
    cause: error,
  });
}

function message(action: 'created' | 'updated', dryRun: boolean): string {
  return dryRun ? `User would be ${action}` : `User successfully ${action}`;
}

/** The organization code a refused item names, if it names one as text. */
function organizationCodeOf(value: unknown): string | undefined {
  const code = (value as { engagemx_client_id?: unknown } | null)?.engagemx_client_id;
  return typeof code === 'string' ? code : undefined;
}

function contextOf(req: FastifyRequest): RequestContext {
  return { source: 'provisioning_api', ip: req.ip, userAgent: req.headers['user-agent'] ?? null };
}

const validateItem = validatorCompiler({ schema: ProvisionUserBody, httpPart: 'body' } as never) as ((
  value: unknown,
) => boolean) & { errors?: Parameters<typeof fieldErrorsFromValidation>[0] | null };

/** The bulk body is checked as an array here; each item is checked on its own in the handler. */
const bulkValidatorCompiler: FastifySchemaCompiler<unknown> = (route) => {
  if (route.httpPart !== 'body') return validatorCompiler(route as never);
  return (value: unknown) =>
    Array.isArray(value)
      ? { value }
      : {
          error: Object.assign(new Error('body must be array'), {
            validation: [{ instancePath: '', message: 'must be a JSON array of users' }],
            validationContext: 'body',
          }),
        };
};

export const provisioningRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;
  const config = app.config;

  app.post(
    '/api/provisioning/users',
    {
      config: { auth },
      // A refusal of the body or query is still a provisioning call, recorded before it is answered.
      attachValidation: true,
      schema: {
        operationId: 'provisionUser',
        tags,
        description:
          'Creates or updates one user by `keycloak_id` (unique across the installation): 201 `created` or 200 ' +
          '`updated` (also when nothing changes). A platform key may name an organization that does not exist ' +
          'yet (it is created); a key of one organization gets 403 for another organization and 404 for a ' +
          'user of another organization. `?dry_run=true` answers 200 with the same body (`action` `created` or ' +
          '`updated`, `dry_run`, `changes`) and writes nothing.',
        querystring: DryRunQuery,
        body: ProvisionUserBody,
        response: { 200: ProvisionedUserView, 201: ProvisionedUserView },
      },
    },
    async (req, reply) => {
      if (req.validationError) {
        const code = organizationCodeOf(req.body);
        await recordRefusedCall(db, req.actor, normaliseError(req.validationError).error, {
          context: contextOf(req),
          ...(code !== undefined ? { refusedOrganizations: [code] } : {}),
        });
        throw req.validationError;
      }
      const dryRun = req.query.dry_run === true;
      const { results } = await provisionUsers(db, req.actor, [toItem(req.body)], {
        dryRun,
        config,
        context: contextOf(req),
      });
      const r = results[0] as ProvisionOutcome;
      if (!r.ok) throw inSeedTerms(r.error);
      // A dry run creates nothing: 200, as a bulk dry run answers.
      return reply.code(r.action === 'created' && !dryRun ? 201 : 200).send({
        id: r.user.id,
        keycloak_id: r.user.externalId ?? req.body.keycloak_id,
        email: r.user.email,
        first_name: r.user.firstName,
        last_name: r.user.lastName,
        engagemx_client_id: r.user.organizationCode,
        is_active: r.user.active,
        action: r.action,
        message: message(r.action, dryRun),
        ...(req.body.send_invite ? { invited: r.invited } : {}),
        ...(dryRun ? { dry_run: true, changes: renameChanges(r.changes) } : {}),
      });
    },
  );

  app.post(
    '/api/provisioning/users/bulk',
    {
      // An item holding unstorable text, deep nesting or a `__proto__` key fails alone (below).
      config: { auth, bodyItems: (body) => (Array.isArray(body) ? body : undefined) },
      validatorCompiler: bulkValidatorCompiler,
      schema: {
        operationId: 'bulkProvisionUsers',
        tags,
        description:
          'Creates or updates many users by `keycloak_id`. Every item answers on its own: written users in ' +
          '`users`, refused items in `errors` (`index` into the body, `keycloak_id`, `error`, `code`); one bad ' +
          'item never blocks the others. Valid items are written in set-based batches of 1,000 in one ' +
          'transaction. A `keycloak_id` repeated in one body: the first item stands, the later ones answer ' +
          '409 `duplicate_in_request`. More than BULK_MAX_ITEMS items (default 10,000) or a body over ' +
          'BODY_LIMIT (default 10 MiB) → 413; a body that is not an array → 400. `?dry_run=true` answers ' +
          'the same with `changes` and writes nothing.',
        querystring: DryRunQuery,
        body: BulkProvisionBody,
        response: { 200: BulkProvisionView },
      },
    },
    async (req) => {
      const body = req.body as unknown[];
      if (body.length > config.bulkMaxItems) throw provisioningErrors.tooManyItems(config.bulkMaxItems);
      const dryRun = req.query.dry_run === true;
      const items: ProvisionItem[] = [];
      const positions: number[] = [];
      const errors: {
        index: number;
        keycloak_id: string | null;
        error: string;
        code: string;
        status: number;
        fields?: { field: string; message: string }[];
      }[] = [];
      const keycloakIdOf = (v: unknown): string | null => {
        const id = (v as { keycloak_id?: unknown } | null)?.keycloak_id;
        return typeof id === 'string' ? id : null;
      };
      const refuse = (index: number, value: unknown, error: AppError) =>
        errors.push({
          index,
          keycloak_id: keycloakIdOf(value),
          error: error.message,
          code: error.code,
          status: error.status,
          ...(error.errors ? { fields: error.errors } : {}),
        });
      const refused: AppError[] = [];
      const refusedOrganizations: string[] = [];
      body.forEach((value, index) => {
        // Before the schema and before any field is copied: these refuse a whole body elsewhere.
        const unsafe = forbiddenKeyIn(value, { proto: true, constructor: true }) ?? bodyItemProblem(value, 1);
        let error: AppError | undefined;
        if (unsafe) {
          error = provisioningErrors.invalid([{ field: unsafe.field || 'item', message: unsafe.message }]);
        } else if (validateItem(value)) {
          items.push(toItem(value as ProvisionUserInput));
          positions.push(index);
        } else {
          error = provisioningErrors.invalid(fieldErrorsFromValidation(validateItem.errors ?? [], 'body'));
        }
        if (error) {
          refuse(index, value, error);
          refused.push(error);
          const code = organizationCodeOf(value);
          if (code !== undefined) refusedOrganizations.push(code);
        }
      });
      const { results } = await provisionUsers(db, req.actor, items, {
        dryRun,
        config,
        context: contextOf(req),
        refused,
        refusedOrganizations,
      });
      const users = [];
      for (const r of results) {
        const index = positions[r.index] as number;
        if (!r.ok) {
          refuse(index, body[index], inSeedTerms(r.error));
          continue;
        }
        users.push({
          id: r.user.id,
          keycloak_id: r.user.externalId ?? '',
          email: r.user.email,
          action: r.action,
          message: message(r.action, dryRun),
          ...((items[r.index] as ProvisionItem).sendInvite ? { invited: r.invited } : {}),
          ...(dryRun ? { changes: renameChanges(r.changes) } : {}),
        });
      }
      errors.sort((a, b) => a.index - b.index);
      return {
        success_count: users.length,
        error_count: errors.length,
        users,
        errors,
        ...(dryRun ? { dry_run: true } : {}),
      };
    },
  );

  app.get(
    '/api/provisioning/users/:keycloak_id',
    {
      config: { auth },
      schema: {
        operationId: 'getProvisionedUser',
        tags,
        description:
          "One user by `keycloak_id`; 404 when absent or in another organization than the key's. `is_active` is " +
          'false for a deactivated user and for every user of a deactivated organization.',
        params: KeycloakIdParams,
        response: { 200: ProvisionedUserDetail },
      },
    },
    async (req) => {
      const user = await findProvisionedUser(db, req.actor, { externalId: req.params.keycloak_id });
      if (!user) throw provisioningErrors.userNotFound(req.params.keycloak_id);
      return {
        id: user.id as string,
        keycloak_id: user.externalId as string,
        email: user.email,
        first_name: user.firstName,
        last_name: user.lastName,
        engagemx_client_id: user.organizationCode,
        is_active: user.active,
        created_at: (user.createdAt as Date).toISOString(),
        updated_at: (user.updatedAt as Date).toISOString(),
      };
    },
  );

  app.put(
    '/api/provisioning/users/:keycloak_id/deactivate',
    {
      config: { auth },
      schema: {
        operationId: 'deactivateProvisionedUser',
        tags,
        description:
          'Deactivates a user and ends their sessions. Idempotent: an already deactivated user answers the ' +
          "same 200. 404 when absent or in another organization than the key's. No body is needed.",
        params: KeycloakIdParams,
        response: { 200: DeactivationView },
      },
    },
    async (req) => {
      const { user, at } = await deactivateUser(
        db,
        req.actor,
        { externalId: req.params.keycloak_id },
        { context: contextOf(req) },
      );
      return {
        message: 'User successfully deactivated',
        action: 'deactivated' as const,
        timestamp: at.toISOString(),
        user: { id: user.id as string, email: user.email, is_active: user.active },
      };
    },
  );

  app.get(
    '/api/provisioning/users',
    {
      config: { auth },
      schema: {
        operationId: 'listProvisionedUsers',
        tags,
        description:
          "Every user of one organization (`client_id` = its code), oldest first. For a platform-wide key a code no organization has lists no users (as seed 000's filter by client); for a key scoped to one organization any other code, existing or not, answers 404 `client_not_found`, so the answer tells nothing of other organizations. `is_active` is false for every user of a deactivated organization.",
        querystring: ListByClientQuery,
        response: { 200: ClientUsersView },
      },
    },
    async (req) => {
      const list = await listProvisionedUsers(db, req.actor, req.query.client_id);
      return {
        client_id: req.query.client_id,
        count: list.length,
        users: list.map((u) => ({
          id: u.id as string,
          keycloak_id: u.externalId,
          email: u.email,
          first_name: u.firstName,
          last_name: u.lastName,
          engagemx_client_id: u.organizationCode,
          is_active: u.active,
        })),
      };
    },
  );
};
