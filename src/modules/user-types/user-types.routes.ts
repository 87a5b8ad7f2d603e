import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { isUuid } from '../../platform/db/columns.js';
import { type Actor, organizationScopeOf, requireUser } from '../../platform/http/auth.js';
import { refuseOrganizationId } from '../../platform/http/organization-id-field.js';
import { cursorId, toPage } from '../../platform/http/pagination.js';
import { PARTIAL_UPDATE_RULES, partialUpdate } from '../../platform/http/partial-update.js';
import { findOrganizationByCode, listingScope } from '../organizations/organizations.queries.js';
import { assertMayManageUser } from '../rbac/delegation.js';
import { findUserById } from '../users/users.queries.js';
import { assertNotOwnAccount } from '../users/users.service.js';
import { userTypeErrors } from './user-types.errors.js';
import {
  findUserTypeByPlural,
  listTypedUsers,
  listUserTypes,
  type UserTypeWithOrganization,
} from './user-types.queries.js';
import {
  CreateTypedUserBody,
  CreateUserTypeBody,
  ListTypedUsersQuery,
  ListUserTypesQuery,
  PluralParams,
  TypedUserPage,
  TypedUserParams,
  TypedUserQuery,
  TypedUserView,
  UpdateTypedUserBody,
  UpdateUserTypeBody,
  UserTypeIdParams,
  UserTypePage,
  UserTypeView,
} from './user-types.schemas.js';
import {
  createTypedUser,
  createUserType,
  deleteTypedUser,
  deleteUserType,
  findTypedUser,
  findVisibleUserType,
  isOfType,
  toTypedUserView,
  updateTypedUser,
  updateUserType,
} from './user-types.service.js';

function toUserTypeView(t: UserTypeWithOrganization) {
  return {
    id: t.id,
    organization: t.organizationCode,
    organization_id: t.organizationId,
    code: t.code,
    plural: t.plural,
    label: t.label,
    schema: t.schema,
    created_at: t.createdAt.toISOString(),
    updated_at: t.updatedAt.toISOString(),
  };
}

/**
 * `/api/v1/users/<uuid>` belongs to the users module and `/api/v1/users/<plural>` to this one. The
 * router keeps static paths (profile, login, …) first; between the two parametric routes this
 * constraint decides by the shape of the segment, so neither module needs to know the other.
 */
const USER_REF = 'userRef';
const USERS_PREFIX = '/api/v1/users/';

function userRefOf(req: { url?: string }): string {
  const url = req.url ?? '';
  if (!url.startsWith(USERS_PREFIX)) return 'other';
  const segment = url.slice(USERS_PREFIX.length).split(/[/?]/, 1)[0] ?? '';
  return isUuid(segment) ? 'id' : 'plural';
}

const tags = ['user-types'];
const typedTags = ['typed-users'];

