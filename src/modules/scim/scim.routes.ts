import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Actor } from '../../platform/http/auth.js';
import { type AppError, logFailure } from '../../platform/http/errors.js';
import { jsonBodyParser } from '../../platform/http/json-body.js';
import { scimBulk } from './scim.bulk.js';
import { listResponse, MAX_PAGE, resourceTypes, schemas, serviceProviderConfig } from './scim.discovery.js';
import { requireSchema, ScimError, scimErrors, toScimError } from './scim.errors.js';
import { ENTERPRISE_URN, filterPaths, normalisePath, parseFilter } from './scim.filter.js';
import {
  createScimGroup,
  deleteScimGroup,
  findScimGroup,
  groupVersion,
  listScimGroups,
  patchScimGroup,
  replaceScimGroup,
  toScimGroup,
} from './scim.groups.js';
import { readPatchBody } from './scim.patch.js';
import {
  listResponseOf,
  NOT_MODIFIED,
  SCIM_BODY_TYPES,
  ScimBulkResponse,
  ScimGroup,
  ScimResourceType,
  ScimSchema,
  ScimServiceProviderConfig,
  ScimUser,
  scimAnswer,
} from './scim.schemas.js';
import { userVersion } from './scim.user-mapping.js';
import type { WriteContext } from './scim.user-writes.js';
import {
  createScimUser,
  deleteScimUser,
  findScimUser,
  type ListQuery,
  listScimUsers,
  namesVersion,
  type Preconditions,
  patchScimUser,
  replaceScimUser,
  scimUserResource,
  scimUserResources,
} from './scim.users.js';

/**
 * SCIM 2.0 (RFC 7644) under /scim/v2, in its own Fastify scope: bodies as `application/scim+json`
 * (plain JSON too), answers as `application/scim+json`, and every refusal — authentication
 * included — in the SCIM error schema (§3.12) instead of problem+json.
 *
 * Authentication: `Authorization: Bearer <API key>` with the `scim` scope. SCIM acts within one
 * organization, the key's: a platform-wide key (no organization) and signed-in users are refused
 * with 403, since nothing would say which organization's users the client means.
 */

export const SCIM_CONTENT_TYPE = 'application/scim+json; charset=utf-8';

/** Any refusal under /scim/v2, in the SCIM error schema (RFC 7644 §3.12). */
export function sendScimError(request: FastifyRequest, reply: FastifyReply, err: unknown): FastifyReply {
  const { status, document, error, unexpected } = toScimError(err);
  logFailure(request, err, { error, unexpected });
  // A 503's Retry-After, a 429's; the challenge is SCIM's own (below).
  if (error.headers) reply.headers(error.headers);
  if (status === 401) reply.header('www-authenticate', 'Bearer realm="scim"');
  return reply.code(status).type(SCIM_CONTENT_TYPE).send(document);
}

/**
 * A refusal written before any route runs (Node's HTTP parser refused the request, see
 * answerClientError) of a request under /scim/v2, in the SCIM error schema like every other.
 */
export function scimDocumentOf(error: AppError): { contentType: string; body: string } {
  return { contentType: SCIM_CONTENT_TYPE, body: JSON.stringify(toScimError(error).document) };
}

const SCIM_AUTH = { auth: { scope: 'scim' } } as const;
const TAGS = ['scim'];

const looseObject = { type: 'object', additionalProperties: true } as const;
const ListQueryString = {
  type: 'object',
  properties: {
    filter: { type: 'string', description: 'RFC 7644 §3.4.2.2 filter, e.g. userName eq "ada@example.com"' },
    startIndex: { type: 'string', description: '1-based index of the first result (default 1)' },
    count: { type: 'string', description: `Results per page (default 100, at most ${MAX_PAGE})` },
    sortBy: { type: 'string' },
    sortOrder: { type: 'string', enum: ['ascending', 'descending'] },
    attributes: {
      type: 'string',
      description: 'RFC 7644 §3.9: the attributes to return, comma-separated (id and schemas always are)',
    },
    excludedAttributes: { type: 'string', description: 'RFC 7644 §3.9: attributes to leave out, comma-separated' },
  },
} as const;
/**
 * One resource, read or written: only the projection applies (RFC 7644 §3.4.2.5, and §3.9 for the
 * resource a POST, PUT or PATCH answers); paging and filters are the lists'.
 */
