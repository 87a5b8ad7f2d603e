/**
 * What SCIM answers, for the OpenAPI document only (`documentedResponse`, platform/http/openapi.ts).
 * SCIM resources are extensible (RFC 7643 §3: schema extensions, and `attributes` /
 * `excludedAttributes` shape every answer), so each schema names the key properties and allows any
 * other; as Fastify response schemas they would also serialise, and drop what they do not name.
 */

const text = { type: 'string' } as const;
const texts = { type: 'array', items: text } as const;
const open = (properties: Record<string, unknown>, required: string[] = [], description?: string) => ({
  type: 'object',
  ...(description ? { description } : {}),
  properties,
  ...(required.length > 0 ? { required } : {}),
  additionalProperties: true,
});

/** RFC 7643 §3.1: id is always returned; the rest may be left out by `attributes`. */
const meta = open({ resourceType: text, created: text, lastModified: text, location: text, version: text });
const multiValued = (properties: Record<string, unknown>) => ({ type: 'array', items: open(properties) });

export const ScimUser = open(
  {
    schemas: texts,
    id: text,
    externalId: text,
    userName: text,
    name: open({
      formatted: text,
      familyName: text,
      givenName: text,
      middleName: text,
      honorificPrefix: text,
      honorificSuffix: text,
    }),
    displayName: text,
    active: { type: 'boolean' },
    emails: multiValued({ value: text, type: text, primary: { type: 'boolean' } }),
    // `$ref` goes unnamed: the generator would read a property of that name as a reference.
    groups: multiValued({ value: text, display: text, type: text }),
    'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User': open({}),
    meta,
  },
  ['schemas', 'id'],
  'RFC 7643 §4.1 User, with the enterprise extension (§4.3).',
);

export const ScimGroup = open(
  {
    schemas: texts,
    id: text,
    externalId: text,
    displayName: text,
    members: multiValued({ value: text, display: text, type: text }),
    meta,
  },
  ['schemas', 'id'],
  'RFC 7643 §4.2 Group: one of the organization’s roles.',
);

/** RFC 7644 §3.4.2 ListResponse of `resource`. */
export const listResponseOf = (resource: object) =>
  open(
    {
      schemas: texts,
      totalResults: { type: 'integer' },
      startIndex: { type: 'integer' },
      itemsPerPage: { type: 'integer' },
      Resources: { type: 'array', items: resource },
    },
    ['schemas', 'totalResults', 'startIndex', 'itemsPerPage', 'Resources'],
  );

export const ScimBulkResponse = open(
  {
    schemas: texts,
    Operations: {
      type: 'array',
      items: open({ method: text, bulkId: text, version: text, location: text, status: text, response: open({}) }, [
        'method',
        'status',
      ]),
    },
  },
  ['schemas', 'Operations'],
  'RFC 7644 §3.7.3 BulkResponse.',
);

const supported = open({ supported: { type: 'boolean' } }, ['supported']);
export const ScimServiceProviderConfig = open(
  {
    schemas: texts,
    documentationUri: text,
    patch: supported,
    bulk: supported,
    filter: supported,
    changePassword: supported,
    sort: supported,
    etag: supported,
    authenticationSchemes: { type: 'array', items: open({ type: text, name: text, description: text }) },
  },
  ['schemas', 'patch', 'bulk', 'filter', 'changePassword', 'sort', 'etag', 'authenticationSchemes'],
  'RFC 7643 §5.',
);

export const ScimResourceType = open(
  {
    schemas: texts,
    id: text,
    name: text,
    endpoint: text,
    description: text,
    schema: text,
    schemaExtensions: { type: 'array', items: open({ schema: text, required: { type: 'boolean' } }) },
    meta,
  },
  ['schemas', 'name', 'endpoint', 'schema'],
  'RFC 7643 §6.',
);

export const ScimSchema = open(
  { schemas: texts, id: text, name: text, description: text, attributes: { type: 'array', items: open({}) }, meta },
  ['id', 'attributes'],
  'RFC 7643 §7.',
);

/** A documented SCIM answer: always `application/scim+json`. */
export const scimAnswer = (description: string, schema: object) => ({
  description,
  content: { 'application/scim+json': { schema } },
});

/** A conditional GET whose If-None-Match holds the current version (RFC 7232 §4.1). */
export const NOT_MODIFIED = { type: 'null', description: 'Not modified: If-None-Match holds the current version.' };

/** SCIM bodies are `application/scim+json` (RFC 7644 §3.1); plain JSON is read as well. */
export const SCIM_BODY_TYPES = ['application/scim+json', 'application/json'];