export const userTypesRoutes: FastifyPluginAsyncTypebox = async (app) => {
  const db = app.database.db;
  if (!app.hasConstraintStrategy(USER_REF)) {
    // Through allowedMethods, so that a 405's Allow knows POST /api/v1/users/<uuid> is not the typed route's.
    app.allowedMethods.addConstraintStrategy({
      name: USER_REF,
      storage() {
        const handlers = new Map<string, unknown>();
        return {
          get: (value: string) => (handlers.get(value) ?? null) as never,
          set: (value: string, store: unknown) => {
            handlers.set(value, store);
          },
        };
      },
      deriveConstraint: (req: { url?: string }) => userRefOf(req),
      mustMatchWhenDerived: false,
    });
  }
  const plural = { constraints: { [USER_REF]: 'plural' } };

  // --- administration of the types

  const manage = { auth: { permission: 'user_types.manage' } } as const;

  async function userTypeView(id: string, scopeOrganizationId: string | undefined) {
    const type = await findVisibleUserType(db, id, scopeOrganizationId);
    if (!type) throw userTypeErrors.notFound(id);
    return toUserTypeView(type);
  }

  app.get(
    '/api/v1/user-types',
    {
      config: manage,
      schema: {
        operationId: 'listUserTypes',
        tags,
        description: 'User types, newest first; `organization` narrows to that organization’s and the global ones.',
        querystring: ListUserTypesQuery,
        response: { 200: UserTypePage },
      },
    },
    async (req) => {
      const limit = req.query.limit ?? 50;
      const organizationId = await listingScope(db, req.actor, req.query.organization);
      if (organizationId === null) return { results: [], next: null };
      const rows = await listUserTypes(db, { organizationId, limit, cursor: req.query.cursor });
      const page = toPage(rows, limit, (r) => [r.id]);
      return { results: page.results.map(toUserTypeView), next: page.next };
    },
  );

  app.post(
    '/api/v1/user-types',
    {
      config: manage,
      preValidation: refuseOrganizationId,
      schema: {
        operationId: 'createUserType',
        tags,
        description:
          'Creates a user type; its users are served at once under `/api/v1/users/<plural>/`. Reserved path words ' +
          '(profile, sessions, login, …) are refused as plurals.',
        body: CreateUserTypeBody,
        response: { 201: UserTypeView },
      },
    },
    async (req, reply) =>
      reply.code(201).send(toUserTypeView(await createUserType(db, req.body, organizationScopeOf(req.actor)))),
  );

  app.get(
    '/api/v1/user-types/:id',
    {
      config: manage,
      schema: { operationId: 'getUserType', tags, params: UserTypeIdParams, response: { 200: UserTypeView } },
    },
    async (req) => userTypeView(req.params.id, organizationScopeOf(req.actor)),
  );

  app.patch(
    '/api/v1/user-types/:id',
    {
      config: manage,
      schema: {
        operationId: 'updateUserType',
        tags,
        description: PARTIAL_UPDATE_RULES,
        params: UserTypeIdParams,
        body: UpdateUserTypeBody,
        response: { 200: UserTypeView },
      },
      ...partialUpdate({
        params: UserTypeIdParams,
        body: UpdateUserTypeBody,
        view: UserTypeView,
        current: (req) => userTypeView(req.params.id, organizationScopeOf(req.actor)),
      }),
    },
    async (req) => toUserTypeView(await updateUserType(db, req.params.id, req.body, organizationScopeOf(req.actor))),
  );

  app.delete(
    '/api/v1/user-types/:id',
    {
      config: manage,
      schema: {
        operationId: 'deleteUserType',
        tags,
        description:
          'Deletes a type no user holds; while users hold it, 409 `user_type_in_use` (give them another type or ' +
          'none, or delete them, first).',
        params: UserTypeIdParams,
      },
    },
    async (req, reply) => {
      await deleteUserType(db, req.params.id, organizationScopeOf(req.actor));
      return reply.code(204).send();
    },
  );

  // --- users of a type, resolved from the table at request time

  async function typeFor(
    actor: Actor,
    pluralName: string,
    organizationCode?: string,
    missing: (plural: string) => Error = userTypeErrors.notFound,
  ) {
    const user = requireUser(actor);
    let organizationId = user.organizationId;
    if (organizationCode !== undefined && organizationCode !== user.organizationCode && user.isSuperuser) {
      const org = await findOrganizationByCode(db, organizationCode);
      if (!org) throw userTypeErrors.organizationNotFound(organizationCode);
      organizationId = org.id;
    }
    const type = await findUserTypeByPlural(db, organizationId, pluralName);
    if (!type) throw missing(pluralName);
    return type;
  }

  app.get(
    '/api/v1/users/:plural',
    {
      ...plural,
      config: { auth: { permission: 'users.view' } },
      schema: {
        operationId: 'listTypedUsers',
        tags: typedTags,
        description:
          'Users of one type (`students`, `staff`, `admins`, … as defined under /api/v1/user-types/), newest first. ' +
          '`profile.<key>=<value>` filters on profile data, the value read as the type the schema gives the key ' +
          '(the non-null one of a list; `null` matches a stored null where the type allows it, but a string is ' +
          'taken as written). A segment that is neither a plural nor a user id ' +
          'answers 404 `user_not_found`.',
        params: PluralParams,
        querystring: ListTypedUsersQuery,
        response: { 200: TypedUserPage },
      },
    },
    async (req) => {
      const type = await typeFor(
        req.actor,
        req.params.plural,
        req.query.organization,
        userTypeErrors.userOrTypeNotFound,
      );
      const limit = req.query.limit ?? 50;
      const actor = requireUser(req.actor);
      // Another organization is outside a non-superuser's reach: its users simply are not listed.
      if (!actor.isSuperuser && req.query.organization && req.query.organization !== actor.organizationCode) {
        return { results: [], next: null };
      }
      // Without a prototype, so that every key is a key like any other: on a plain object,
      // `profile.__proto__=x` would set nothing and the filter would match every user, and a key
      // named `constructor` would find Object's own member among the schema's properties.
      const profile: Record<string, unknown> = Object.create(null);
      const properties = (type.schema.properties ?? {}) as Record<string, { type?: unknown }>;
      for (const [key, raw] of Object.entries(req.query as Record<string, unknown>)) {
        if (!key.startsWith('profile.')) continue;
        const name = key.slice('profile.'.length);
        const value = Array.isArray(raw) ? raw[0] : raw;
        if (!name || typeof value !== 'string') throw userTypeErrors.invalidFilter(key, 'Give one value.');
        const declared = Object.hasOwn(properties, name) ? properties[name]?.type : undefined;
        profile[name] = filterValue(key, value, declared);
      }
      const afterId = req.query.cursor ? cursorId(req.query.cursor) : undefined;
      let organizationId = organizationScopeOf(req.actor);
      if (type.organizationId) organizationId = type.organizationId;
      else if (req.query.organization && organizationId === undefined) {
        organizationId = (await findOrganizationByCode(db, req.query.organization))?.id;
      }
      const rows = await listTypedUsers(db, { code: type.code, organizationId, profile, limit, cursorId: afterId });
      const page = toPage(rows, limit, (r) => [r.id]);
      return { results: page.results.map(toTypedUserView), next: page.next };
    },
  );

  /**
   * POST on /api/v1/users/<segment>: the router sends every segment that is not a user id here, but
   * only a plural is a collection that takes POST. Anything else names what /api/v1/users/{id}/
   * would serve, which takes no POST: 405 as for a user id, rather than 404 user_type_not_found.
   * Run before the body is validated, so the answer does not hang on the body; and after the
   * credential and permission checks (onRequest), so whether a word is a plural is told only to
   * callers who may create users, and only for the types they could create (their organization's
   * and global ones; superusers also in the organization the body names).
   */
  /** The type of each create request, as refuseSegmentsThatAreNoPlural found it. */
  const typeOfCreate = new WeakMap<FastifyRequest, UserTypeWithOrganization>();

  async function refuseSegmentsThatAreNoPlural(req: FastifyRequest) {
    const { plural: segment } = req.params as { plural: string };
    const body = req.body as { organization?: unknown } | null | undefined;
    const named = typeof body?.organization === 'string' ? body.organization : undefined;
    const notAPlural = (): Error => app.methodNotAllowed(req, { [USER_REF]: 'id' });
    // The type found is the one the user is created with: read once per request. Body validation
    // coerces nothing, so the `organization` read here is the one the handler would see.
    typeOfCreate.set(req, await typeFor(req.actor, segment, named, notAPlural));
  }

  app.post(
    '/api/v1/users/:plural',
    {
      ...plural,
      config: { auth: { permission: 'users.update' } },
      preValidation: [refuseOrganizationId, refuseSegmentsThatAreNoPlural],
      schema: {
        operationId: 'createTypedUser',
        tags: typedTags,
        description:
          'Creates a user of the type; `profile` must match the type’s JSON Schema. A field this body does not ' +
          'declare (is_staff, is_superuser, user_type, attributes, status, …) answers 400 naming it. A segment that is no user ' +
          'type’s plural (in the organization the user would join) answers 405 as `/api/v1/users/{id}/` does, ' +
          'after the credential and `users.update` are checked, so only callers who may create users learn which ' +
          'plurals exist; a user id answers 405 to anyone.',
        params: PluralParams,
        body: CreateTypedUserBody,
        response: { 201: TypedUserView },
      },
    },
    async (req, reply) => {
      const type = typeOfCreate.get(req);
      if (!type) throw new Error('createTypedUser: no user type resolved before validation');
      const user = await createTypedUser(db, requireUser(req.actor), type, req.body);
      return reply.code(201).send(toTypedUserView(user));
    },
  );

  async function typedUser(actor: Actor, params: { plural: string; id: string }, organizationCode?: string) {
    const scope = organizationScopeOf(actor);
    if (scope !== undefined) {
      // Another organization's user is not there for them, whatever its id.
      if (organizationCode !== undefined && organizationCode !== requireUser(actor).organizationCode) {
        throw userTypeErrors.userNotFound(params.id);
      }
      const type = await typeFor(actor, params.plural);
      const user = await findTypedUser(db, type, params.id, scope);
      if (!user) throw userTypeErrors.userNotFound(params.id);
      return { type, user };
    }
    // A superuser reaches every organization's users: the plural is resolved in the user's own
    // organization (where the user's type lives), not in the superuser's.
    const user = await findUserById(db, params.id);
    if (!user || (organizationCode !== undefined && user.organizationCode !== organizationCode)) {
      throw userTypeErrors.userNotFound(params.id);
    }
    const type = await findUserTypeByPlural(db, user.organizationId, params.plural);
    if (!type) throw userTypeErrors.notFound(params.plural);
    if (!isOfType(user, type)) throw userTypeErrors.userNotFound(params.id);
    return { type, user };
  }
  const organizationOf = (req: { query: unknown }) => (req.query as { organization?: string }).organization;

  app.get(
    '/api/v1/users/:plural/:id',
    {
      ...plural,
      config: { auth: { permission: 'users.view' } },
      schema: {
        operationId: 'getTypedUser',
        tags: typedTags,
        params: TypedUserParams,
        querystring: TypedUserQuery,
        response: { 200: TypedUserView },
      },
    },
    async (req) => toTypedUserView((await typedUser(req.actor, req.params, req.query.organization)).user),
  );

  app.patch(
    '/api/v1/users/:plural/:id',
    {
      ...plural,
      config: { auth: { permission: 'users.update' } },
      schema: {
        operationId: 'updateTypedUser',
        tags: typedTags,
        description:
          'Partial update; profile keys are merged (null removes one) and the result must match the schema. ' +
          PARTIAL_UPDATE_RULES,
        params: TypedUserParams,
        querystring: TypedUserQuery,
        body: UpdateTypedUserBody,
        response: { 200: TypedUserView },
      },
      ...partialUpdate({
        params: TypedUserParams,
        body: UpdateTypedUserBody,
        view: TypedUserView,
        current: async (req) => toTypedUserView((await typedUser(req.actor, req.params, organizationOf(req))).user),
      }),
    },
    async (req) => {
      const { user } = await typedUser(req.actor, req.params, req.query.organization);
      await assertMayManageUser(db, req.actor, user);
      assertNotOwnAccount(req.actor, user, req.body);
      return toTypedUserView(await updateTypedUser(db, req.actor, user, req.body));
    },
  );

  app.delete(
    '/api/v1/users/:plural/:id',
    {
      ...plural,
      // Deleting, as on /api/v1/users/{id}/, needs users.delete.
      config: { auth: { permission: 'users.delete' } },
      schema: { operationId: 'deleteTypedUser', tags: typedTags, params: TypedUserParams, querystring: TypedUserQuery },
    },
    async (req, reply) => {
      const { user } = await typedUser(req.actor, req.params, req.query.organization);
      await assertMayManageUser(db, req.actor, user);
      assertNotOwnAccount(req.actor, user, 'delete');
      await deleteTypedUser(db, user, req.actor);
      return reply.code(204).send();
    },
  );
};