const ResourceQueryString = {
  type: 'object',
  properties: {
    attributes: ListQueryString.properties.attributes,
    excludedAttributes: ListQueryString.properties.excludedAttributes,
  },
} as const;
const USER_LIST = listResponseOf(ScimUser);
const GROUP_LIST = listResponseOf(ScimGroup);
const IdParams = { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] } as const;

/** The organization SCIM acts in: the API key's own. */
export function scimOrganizationOf(actor: Actor): string {
  if (actor.kind === 'api_key') {
    if (actor.organizationId === null) throw scimErrors.platformKey();
    return actor.organizationId;
  }
  throw new ScimError(403, undefined, 'SCIM needs an API key with the scim scope.', 'permission_denied');
}

function baseUrlOf(app: FastifyInstance): string {
  return `${app.config.publicUrl.replace(/\/$/, '')}/scim/v2`;
}

/** Where list parameters come from: a GET's query string or a SearchRequest body (RFC 7644 §3.4.3). */
type ParameterSource = 'query' | 'body';

/**
 * An integer list parameter: a JSON number in a SearchRequest body, decimal digits in a query string
 * (where every value is text). Number() alone would read null, true, [2], " " and "0x10" as
 * numbers, and page by a value the client never meant; a body that quotes the number, or a query
 * string that gives it empty, is as likely a client's mistake, and is refused rather than guessed at.
 */
function intParam(raw: unknown, name: string, fallback: number, from: ParameterSource): number {
  // RFC 7643 §2.5: null is the same as not given; a query string cannot say null.
  if (raw === undefined || (from === 'body' && raw === null)) return fallback;
  if (from === 'body') {
    if (typeof raw === 'number' && Number.isInteger(raw)) return raw;
    throw scimErrors.invalidValue(`"${name}" must be a JSON number holding an integer.`);
  }
  if (typeof raw === 'string' && /^-?[0-9]+$/.test(raw)) return Number(raw);
  throw scimErrors.invalidValue(`"${name}" must be an integer in decimal digits.`);
}

/**
 * Past any real list, and within the database's OFFSET range: a larger startIndex names the same
 * empty page, and would otherwise reach the database as a number it refuses.
 */
const MAX_START_INDEX = 2 ** 31 - 1;

/** Reads list parameters (RFC 7644 §3.4.2): startIndex below 1 is 1, count below 0 is 0, above the maximum the maximum. */
export function listQueryOf(
  q: Record<string, unknown>,
  from: ParameterSource = 'query',
): ListQuery & { attributes?: string; excludedAttributes?: string } {
  const sortOrder = q.sortOrder;
  if (sortOrder !== undefined && sortOrder !== 'ascending' && sortOrder !== 'descending') {
    throw scimErrors.invalidValue('"sortOrder" is ascending or descending.');
  }
  const text = (name: string) => {
    const v = q[name];
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw scimErrors.invalidValue(`"${name}" must be a string.`);
    return v;
  };
  return {
    filter: text('filter'),
    startIndex: Math.min(MAX_START_INDEX, Math.max(1, intParam(q.startIndex, 'startIndex', 1, from))),
    count: Math.min(MAX_PAGE, Math.max(0, intParam(q.count, 'count', 100, from))),
    sortBy: text('sortBy'),
    sortOrder: sortOrder as ListQuery['sortOrder'],
    attributes: text('attributes'),
    excludedAttributes: text('excludedAttributes'),
  };
}

/**
 * Named attributes as a tree: an attribute maps to `true` (the whole of it) or to the
 * sub-attributes named under it (`name.givenName`, `members.value`).
 */
type AttributeTree = Map<string, AttributeTree | true>;

const ENTERPRISE_KEY = ENTERPRISE_URN.toLowerCase();

/** The steps of one attribute path, lower-cased; the enterprise extension is one top-level step. */
function attributeSteps(raw: string): string[] {
  const p = normalisePath(raw.trim());
  // The URN holds a dot ("2.0"): the extension's own name and its sub-attributes are split by hand.
  if (p === ENTERPRISE_KEY) return [p];
  if (p.startsWith('enterprise:')) return [ENTERPRISE_KEY, ...p.slice('enterprise:'.length).split('.')];
  return p.split('.');
}

