import { ENTERPRISE_URN } from './scim.filter.js';
import { GROUP_SCHEMA } from './scim.groups.js';
import { USER_SCHEMA } from './scim.user-mapping.js';

/** RFC 7644 §4 discovery documents: ServiceProviderConfig, ResourceTypes and Schemas (RFC 7643 §5–7). */

export const LIST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:ListResponse';
const SPC_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig';
const RESOURCE_TYPE_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:ResourceType';
const SCHEMA_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:Schema';

/** Most resources one list page answers (`count` above it is lowered to it, RFC 7644 §3.4.2.4). */
export const MAX_PAGE = 1000;
export const MAX_BULK_OPERATIONS = 1000;

export function serviceProviderConfig(baseUrl: string, maxPayloadSize: number) {
  return {
    schemas: [SPC_SCHEMA],
    documentationUri: `${baseUrl.replace(/\/scim\/v2$/, '')}/api/docs`,
    patch: { supported: true },
    bulk: { supported: true, maxOperations: MAX_BULK_OPERATIONS, maxPayloadSize },
    filter: { supported: true, maxResults: MAX_PAGE },
    changePassword: { supported: false },
    sort: { supported: true },
    etag: { supported: true },
    authenticationSchemes: [
      {
        type: 'oauthbearertoken',
        name: 'API key',
        description: 'Authorization: Bearer <API key with the scim scope, scoped to one organization>',
        primary: true,
      },
    ],
    meta: { resourceType: 'ServiceProviderConfig', location: `${baseUrl}/ServiceProviderConfig` },
  };
}

export function resourceTypes(baseUrl: string) {
  return [
    {
      schemas: [RESOURCE_TYPE_SCHEMA],
      id: 'User',
      name: 'User',
      endpoint: '/Users',
      description: 'User Account',
      schema: USER_SCHEMA,
      schemaExtensions: [{ schema: ENTERPRISE_URN, required: false }],
      meta: { resourceType: 'ResourceType', location: `${baseUrl}/ResourceTypes/User` },
    },
    {
      schemas: [RESOURCE_TYPE_SCHEMA],
      id: 'Group',
      name: 'Group',
      endpoint: '/Groups',
      description: 'Group (a role of the organization)',
      schema: GROUP_SCHEMA,
      meta: { resourceType: 'ResourceType', location: `${baseUrl}/ResourceTypes/Group` },
    },
  ];
}

type Attr = Record<string, unknown>;

function attr(
  name: string,
  type: 'string' | 'boolean' | 'complex' | 'reference' | 'dateTime' | 'binary',
  options: Partial<{
    multiValued: boolean;
    required: boolean;
    caseExact: boolean;
    mutability: 'readOnly' | 'readWrite' | 'immutable' | 'writeOnly';
    returned: 'always' | 'never' | 'default' | 'request';
    uniqueness: 'none' | 'server' | 'global';
    subAttributes: Attr[];
    referenceTypes: string[];
    description: string;
  }> = {},
): Attr {
  return {
    name,
    type,
    multiValued: options.multiValued ?? false,
    description: options.description ?? name,
    required: options.required ?? false,
    caseExact: options.caseExact ?? false,
    mutability: options.mutability ?? 'readWrite',
    returned: options.returned ?? 'default',
    uniqueness: options.uniqueness ?? 'none',
    ...(options.subAttributes ? { subAttributes: options.subAttributes } : {}),
    ...(options.referenceTypes ? { referenceTypes: options.referenceTypes } : {}),
  };
}

/** RFC 7643 §2.4 "primary": true on one value at most; a second answers 400 invalidValue. */
const primary = attr('primary', 'boolean', {
  description: 'true on one value at most; more answer 400 invalidValue.',
});

/** A multi-valued attribute with the RFC 7643 §2.4 sub-attributes; `value` typed as §4.1.2 types it. */
const multiValue = (name: string, value: Attr = attr('value', 'string')) =>
  attr(name, 'complex', {
    multiValued: true,
    description: `${name}: sub-attributes other than these are dropped.`,
    subAttributes: [value, attr('display', 'string'), attr('type', 'string'), primary],
  });

