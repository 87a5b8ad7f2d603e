import { type SQL, sql } from 'drizzle-orm';
import { roles, userRoles } from '../rbac/rbac.table.js';
import type { User } from '../users/users.table.js';
import { users } from '../users/users.table.js';
import { scimErrors } from './scim.errors.js';
import { type AttributeMap, ENTERPRISE_URN } from './scim.filter.js';

/**
 * Gatehouse user ↔ SCIM User (RFC 7643 §4.1) with the enterprise extension (§4.3).
 *
 * Columns: userName ↔ username, name.givenName/familyName ↔ first_name/last_name, the one email ↔
 * email (SCIM shows it as the primary "work" address), active ↔ status = 'active' (false
 * deactivates), externalId ↔ scim_external_id (unique within the organization). Everything SCIM
 * holds that Gatehouse has no column for (displayName, nickName, title, userType, locale,
 * timezone, preferredLanguage, profileUrl, phoneNumbers, addresses and the enterprise extension)
 * is kept in `users.attributes.scim` and given back as sent. Passwords are never taken from SCIM.
 */

export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
export { ENTERPRISE_URN };

/** What a SCIM client can set on a user, in Gatehouse terms. */
export interface ScimUserFields {
  username: string;
  email: string;
  firstName: string;
  lastName: string;
  active: boolean;
  scimExternalId: string | null;
  /** attributes.scim */
  scim: Record<string, unknown>;
}

export interface UserGroupRef {
  roleId: string;
  name: string;
}

/** Simple attributes kept as given in attributes.scim. */
const KEPT = ['displayName', 'nickName', 'title', 'userType', 'preferredLanguage', 'locale', 'timezone', 'profileUrl'];
const KEPT_MULTI = ['phoneNumbers', 'addresses', 'ims', 'photos', 'entitlements', 'x509Certificates'];
const ENTERPRISE_KEPT = ['employeeNumber', 'costCenter', 'organization', 'division', 'department'];

const EMAIL = /^[^\s@]+@[^\s@]+$/;

/** The columns a SCIM User is made of. */
export type ScimUserRow = Pick<
  User,
  | 'id'
  | 'scimExternalId'
  | 'username'
  | 'email'
  | 'firstName'
  | 'lastName'
  | 'attributes'
  | 'status'
  | 'dateJoined'
  | 'updatedAt'
>;

/** The SCIM resource for a user. */
export function toScimUser(user: ScimUserRow, groups: UserGroupRef[] | undefined, baseUrl: string) {
  const scim = (user.attributes.scim ?? {}) as Record<string, unknown>;
  const enterprise = scim.enterprise as Record<string, unknown> | undefined;
  const formatted = `${user.firstName} ${user.lastName}`.trim();
  const resource: Record<string, unknown> = {
    schemas: enterprise ? [USER_SCHEMA, ENTERPRISE_URN] : [USER_SCHEMA],
    id: user.id,
    ...(user.scimExternalId !== null ? { externalId: user.scimExternalId } : {}),
    userName: user.username ?? user.email,
    name: { givenName: user.firstName, familyName: user.lastName, formatted },
    displayName: typeof scim.displayName === 'string' ? scim.displayName : formatted || (user.username ?? user.email),
    emails: [{ value: user.email, type: 'work', primary: true }],
    active: user.status === 'active',
  };
  for (const key of KEPT) if (key !== 'displayName' && scim[key] !== undefined) resource[key] = scim[key];
  for (const key of KEPT_MULTI) if (scim[key] !== undefined) resource[key] = scim[key];
  if (groups) {
    resource.groups = groups.map((g) => ({
      value: g.roleId,
      display: g.name,
      $ref: `${baseUrl}/Groups/${g.roleId}`,
      type: 'direct',
    }));
  }
  if (enterprise) resource[ENTERPRISE_URN] = enterprise;
  resource.meta = {
    resourceType: 'User',
    created: user.dateJoined.toISOString(),
    lastModified: user.updatedAt.toISOString(),
    location: `${baseUrl}/Users/${user.id}`,
    version: userVersion(user),
  };
  return resource;
}

/** Weak ETag from the last change (RFC 7644 §3.14); every write moves updated_at. */
export function userVersion(user: { updatedAt: Date }): string {
  return `W/"${user.updatedAt.getTime().toString(36)}"`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optionalString(body: Record<string, unknown>, key: string, label = key): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw scimErrors.invalidValue(`"${label}" must be a string.`);
  return value;
}