function attributeTree(list: string): AttributeTree {
  const root: AttributeTree = new Map();
  for (const raw of list.split(',')) {
    const steps = attributeSteps(raw).filter(Boolean);
    let node = root;
    steps.forEach((step, i) => {
      const existing = node.get(step);
      if (existing === true) return;
      if (i === steps.length - 1) {
        node.set(step, true);
        return;
      }
      const next: AttributeTree = existing ?? new Map();
      node.set(step, next);
      node = next;
    });
  }
  return root;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const isEmpty = (value: unknown) =>
  (Array.isArray(value) && value.length === 0) || (isPlainObject(value) && Object.keys(value).length === 0);

/**
 * A value filtered by the named (sub-)attributes: only those (`keep`) or all but those. Each element
 * of a multi-valued attribute is filtered alike; a parent left with no value is unassigned, and left
 * out rather than shown empty.
 */
function filterAttributes(value: unknown, tree: AttributeTree, keep: boolean): unknown {
  if (Array.isArray(value)) return value.map((v) => filterAttributes(v, tree, keep)).filter((v) => !isEmpty(v));
  if (!isPlainObject(value)) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const sub = tree.get(k.toLowerCase());
    if (sub === undefined) {
      if (!keep) out[k] = v;
    } else if (sub === true) {
      if (keep) out[k] = v;
    } else {
      const filtered = filterAttributes(v, sub, keep);
      if (!isEmpty(filtered)) out[k] = filtered;
    }
  }
  return out;
}

/** What attributes / excludedAttributes leave of a resource. */
export interface Projection {
  /** Whether any of the attribute is returned (so whether it is worth reading at all). */
  has(name: string): boolean;
  apply(resource: Record<string, unknown>): Record<string, unknown>;
}

/** id and schemas are returned always (RFC 7643 §2.4, §3), whatever the request names. */
const ALWAYS = ['id', 'schemas'];

/**
 * attributes / excludedAttributes (RFC 7644 §3.4.2.5, §3.9). Either names top-level attributes or
 * sub-attributes (`name.givenName`, `members.value`, `urn:…:enterprise:2.0:User:manager.value`);
 * on a multi-valued attribute a sub-attribute applies to each value. id and schemas always stay.
 */
export function projection(attributes?: string, excluded?: string): Projection {
  if (attributes) {
    const wanted = attributeTree(attributes);
    for (const name of ALWAYS) wanted.set(name, true);
    return {
      has: (name) => wanted.has(name.toLowerCase()),
      apply: (resource) => filterAttributes(resource, wanted, true) as Record<string, unknown>,
    };
  }
  if (excluded) {
    const dropped = attributeTree(excluded);
    for (const name of ALWAYS) dropped.delete(name);
    return {
      has: (name) => dropped.get(name.toLowerCase()) !== true,
      apply: (resource) => filterAttributes(resource, dropped, false) as Record<string, unknown>,
    };
  }
  return { has: () => true, apply: (resource) => resource };
}

/** attributes / excludedAttributes of a request on one resource, read before anything is written. */
function projectionOf(request: FastifyRequest): Projection {
  const q = listQueryOf((request.query ?? {}) as Record<string, unknown>);
  return projection(q.attributes, q.excludedAttributes);
}

/**
 * A written resource, shaped by the request's projection (RFC 7644 §3.9); ETag and Location come
 * from the whole resource, whatever the body leaves out.
 */
function sendResource(reply: FastifyReply, status: number, resource: Record<string, unknown>, keep: Projection) {
  const meta = resource.meta as { version: string; location: string };
  reply.header('etag', meta.version);
  if (status === 201) reply.header('location', meta.location);
  return reply.code(status).send(keep.apply(resource));
}

function headerOf(request: FastifyRequest, name: 'if-match' | 'if-none-match'): string | undefined {
  const v = request.headers[name];
  return Array.isArray(v) ? v.join(',') : v;
}

function preconditionsOf(request: FastifyRequest): Preconditions {
  return { ifMatch: headerOf(request, 'if-match'), ifNoneMatch: headerOf(request, 'if-none-match') };
}

/**
 * The conditional headers of a GET (RFC 7232 §6): If-Match without the current version answers
 * 412; then If-None-Match with it answers 304 (true here: the caller answers it).
 */