export function schemas(baseUrl: string) {
  const meta = (id: string) => ({ resourceType: 'Schema', location: `${baseUrl}/Schemas/${id}` });
  return [
    {
      schemas: [SCHEMA_SCHEMA],
      id: USER_SCHEMA,
      name: 'User',
      description: 'User Account',
      attributes: [
        attr('userName', 'string', {
          required: true,
          uniqueness: 'server',
          description:
            "Unique within the organization, case-insensitive. At most 150 characters: letters of any script (with their combining marks), digits and _ . @ + - ' # only, so no spaces; anything else answers 400 invalidValue. Without emails, a userName holding @ is the user's email and must be an email address, whose local part is ASCII (its domain may be internationalized, as in jane@bücher.example): müller is a userName, but müller@a.example is refused as an address.",
        }),
        attr('name', 'complex', {
          subAttributes: [
            attr('formatted', 'string', {
              mutability: 'readOnly',
              description:
                'honorificPrefix, givenName, middleName, familyName and honorificSuffix joined by spaces; a value sent (as Entra ID does) is ignored, not refused.',
            }),
            attr('familyName', 'string'),
            attr('givenName', 'string'),
            attr('middleName', 'string'),
            attr('honorificPrefix', 'string'),
            attr('honorificSuffix', 'string'),
          ],
        }),
        attr('displayName', 'string'),
        attr('nickName', 'string'),
        attr('profileUrl', 'reference', { referenceTypes: ['external'] }),
        attr('title', 'string'),
        attr('userType', 'string', {
          description:
            "The identity provider's label, kept as sent; it does not set the Gatehouse user type (`user_type`).",
        }),
        attr('preferredLanguage', 'string'),
        attr('locale', 'string'),
        attr('timezone', 'string'),
        attr('active', 'boolean', { description: 'false deactivates the user and ends their sessions.' }),
        attr('emails', 'complex', {
          multiValued: true,
          description:
            "Every address is kept. The primary one (primary, else the first of type work, else the first) is the user's email, unique within the organization; filters on emails.value, emails.type and emails.primary see that primary address only. A user needs an email: a PATCH that leaves no address answers 400 invalidValue. An address's local part is ASCII (müller@a.example is refused); its domain may be an internationalized domain name (jane@bücher.example), kept as sent and another address than its punycode form (xn--bcher-kva.example).",
          subAttributes: [
            attr('value', 'string'),
            attr('type', 'string'),
            attr('primary', 'boolean'),
            attr('display', 'string'),
          ],
        }),
        multiValue('phoneNumbers'),
        multiValue('ims'),
        multiValue('photos', attr('value', 'reference', { referenceTypes: ['external'] })),
        attr('addresses', 'complex', {
          multiValued: true,
          description: 'addresses: sub-attributes other than these are dropped.',
          subAttributes: [
            ...['formatted', 'streetAddress', 'locality', 'region', 'postalCode', 'country', 'type'].map((n) =>
              attr(n, 'string'),
            ),
            primary,
          ],
        }),
        attr('groups', 'complex', {
          multiValued: true,
          mutability: 'readOnly',
          subAttributes: [
            attr('value', 'string', { mutability: 'readOnly' }),
            attr('$ref', 'reference', { mutability: 'readOnly', referenceTypes: ['Group'] }),
            attr('display', 'string', { mutability: 'readOnly' }),
            attr('type', 'string', { mutability: 'readOnly' }),
          ],
        }),
        multiValue('entitlements'),
        multiValue('roles'),
        multiValue('x509Certificates', attr('value', 'binary', { description: 'A DER certificate, base64.' })),
      ],
      meta: meta(USER_SCHEMA),
    },
    {
      schemas: [SCHEMA_SCHEMA],
      id: ENTERPRISE_URN,
      name: 'EnterpriseUser',
      description: 'Enterprise User',
      attributes: [
        ...['employeeNumber', 'costCenter', 'organization', 'division', 'department'].map((n) => attr(n, 'string')),
        attr('manager', 'complex', {
          subAttributes: [
            attr('value', 'string', {
              description:
                'The id of a user of the same organization; any other value answers 400 invalidValue naming manager.value.',
            }),
            attr('$ref', 'reference', { referenceTypes: ['User'] }),
            attr('displayName', 'string', {
              mutability: 'readOnly',
              description: "The manager's displayName when read; a value sent is ignored.",
            }),
          ],
        }),
      ],
      meta: meta(ENTERPRISE_URN),
    },
    {
      schemas: [SCHEMA_SCHEMA],
      id: GROUP_SCHEMA,
      name: 'Group',
      description: 'Group: a role of the organization',
      attributes: [
        attr('displayName', 'string', { required: true, uniqueness: 'server' }),
        attr('members', 'complex', {
          multiValued: true,
          subAttributes: [
            attr('value', 'string', { mutability: 'immutable' }),
            attr('$ref', 'reference', { mutability: 'immutable', referenceTypes: ['User'] }),
            attr('display', 'string', { mutability: 'readOnly' }),
            attr('type', 'string', { mutability: 'immutable' }),
          ],
        }),
      ],
      meta: meta(GROUP_SCHEMA),
    },
  ];
}

/** RFC 7644 §3.4.2 ListResponse. */
export function listResponse(resources: unknown[], total: number, startIndex: number) {
  return {
    schemas: [LIST_SCHEMA],
    totalResults: total,
    startIndex,
    itemsPerPage: resources.length,
    Resources: resources,
  };
}