/** Attribute names are case-insensitive (RFC 7643 §2.1): reads a key whatever its case. */
export function caseless(body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) out[k.toLowerCase()] = v;
  return out;
}

/**
 * Reads a full SCIM User (POST or PUT body, or the result of a PATCH) into Gatehouse fields.
 * Read-only attributes (id, meta, groups) are ignored, as RFC 7644 §3.5.1 allows.
 */
export function fromScimUser(input: unknown): ScimUserFields {
  if (!isObject(input)) throw scimErrors.invalidSyntax('The body must be a SCIM User object.');
  const body = caseless(input);
  const schemas = body.schemas;
  if (schemas !== undefined) {
    if (
      !Array.isArray(schemas) ||
      !schemas.some((s) => typeof s === 'string' && s.toLowerCase() === USER_SCHEMA.toLowerCase())
    ) {
      throw scimErrors.invalidSyntax(`"schemas" must list ${USER_SCHEMA}.`);
    }
  }
  const username = optionalString(body, 'username', 'userName')?.trim();
  if (!username) throw scimErrors.invalidValue('"userName" is required.');
  if (username.length > 256) throw scimErrors.invalidValue('"userName" is longer than 256 characters.');

  let email: string | undefined;
  const emails = body.emails;
  if (emails !== undefined && emails !== null) {
    if (!Array.isArray(emails)) throw scimErrors.invalidValue('"emails" must be an array.');
    const valid = emails.map((e) => {
      if (!isObject(e)) throw scimErrors.invalidValue('Each of "emails" must be an object.');
      const c = caseless(e);
      if (typeof c.value !== 'string' || !EMAIL.test(c.value)) {
        throw scimErrors.invalidValue('Each of "emails" needs a valid "value" address.');
      }
      return { value: c.value, primary: c.primary === true, type: c.type };
    });
    email = (valid.find((e) => e.primary) ?? valid.find((e) => e.type === 'work') ?? valid[0])?.value;
  }
  if (!email && EMAIL.test(username)) email = username;
  if (!email) throw scimErrors.invalidValue('A user needs an email address: send "emails" or an email as "userName".');
  if (email.length > 320) throw scimErrors.invalidValue('The email address is longer than 320 characters.');

  let firstName = '';
  let lastName = '';
  if (body.name !== undefined && body.name !== null) {
    if (!isObject(body.name)) throw scimErrors.invalidValue('"name" must be an object.');
    const name = caseless(body.name);
    firstName = optionalString(name, 'givenname', 'name.givenName') ?? '';
    lastName = optionalString(name, 'familyname', 'name.familyName') ?? '';
  }
  const active = body.active;
  if (active !== undefined && active !== null && typeof active !== 'boolean') {
    throw scimErrors.invalidValue('"active" must be true or false.');
  }
  const externalId = optionalString(body, 'externalid', 'externalId') ?? null;
  if (externalId !== null && externalId.length > 256) throw scimErrors.invalidValue('"externalId" is too long.');

  const scim: Record<string, unknown> = {};
  for (const key of KEPT) {
    const value = optionalString(body, key.toLowerCase(), key);
    if (value !== undefined) scim[key] = value;
  }
  for (const key of KEPT_MULTI) {
    const value = body[key.toLowerCase()];
    if (value === undefined || value === null) continue;
    if (!Array.isArray(value) || !value.every(isObject))
      throw scimErrors.invalidValue(`"${key}" must be an array of objects.`);
    scim[key] = value;
  }
  const extension = body[ENTERPRISE_URN.toLowerCase()];
  if (extension !== undefined && extension !== null) {
    if (!isObject(extension)) throw scimErrors.invalidValue(`"${ENTERPRISE_URN}" must be an object.`);
    const ext = caseless(extension);
    const enterprise: Record<string, unknown> = {};
    for (const key of ENTERPRISE_KEPT) {
      const value = optionalString(ext, key.toLowerCase(), key);
      if (value !== undefined) enterprise[key] = value;
    }
    if (ext.manager !== undefined && ext.manager !== null) {
      if (!isObject(ext.manager)) throw scimErrors.invalidValue('"manager" must be an object.');
      const manager = caseless(ext.manager);
      const value = optionalString(manager, 'value', 'manager.value');
      if (value !== undefined) enterprise.manager = { value };
    }
    if (Object.keys(enterprise).length > 0) scim.enterprise = enterprise;
  }
  return { username, email, firstName, lastName, active: active !== false, scimExternalId: externalId, scim };
}