function notModified(request: FastifyRequest, version: string): boolean {
  const ifMatch = headerOf(request, 'if-match');
  if (ifMatch !== undefined && !namesVersion(ifMatch, version)) throw scimErrors.preconditionFailed();
  const ifNoneMatch = headerOf(request, 'if-none-match');
  return ifNoneMatch !== undefined && ifNoneMatch !== '' && namesVersion(ifNoneMatch, version);
}

const SCIM_METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/**
 * Collects the methods each SCIM URL takes; the returned function then answers every other method
 * on those URLs with 405 and an Allow header (RFC 9110 §15.5.6), in the SCIM error schema, where
 * Fastify alone would answer 404 as for an unknown URL. Hidden from OpenAPI: they are not operations.
 */
function answerOtherMethodsWith405(app: FastifyInstance): () => void {
  const taken = new Map<string, Set<string>>();
  let collecting = true;
  app.addHook('onRoute', (route) => {
    if (!collecting) return;
    const methods = taken.get(route.routePath) ?? new Set<string>();
    for (const method of [route.method].flat()) methods.add(method);
    taken.set(route.routePath, methods);
  });
  return () => {
    collecting = false;
    for (const [url, methods] of taken) {
      const others = SCIM_METHODS.filter((m) => !methods.has(m));
      if (others.length === 0) continue;
      const allow = SCIM_METHODS.filter((m) => methods.has(m));
      app.route({
        method: others,
        url,
        config: SCIM_AUTH,
        schema: { hide: true },
        handler: async (request, reply) => {
          reply.header('allow', [...allow, ...(methods.has('HEAD') ? ['HEAD'] : [])].join(', '));
          return sendScimError(
            request,
            reply,
            new ScimError(
              405,
              undefined,
              `${request.method} is not allowed on ${request.url.split('?')[0]}; it takes ${allow.join(', ')}.`,
              'method_not_allowed',
            ),
          );
        },
      });
    }
  };
}