/**
 * A query-string value as the JSON type the schema declares for that key, so containment can match
 * it. A list of types (`["number", "null"]`) is read by its one non-null member; where it allows
 * null, `null` matches a stored null, except for strings, which are taken as written. A list of
 * several other types (but numbers) leaves the value as written.
 */
function filterValue(field: string, value: string, type: unknown): unknown {
  const types =
    typeof type === 'string'
      ? [type]
      : Array.isArray(type)
        ? type.filter((t): t is string => typeof t === 'string')
        : [];
  const nullable = types.includes('null');
  const others = types.filter((t) => t !== 'null');
  if (nullable && value === 'null' && !others.includes('string')) return null;
  // ["integer", "number"] is any number.
  const declared =
    others.length === 1 ? others[0] : others.length > 1 && others.every(isNumeric) ? 'number' : undefined;
  const orNull = nullable ? ' or null' : '';
  if (declared === 'integer' || declared === 'number') {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || (declared === 'integer' && !Number.isInteger(n))) {
      throw userTypeErrors.invalidFilter(
        field,
        `Expected ${declared === 'integer' ? 'an integer' : 'a number'}${orNull}.`,
      );
    }
    return n;
  }
  if (declared === 'boolean') {
    if (value !== 'true' && value !== 'false')
      throw userTypeErrors.invalidFilter(field, `Expected true or false${orNull}.`);
    return value === 'true';
  }
  return value;
}

const isNumeric = (type: string) => type === 'integer' || type === 'number';