const scimText = (...path: string[]) => sql`(${users.attributes} #>> ${sql.raw(`'{scim,${path.join(',')}}'`)})`;

/** Roles of the user's own organization that the user holds: the SCIM groups (see scim.groups.ts). */
const inGroup = (condition: SQL) =>
  sql`exists (select 1 from ${userRoles} ur join ${roles} r on r.id = ur.role_id where ur.user_id = ${users.id} and r.organization_id = ${users.organizationId} and ${condition})`;

const formattedName = sql`trim(${users.firstName} || ' ' || ${users.lastName})`;

/** Filterable User attributes (normalised paths, see scim.filter.ts). */
export const USER_FILTER_ATTRIBUTES: AttributeMap = {
  id: { type: 'id', expr: sql`${users.id}` },
  externalid: { type: 'string', expr: sql`${users.scimExternalId}`, caseExact: true },
  // Without a username a user shows its email as userName (toScimUser), and is found by it.
  username: {
    type: 'string',
    expr: sql`${users.username}`,
    caseExact: false,
    fallback: { when: sql`${users.username} is null`, expr: sql`${users.email}` },
  },
  'name.givenname': { type: 'string', expr: sql`${users.firstName}`, caseExact: false },
  'name.familyname': { type: 'string', expr: sql`${users.lastName}`, caseExact: false },
  'name.formatted': { type: 'string', expr: formattedName, caseExact: false },
  displayname: { type: 'string', expr: sql`coalesce(${scimText('displayName')}, ${formattedName})`, caseExact: false },
  'emails.value': { type: 'string', expr: sql`${users.email}`, caseExact: false },
  'emails.type': { type: 'constant', value: 'work' },
  'emails.primary': { type: 'constant', value: true },
  active: { type: 'boolean', expr: sql`${users.status} = 'active'` },
  'meta.created': { type: 'dateTime', expr: sql`${users.dateJoined}` },
  'meta.lastmodified': { type: 'dateTime', expr: sql`${users.updatedAt}` },
  'meta.resourcetype': { type: 'constant', value: 'User' },
  nickname: { type: 'string', expr: scimText('nickName'), caseExact: false },
  title: { type: 'string', expr: scimText('title'), caseExact: false },
  usertype: { type: 'string', expr: scimText('userType'), caseExact: false },
  preferredlanguage: { type: 'string', expr: scimText('preferredLanguage'), caseExact: false },
  locale: { type: 'string', expr: scimText('locale'), caseExact: false },
  timezone: { type: 'string', expr: scimText('timezone'), caseExact: false },
  'enterprise:employeenumber': { type: 'string', expr: scimText('enterprise', 'employeeNumber'), caseExact: false },
  'enterprise:costcenter': { type: 'string', expr: scimText('enterprise', 'costCenter'), caseExact: false },
  'enterprise:organization': { type: 'string', expr: scimText('enterprise', 'organization'), caseExact: false },
  'enterprise:division': { type: 'string', expr: scimText('enterprise', 'division'), caseExact: false },
  'enterprise:department': { type: 'string', expr: scimText('enterprise', 'department'), caseExact: false },
  'enterprise:manager.value': { type: 'string', expr: scimText('enterprise', 'manager', 'value'), caseExact: true },
  'groups.value': { type: 'id', expr: sql`ur.role_id`, within: inGroup },
  'groups.display': { type: 'string', expr: sql`r.name`, caseExact: false, within: inGroup },
};

/** sortBy attributes (RFC 7644 §3.4.2.3) → the expression ordered by; the id always breaks ties. */
export const USER_SORT_KEYS: Record<string, SQL> = {
  id: sql`${users.id}`,
  username: sql`lower(${users.username}) collate "C"`,
  'emails.value': sql`lower(${users.email}) collate "C"`,
  emails: sql`lower(${users.email}) collate "C"`,
  'name.givenname': sql`lower(${users.firstName}) collate "C"`,
  'name.familyname': sql`lower(${users.lastName}) collate "C"`,
  displayname: sql`lower(coalesce(${scimText('displayName')}, ${formattedName}))`,
  externalid: sql`${users.scimExternalId}`,
  'meta.created': sql`${users.dateJoined}`,
  'meta.lastmodified': sql`${users.updatedAt}`,
  title: sql`lower(${scimText('title')})`,
  'enterprise:department': sql`lower(${scimText('enterprise', 'department')})`,
};