export async function scimRoutes(app: FastifyInstance): Promise<void> {
  const db = app.database.db;
  const baseUrl = baseUrlOf(app);
  const addMethodNotAllowed = answerOtherMethodsWith405(app);

  app.addContentTypeParser(
    'application/scim+json',
    { parseAs: 'buffer', bodyLimit: app.config.bodyLimitBytes },
    jsonBodyParser(app, 'error', 'ignore'),
  );
  app.setErrorHandler((err, request, reply) => sendScimError(request, reply, err));
  app.setNotFoundHandler((request, reply) =>
    reply
      .code(404)
      .type(SCIM_CONTENT_TYPE)
      .send(toScimError(scimErrors.notFound('Endpoint', `${request.method} ${request.url.split('?')[0]}`)).document),
  );
  app.addHook('onSend', async (_request, reply, payload) => {
    const type = reply.getHeader('content-type');
    if (typeof type === 'string' && type.startsWith('application/json'))
      reply.header('content-type', SCIM_CONTENT_TYPE);
    return payload;
  });

  const writeContext = (request: FastifyRequest): WriteContext => ({
    db,
    actor: request.actor,
    organizationId: scimOrganizationOf(request.actor),
    ip: request.ip,
    userAgent: request.headers['user-agent'] ?? null,
  });

  // Discovery (RFC 7644 §4). Also behind the key: they describe this installation.
  const refuseDiscoveryFilter = (request: FastifyRequest) => {
    if ((request.query as Record<string, unknown> | undefined)?.filter !== undefined)
      throw scimErrors.discoveryFilter();
  };
  app.get(
    '/ServiceProviderConfig',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimServiceProviderConfig',
        documentedResponse: { 200: scimAnswer('The service provider configuration.', ScimServiceProviderConfig) },
        tags: TAGS,
        description: 'RFC 7644 §5 service provider configuration.',
      },
    },
    async (request) => {
      scimOrganizationOf(request.actor);
      refuseDiscoveryFilter(request);
      return serviceProviderConfig(baseUrl, app.config.bodyLimitBytes);
    },
  );
  // The two discovery catalogs: a list of all, and one by id (404 naming the kind).
  const catalog = (
    path: string,
    kind: 'ResourceType' | 'Schema',
    operations: { list: string; get: string; description: string },
    item: object,
    all: () => { id: string }[],
  ) => {
    app.get(
      path,
      {
        config: SCIM_AUTH,
        schema: {
          operationId: operations.list,
          tags: TAGS,
          description: operations.description,
          documentedResponse: { 200: scimAnswer(`The ${kind}s.`, listResponseOf(item)) },
        },
      },
      async (request) => {
        scimOrganizationOf(request.actor);
        refuseDiscoveryFilter(request);
        const items = all();
        return listResponse(items, items.length, 1);
      },
    );
    app.get(
      `${path}/:id`,
      {
        config: SCIM_AUTH,
        schema: {
          operationId: operations.get,
          tags: TAGS,
          params: IdParams,
          documentedResponse: { 200: scimAnswer(`The ${kind}.`, item) },
        },
      },
      async (request) => {
        scimOrganizationOf(request.actor);
        const { id } = request.params as { id: string };
        const found = all().find((item) => item.id === id);
        if (!found) throw scimErrors.notFound(kind, id);
        return found;
      },
    );
  };
  catalog(
    '/ResourceTypes',
    'ResourceType',
    { list: 'scimListResourceTypes', get: 'scimGetResourceType', description: 'User and Group.' },
    ScimResourceType,
    () => resourceTypes(baseUrl),
  );
  catalog(
    '/Schemas',
    'Schema',
    { list: 'scimListSchemas', get: 'scimGetSchema', description: 'User, EnterpriseUser and Group schemas.' },
    ScimSchema,
    () => schemas(baseUrl),
  );

  // Users
  const listUsers = async (request: FastifyRequest, q: Record<string, unknown>, from: ParameterSource) => {
    const organizationId = scimOrganizationOf(request.actor);
    const query = listQueryOf(q, from);
    const keep = projection(query.attributes, query.excludedAttributes);
    const { total, rows } = await listScimUsers(db, organizationId, query, keep.has('groups'));
    const resources = (await scimUserResources(db, organizationId, rows, baseUrl)).map(keep.apply);
    return listResponse(resources, total, query.startIndex);
  };
  app.get(
    '/Users',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimListUsers',
        documentedResponse: { 200: scimAnswer('A page of users.', USER_LIST) },
        tags: TAGS,
        querystring: ListQueryString,
        description:
          "Users of the key's organization (RFC 7644 §3.4.2): filter with every operator, and/or/not, value paths; startIndex/count paging with totalResults; sortBy/sortOrder.",
      },
    },
    async (request) => listUsers(request, request.query as Record<string, unknown>, 'query'),
  );
  app.post(
    '/Users/.search',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimSearchUsers',
        documentedResponse: { 200: scimAnswer('A page of users.', USER_LIST) },
        consumes: SCIM_BODY_TYPES,
        tags: TAGS,
        body: looseObject,
        description: 'RFC 7644 §3.4.3 search by POST.',
      },
    },
    async (request, reply) => reply.code(200).send(await listUsers(request, searchBody(request.body), 'body')),
  );
  app.post(
    '/Users',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimCreateUser',
        documentedResponse: { 201: scimAnswer('Created.', ScimUser) },
        consumes: SCIM_BODY_TYPES,
        tags: TAGS,
        body: looseObject,
        querystring: ResourceQueryString,
        description:
          'Creates a user (201); userName, emails or externalId taken within the organization → 409 uniqueness. attributes / excludedAttributes shape the user answered (RFC 7644 §3.9).',
      },
    },
    async (request, reply) => {
      const ctx = writeContext(request);
      const keep = projectionOf(request);
      const user = await createScimUser(ctx, request.body);
      // A new user holds no group yet.
      const [resource] = await scimUserResources(db, ctx.organizationId, [{ user, groups: [] }], baseUrl);
      return sendResource(reply, 201, resource as Record<string, unknown>, keep);
    },
  );
  app.get(
    '/Users/:id',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimGetUser',
        documentedResponse: { 200: scimAnswer('The user.', ScimUser), 304: NOT_MODIFIED },
        tags: TAGS,
        params: IdParams,
        querystring: ResourceQueryString,
      },
    },
    async (request, reply) => {
      const organizationId = scimOrganizationOf(request.actor);
      const user = await findScimUser(db, organizationId, (request.params as { id: string }).id);
      if (notModified(request, userVersion(user))) return reply.code(304).header('etag', userVersion(user)).send();
      const keep = projectionOf(request);
      const resource = await scimUserResource(db, organizationId, user, baseUrl);
      reply.header('etag', userVersion(user));
      return keep.apply(resource);
    },
  );
  app.put(
    '/Users/:id',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimReplaceUser',
        documentedResponse: { 200: scimAnswer('Replaced.', ScimUser) },
        consumes: SCIM_BODY_TYPES,
        tags: TAGS,
        params: IdParams,
        body: looseObject,
        querystring: ResourceQueryString,
        description:
          'Replaces the user; If-Match with a stale version, or If-None-Match with the current one (or *) → 412. attributes / excludedAttributes shape the user answered.',
      },
    },
    async (request, reply) => {
      const ctx = writeContext(request);
      const keep = projectionOf(request);
      const id = (request.params as { id: string }).id;
      const user = await replaceScimUser(ctx, id, request.body, preconditionsOf(request));
      return sendResource(reply, 200, await scimUserResource(db, ctx.organizationId, user, baseUrl), keep);
    },
  );
  app.patch(
    '/Users/:id',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimPatchUser',
        documentedResponse: { 200: scimAnswer('Patched.', ScimUser) },
        consumes: SCIM_BODY_TYPES,
        tags: TAGS,
        params: IdParams,
        body: looseObject,
        querystring: ResourceQueryString,
        description:
          'RFC 7644 §3.5.2 add/replace/remove; "active": false deactivates and ends sessions. If-Match / If-None-Match as on PUT; attributes / excludedAttributes shape the user answered.',
      },
    },
    async (request, reply) => {
      const ctx = writeContext(request);
      const keep = projectionOf(request);
      const operations = readPatchBody(request.body);
      const id = (request.params as { id: string }).id;
      const user = await patchScimUser(ctx, id, operations, preconditionsOf(request), baseUrl);
      return sendResource(reply, 200, await scimUserResource(db, ctx.organizationId, user, baseUrl), keep);
    },
  );
  app.delete(
    '/Users/:id',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimDeleteUser',
        tags: TAGS,
        params: IdParams,
        description:
          'Deletes the user and ends their sessions (204); afterwards the user answers 404. If-Match / If-None-Match as on PUT.',
      },
    },
    async (request, reply) => {
      await deleteScimUser(writeContext(request), (request.params as { id: string }).id, preconditionsOf(request));
      return reply.code(204).send();
    },
  );

  // Groups
  const listGroups = async (request: FastifyRequest, q: Record<string, unknown>, from: ParameterSource) => {
    const organizationId = scimOrganizationOf(request.actor);
    const query = listQueryOf(q, from);
    const keep = projection(query.attributes, query.excludedAttributes);
    const { total, rows } = await listScimGroups(db, organizationId, query, keep.has('members'));
    return listResponse(
      rows.map((g) => keep.apply(toScimGroup(g, baseUrl))),
      total,
      query.startIndex,
    );
  };
  app.get(
    '/Groups',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimListGroups',
        documentedResponse: { 200: scimAnswer('A page of groups.', GROUP_LIST) },
        tags: TAGS,
        querystring: ListQueryString,
        description: "The organization's own roles as groups.",
      },
    },
    async (request) => listGroups(request, request.query as Record<string, unknown>, 'query'),
  );
  app.post(
    '/Groups/.search',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimSearchGroups',
        documentedResponse: { 200: scimAnswer('A page of groups.', GROUP_LIST) },
        consumes: SCIM_BODY_TYPES,
        tags: TAGS,
        body: looseObject,
      },
    },
    async (request, reply) => reply.code(200).send(await listGroups(request, searchBody(request.body), 'body')),
  );
  app.post(
    '/Groups',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimCreateGroup',
        documentedResponse: { 201: scimAnswer('Created.', ScimGroup) },
        consumes: SCIM_BODY_TYPES,
        tags: TAGS,
        body: looseObject,
        querystring: ResourceQueryString,
        description:
          'Creates a role of level 1000 with no grants. attributes / excludedAttributes shape the group answered (RFC 7644 §3.9).',
      },
    },
    async (request, reply) => {
      const ctx = writeContext(request);
      const keep = projectionOf(request);
      const group = await createScimGroup(ctx, request.body);
      return sendResource(reply, 201, toScimGroup(group, baseUrl), keep);
    },
  );
  app.get(
    '/Groups/:id',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimGetGroup',
        documentedResponse: { 200: scimAnswer('The group.', ScimGroup), 304: NOT_MODIFIED },
        tags: TAGS,
        params: IdParams,
        querystring: ResourceQueryString,
      },
    },
    async (request, reply) => {
      const organizationId = scimOrganizationOf(request.actor);
      const group = await findScimGroup(db, organizationId, (request.params as { id: string }).id);
      if (notModified(request, groupVersion(group))) return reply.code(304).header('etag', groupVersion(group)).send();
      const keep = projectionOf(request);
      reply.header('etag', groupVersion(group));
      return keep.apply(toScimGroup(group, baseUrl));
    },
  );
  app.put(
    '/Groups/:id',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimReplaceGroup',
        documentedResponse: { 200: scimAnswer('Replaced.', ScimGroup) },
        consumes: SCIM_BODY_TYPES,
        tags: TAGS,
        params: IdParams,
        body: looseObject,
        querystring: ResourceQueryString,
        description:
          'Replaces the group; If-Match with a stale version, or If-None-Match with the current one (or *) → 412. attributes / excludedAttributes shape the group answered.',
      },
    },
    async (request, reply) => {
      const keep = projectionOf(request);
      const id = (request.params as { id: string }).id;
      const group = await replaceScimGroup(writeContext(request), id, request.body, preconditionsOf(request));
      return sendResource(reply, 200, toScimGroup(group, baseUrl), keep);
    },
  );
  app.patch(
    '/Groups/:id',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimPatchGroup',
        documentedResponse: { 200: scimAnswer('Patched.', ScimGroup) },
        consumes: SCIM_BODY_TYPES,
        tags: TAGS,
        params: IdParams,
        body: looseObject,
        querystring: ResourceQueryString,
        description:
          'RFC 7644 §3.5.2 add/replace/remove. If-Match / If-None-Match as on PUT; attributes / excludedAttributes shape the group answered.',
      },
    },
    async (request, reply) => {
      const keep = projectionOf(request);
      const operations = readPatchBody(request.body);
      const id = (request.params as { id: string }).id;
      const group = await patchScimGroup(writeContext(request), id, operations, preconditionsOf(request), baseUrl);
      return sendResource(reply, 200, toScimGroup(group, baseUrl), keep);
    },
  );
  app.delete(
    '/Groups/:id',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimDeleteGroup',
        tags: TAGS,
        params: IdParams,
        description: 'Deletes the group (204). If-Match / If-None-Match as on PUT.',
      },
    },
    async (request, reply) => {
      await deleteScimGroup(writeContext(request), (request.params as { id: string }).id, preconditionsOf(request));
      return reply.code(204).send();
    },
  );

  // RFC 7644 §3.4.3: a search at the root covers every resource type. Users come first, then
  // groups, each in its own id order, and one page may hold the end of the users and the start of
  // the groups; the filter may name only attributes both types have, and sortBy is refused, since no
  // one order spans two tables without reading both whole.
  app.post(
    '/.search',
    {
      config: SCIM_AUTH,
      schema: {
        operationId: 'scimSearchAll',
        documentedResponse: {
          200: scimAnswer('A page of users, then groups.', listResponseOf({ anyOf: [ScimUser, ScimGroup] })),
        },
        consumes: SCIM_BODY_TYPES,
        tags: TAGS,
        body: looseObject,
        description: `RFC 7644 §3.4.3 search of every resource type: users, then groups, paged across both. filter names only attributes both have (${COMMON_FILTER_ATTRIBUTES.join(', ')}); sortBy is refused (search /Users/.search or /Groups/.search to sort).`,
      },
    },
    async (request, reply) => {
      const organizationId = scimOrganizationOf(request.actor);
      const query = listQueryOf(searchBody(request.body), 'body');
      if (query.sortBy !== undefined) {
        throw scimErrors.invalidValue(
          '"sortBy" is not taken by a search of every resource type: sort with /Users/.search or /Groups/.search.',
        );
      }
      if (query.filter !== undefined) requireCommonAttributes(query.filter);
      const keep = projection(query.attributes, query.excludedAttributes);
      const users = await listScimUsers(db, organizationId, query, keep.has('groups'));
      const groups = await listScimGroups(
        db,
        organizationId,
        {
          ...query,
          startIndex: Math.max(1, query.startIndex - users.total),
          count: query.count - users.rows.length,
        },
        keep.has('members'),
      );
      const resources = [
        ...(await scimUserResources(db, organizationId, users.rows, baseUrl)).map(keep.apply),
        ...groups.rows.map((g) => keep.apply(toScimGroup(g, baseUrl))),
      ];
      return reply.code(200).send(listResponse(resources, users.total + groups.total, query.startIndex));
    },
  );

  app.post(
    '/Bulk',
    {
      // An operation holding unstorable text, deep nesting or a `__proto__` key fails alone
      // (scim.bulk.ts), like any refused operation.
      config: { ...SCIM_AUTH, bodyItems: operationsOf },
      schema: {
        operationId: 'scimBulk',
        documentedResponse: { 200: scimAnswer('The result of each operation.', ScimBulkResponse) },
        consumes: SCIM_BODY_TYPES,
        tags: TAGS,
        body: looseObject,
        description: 'RFC 7644 §3.7 bulk operations with bulkId references and failOnErrors.',
      },
    },
    async (request) => scimBulk(writeContext(request), request.body, baseUrl),
  );

  // RFC 7644 §3.11: /Me would name the user the credential stands for; a SCIM API key stands for
  // none, so every method answers 501 (after authentication, as everywhere under /scim/v2). Hidden
  // from OpenAPI: there is no operation here.
  app.route({
    method: [...SCIM_METHODS],
    url: '/Me',
    config: SCIM_AUTH,
    schema: { hide: true },
    handler: async (request) => {
      scimOrganizationOf(request.actor);
      throw scimErrors.meUnsupported();
    },
  });

  addMethodNotAllowed();
}

/** The operations of a BulkRequest body, each checked on its own (`bodyItems`). */
function operationsOf(body: unknown): unknown[] | undefined {
  const operations = (body as { Operations?: unknown } | null)?.Operations;
  return Array.isArray(operations) ? operations : undefined;
}

/** What a search of every resource type may filter on: the attributes both Users and Groups have. */
const COMMON_FILTER_ATTRIBUTES = [
  'id',
  'externalId',
  'displayName',
  'meta.created',
  'meta.lastModified',
  'meta.resourceType',
];
const COMMON_FILTER_PATHS = new Set(COMMON_FILTER_ATTRIBUTES.map(normalisePath));

/** A root search's filter names only attributes of both types; otherwise 400 invalidFilter. */
function requireCommonAttributes(filter: string): void {
  const other = filterPaths(parseFilter(filter)).find((path) => !COMMON_FILTER_PATHS.has(path));
  if (other === undefined) return;
  throw scimErrors.invalidFilter(
    `A search of every resource type filters on attributes Users and Groups both have (${COMMON_FILTER_ATTRIBUTES.join(', ')}); filter on "${other}" with /Users/.search or /Groups/.search.`,
  );
}

const SEARCH_REQUEST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:SearchRequest';

/** A SearchRequest body (RFC 7644 §3.4.3) as list parameters. */
function searchBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw scimErrors.invalidSyntax('The body must be a SearchRequest object.');
  }
  const b = body as Record<string, unknown>;
  // RFC 7644 §3.4.3: the body is a SearchRequest message, which says so in "schemas".
  requireSchema(b.schemas, SEARCH_REQUEST_SCHEMA);
  // RFC 7644 §3.4.3: attributes and excludedAttributes are multi-valued strings (the query string's comma list).
  const list = (v: unknown, name: string) => {
    if (v === undefined) return undefined;
    if (!Array.isArray(v) || !v.every((a) => typeof a === 'string')) {
      throw scimErrors.invalidValue(`"${name}" must be an array of attribute names (strings).`);
    }
    return v.join(',');
  };
  return {
    filter: b.filter,
    startIndex: b.startIndex,
    count: b.count,
    sortBy: b.sortBy,
    sortOrder: b.sortOrder,
    attributes: list(b.attributes, 'attributes'),
    excludedAttributes: list(b.excludedAttributes, 'excludedAttributes'),
  };
}
