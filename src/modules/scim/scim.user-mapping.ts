import { type SQL, sql } from 'drizzle-orm';
import { isEmailAddress } from '../../platform/email-address.js';
import { EMAIL_MESSAGE } from '../../platform/http/errors.js';
import { roles, userRoles } from '../rbac/rbac.table.js';
import { normalizeUsername } from '../users/users.schemas.js';
import type { User } from '../users/users.table.js';
import { users } from '../users/users.table.js';
import { requireSchema, scimErrors } from './scim.errors.js';
import { type AttributeMap, ENTERPRISE_URN } from './scim.filter.js';
import {
  applyPatch,
  META_ATTRIBUTE,
  type PatchAttribute,
  type PatchOperation,
  type PatchSchema,
} from './scim.patch.js';

/**
 * Gatehouse user ↔ SCIM User (RFC 7643 §4.1) with the enterprise extension (§4.3).
 *
 * Columns: userName ↔ username, name.givenName/familyName ↔ first_name/last_name, the primary email
 * ↔ email, active ↔ status = 'active' (false deactivates), externalId ↔ scim_external_id (unique
 * within the organization). Every address of `emails` is kept in `attributes.scim.emails` (see
 * emailsOf for how the column and that list are reconciled). Everything SCIM
 * holds that Gatehouse has no column for (displayName, nickName, title, userType, locale,
 * timezone, preferredLanguage, profileUrl, the other name parts in `attributes.scim.name`,
 * phoneNumbers, addresses and the other multi-valued attributes, the enterprise extension) is kept
 * in `users.attributes.scim`, each value checked against the schema and given back as read.
 * Passwords are never taken from SCIM.
 */

export const USER_SCHEMA = 'urn:ietf:params:scim:schemas:core:2.0:User';
export { ENTERPRISE_URN };

/** What a SCIM client can set on a user, in Gatehouse terms. */
export interface ScimUserFields {
  /** null only after a PATCH that left the email standing in as userName (`patchedUserFields`). */
  username: string | null;
  email: string;
  firstName: string;
  lastName: string;
  /** Absent (or null): the status stays as it is; a new user is active. */
  active: boolean | undefined;
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
/** Parts of `name` without a column, kept in attributes.scim.name. */
const NAME_KEPT = ['middleName', 'honorificPrefix', 'honorificSuffix'];
/**
 * Multi-valued attributes kept in attributes.scim, with their sub-attributes (RFC 7643 §4.1.2):
 * strings, and "primary" a boolean (§2.4). Other sub-attributes are dropped, as unknown attributes are.
 */
const PLAIN_VALUE = ['value', 'display', 'type'];
const ADDRESS = ['formatted', 'streetAddress', 'locality', 'region', 'postalCode', 'country', 'type'];
const KEPT_MULTI: Record<string, string[]> = {
  phoneNumbers: PLAIN_VALUE,
  addresses: ADDRESS,
  ims: PLAIN_VALUE,
  photos: PLAIN_VALUE,
  entitlements: PLAIN_VALUE,
  roles: PLAIN_VALUE,
  x509Certificates: PLAIN_VALUE,
};
const ENTERPRISE_KEPT = ['employeeNumber', 'costCenter', 'organization', 'division', 'department'];

// Without emails, a userName of this shape is taken as the address; the core then judges it as it
// judges any, so a malformed one is refused as an address rather than as a missing one.
const ADDRESS_SHAPED = /^[^\s@]+@[^\s@]+$/;

const readWrite: PatchAttribute = { mutability: 'readWrite' };
const readOnly: PatchAttribute = { mutability: 'readOnly' };

/**
 * What PATCH may name on a User: the attributes this mapping reads (fromScimUser), with the
 * mutability the Schemas document gives them. name.formatted is computed from the other name parts
 * and a password is never taken from SCIM: both are accepted and dropped.
 */
export const USER_PATCH_SCHEMA: PatchSchema = {
  resourceType: 'User',
  attributes: {
    id: readOnly,
    meta: META_ATTRIBUTE,
    groups: {
      ...readOnly,
      multiValued: true,
      sub: { value: 'readOnly', $ref: 'readOnly', display: 'readOnly', type: 'readOnly' },
    },
    schemas: readOnly,
    externalid: readWrite,
    username: readWrite,
    active: readWrite,
    password: { mutability: 'ignored' },
    name: {
      mutability: 'readWrite',
      sub: {
        givenname: 'readWrite',
        familyname: 'readWrite',
        formatted: 'ignored',
        middlename: 'readWrite',
        honorificprefix: 'readWrite',
        honorificsuffix: 'readWrite',
      },
    },
    emails: {
      mutability: 'readWrite',
      multiValued: true,
      sub: { value: 'readWrite', type: 'readWrite', primary: 'readWrite', display: 'readWrite' },
    },
    ...Object.fromEntries(KEPT.map((key) => [key.toLowerCase(), readWrite])),
    ...Object.fromEntries(
      Object.entries(KEPT_MULTI).map(([key, subs]) => [
        key.toLowerCase(),
        {
          ...readWrite,
          multiValued: true,
          sub: Object.fromEntries([...subs, 'primary'].map((sub) => [sub.toLowerCase(), 'readWrite' as const])),
        },
      ]),
    ),
  },
  extensions: {
    [ENTERPRISE_URN.toLowerCase()]: {
      ...Object.fromEntries(ENTERPRISE_KEPT.map((key) => [key.toLowerCase(), readWrite])),
      manager: { mutability: 'readWrite', sub: { value: 'readWrite', $ref: 'ignored', displayname: 'readOnly' } },
    },
  },
};

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
export function toScimUser(
  user: ScimUserRow,
  groups: UserGroupRef[] | undefined,
  baseUrl: string,
  /** Managers' displayNames by id (scimUserResources); without it, `manager.displayName` is left out. */
  managers?: ReadonlyMap<string, string>,
) {
  const scim = (user.attributes.scim ?? {}) as Record<string, unknown>;
  const enterprise = scim.enterprise as Record<string, unknown> | undefined;
  const parts = keptNameParts(scim.name);
  // RFC 7643 §4.1.1: the full name "including all middle names, titles, and suffixes", in the
  // order formattedName (SQL, for filters) joins them too.
  const formatted = [parts.honorificPrefix, user.firstName, parts.middleName, user.lastName, parts.honorificSuffix]
    .filter((part) => part !== undefined && part !== '')
    .join(' ')
    .trim();
  // Name parts never given are unassigned, and left out (RFC 7643 §2.5), rather than shown as "".
  const name: Record<string, string> = {};
  if (user.firstName !== '') name.givenName = user.firstName;
  for (const key of NAME_KEPT) {
    const part = parts[key];
    if (part) name[key] = part;
  }
  if (user.lastName !== '') name.familyName = user.lastName;
  if (formatted !== '') name.formatted = formatted;
  const resource: Record<string, unknown> = {
    schemas: enterprise ? [USER_SCHEMA, ENTERPRISE_URN] : [USER_SCHEMA],
    id: user.id,
    ...(user.scimExternalId !== null ? { externalId: user.scimExternalId } : {}),
    userName: user.username ?? user.email,
    ...(formatted !== '' ? { name } : {}),
    displayName: typeof scim.displayName === 'string' ? scim.displayName : formatted || (user.username ?? user.email),
    emails: emailsOf(user.email, scim.emails),
    active: user.status === 'active',
  };
  for (const key of KEPT) if (key !== 'displayName' && scim[key] !== undefined) resource[key] = scim[key];
  for (const key of Object.keys(KEPT_MULTI)) if (scim[key] !== undefined) resource[key] = shownValues(scim[key]);
  if (groups) {
    resource.groups = groups.map((g) => ({
      value: g.roleId,
      display: g.name,
      $ref: `${baseUrl}/Groups/${g.roleId}`,
      type: 'direct',
    }));
  }
  if (enterprise) resource[ENTERPRISE_URN] = withManagerName(enterprise, managers);
  resource.meta = {
    resourceType: 'User',
    created: user.dateJoined.toISOString(),
    lastModified: user.updatedAt.toISOString(),
    location: `${baseUrl}/Users/${user.id}`,
    version: userVersion(user),
  };
  return resource;
}

/** The extension with its manager's displayName, when the manager is a user known here. */
function withManagerName(enterprise: Record<string, unknown>, managers: ReadonlyMap<string, string> | undefined) {
  const manager = enterprise.manager as { value?: unknown } | undefined;
  const displayName = typeof manager?.value === 'string' ? managers?.get(manager.value) : undefined;
  return displayName === undefined ? enterprise : { ...enterprise, manager: { ...manager, displayName } };
}

/**
 * A kept multi-valued attribute as shown: "primary" a boolean, true on the first value that had it
 * only. Values stored before they were checked may hold "true" or several primaries; shown so, every
 * later PATCH, which reads the representation back (patchedUserFields), would be refused for them.
 */
function shownValues(kept: unknown): unknown {
  if (!Array.isArray(kept)) return kept;
  let primarySeen = false;
  return kept.map((value) => {
    if (!isObject(value) || value.primary === undefined) return value;
    const primary =
      value.primary === true || (typeof value.primary === 'string' && value.primary.toLowerCase() === 'true');
    const shown = primary && !primarySeen;
    primarySeen ||= shown;
    return shown === value.primary ? value : { ...value, primary: shown };
  });
}

/** The name parts kept in attributes.scim.name, the strings only. */
function keptNameParts(kept: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (!isObject(kept)) return out;
  for (const key of NAME_KEPT) if (typeof kept[key] === 'string') out[key] = kept[key];
  return out;
}

/** Weak ETag from the last change (RFC 7644 §3.14); every write moves updated_at. */
export function userVersion(user: { updatedAt: Date }): string {
  return `W/"${user.updatedAt.getTime().toString(36)}"`;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Bounds of what a User keeps in attributes.scim, which every read and write of the user carries:
 * values per multi-valued attribute, and characters per string (the admin API's own text fields take
 * at most a few hundred).
 */
const MAX_VALUES = 100;
const MAX_TEXT = 1024;

/**
 * A certificate's value is base64 DER (RFC 7643 §4.1.2), commonly 1,500 to 3,000 characters: held to
 * its own bound, within the provisioning core's limit on all of a user's attributes.
 */
const MAX_CERTIFICATE = 16 * 1024;

function optionalString(body: Record<string, unknown>, key: string, label = key, max = MAX_TEXT): string | undefined {
  const value = body[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw scimErrors.invalidValue(`"${label}" must be a string.`);
  if (value.length > max) throw scimErrors.invalidValue(`"${label}" is longer than ${max} characters.`);
  return value;
}

function boundedList(value: unknown[], label: string): unknown[] {
  if (value.length > MAX_VALUES) throw scimErrors.invalidValue(`"${label}" holds more than ${MAX_VALUES} values.`);
  return value;
}

/** Attribute names are case-insensitive (RFC 7643 §2.1): reads a key whatever its case. */
export function caseless(body: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(body)) out[k.toLowerCase()] = v;
  return out;
}

/** One address of `emails` as kept in attributes.scim (RFC 7643 §4.1.2 sub-attributes). */
interface ScimEmail {
  value: string;
  type?: string;
  primary?: boolean;
  display?: string;
}

/** Azure AD sends booleans as "True"/"False" strings; both forms are read as booleans. */
function booleanOf(value: unknown, label: string): boolean | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'boolean') return value;
  if (typeof value === 'string' && /^(true|false)$/i.test(value)) return value.toLowerCase() === 'true';
  throw scimErrors.invalidValue(`"${label}" must be true or false.`);
}

/**
 * Validates one multi-valued attribute of KEPT_MULTI as RFC 7643 §2.4 and §4.1.2 define it: an
 * array of objects whose sub-attributes are strings and "primary" a boolean, true on one value at
 * most. Unknown sub-attributes are dropped, and a value left with none is unassigned (§2.5).
 */
function readMultiValued(key: string, subs: string[], input: unknown): Record<string, unknown>[] | undefined {
  if (input === undefined || input === null) return undefined;
  if (!Array.isArray(input) || !input.every(isObject)) {
    throw scimErrors.invalidValue(`"${key}" must be an array of objects.`);
  }
  const values = boundedList(input, key).map((raw) => {
    const c = caseless(raw as Record<string, unknown>);
    const value: Record<string, unknown> = {};
    for (const sub of subs) {
      const max = key === 'x509Certificates' && sub === 'value' ? MAX_CERTIFICATE : MAX_TEXT;
      const text = optionalString(c, sub.toLowerCase(), `${key}.${sub}`, max);
      if (text !== undefined) value[sub] = text;
    }
    const primary = booleanOf(c.primary, `${key}.primary`);
    if (primary !== undefined) value.primary = primary;
    return value;
  });
  if (values.filter((v) => v.primary === true).length > 1) {
    throw scimErrors.invalidValue(`Only one of "${key}" may have "primary": true (RFC 7643 §2.4).`);
  }
  const kept = values.filter((v) => Object.keys(v).length > 0);
  return kept.length > 0 ? kept : undefined;
}

/** Validates `emails`; RFC 7643 §2.4: "primary" may be true on one value at most. */
function readEmails(input: unknown): ScimEmail[] {
  if (input === undefined || input === null) return [];
  if (!Array.isArray(input)) throw scimErrors.invalidValue('"emails" must be an array.');
  const read = boundedList(input, 'emails').map((e): ScimEmail => {
    if (!isObject(e)) throw scimErrors.invalidValue('Each of "emails" must be an object.');
    const c = caseless(e);
    // Every address is kept and given back, not only the primary one the core checks as the user's email.
    if (typeof c.value !== 'string' || !isEmailAddress(c.value)) {
      // In the words of every other path, the attribute named as SCIM names it.
      throw scimErrors.invalidValue(`emails: ${EMAIL_MESSAGE}`);
    }
    const type = optionalString(c, 'type', 'emails.type');
    const display = optionalString(c, 'display', 'emails.display');
    const primary = booleanOf(c.primary, 'emails.primary');
    return {
      value: c.value,
      ...(type !== undefined ? { type } : {}),
      ...(primary !== undefined ? { primary } : {}),
      ...(display !== undefined ? { display } : {}),
    };
  });
  // Addresses compare case-insensitively (as the email column does): one is kept, primary if any copy was.
  const emails: ScimEmail[] = [];
  const at = new Map<string, number>();
  for (const e of read) {
    const i = at.get(e.value.toLowerCase());
    if (i === undefined) {
      at.set(e.value.toLowerCase(), emails.push(e) - 1);
    } else if (e.primary && !emails[i]?.primary) {
      emails[i] = { ...(emails[i] as ScimEmail), primary: true };
    }
  }
  if (emails.filter((e) => e.primary).length > 1) {
    throw scimErrors.invalidValue('Only one of "emails" may have "primary": true (RFC 7643 §2.4).');
  }
  return emails;
}

/** The address that goes to the email column: the primary one, else the first "work" one, else the first. */
function primaryEmailIndex(emails: ScimEmail[]): number | undefined {
  if (emails.length === 0) return undefined;
  const primary = emails.findIndex((e) => e.primary);
  if (primary !== -1) return primary;
  const work = emails.findIndex((e) => e.type?.toLowerCase() === 'work');
  return work !== -1 ? work : 0;
}

/**
 * The list kept in attributes.scim.emails, the chosen address marked primary; undefined when the
 * column alone says it all (one "work" address, or none), which keeps most users' attributes small.
 */
function emailsToKeep(emails: ScimEmail[], chosen: number | undefined): ScimEmail[] | undefined {
  if (chosen === undefined) return undefined;
  const only = emails.length === 1 ? emails[0] : undefined;
  if (only && only.display === undefined && (only.type === undefined || only.type.toLowerCase() === 'work')) {
    return undefined;
  }
  return emails.map((e, i) => (i === chosen ? { ...e, primary: true } : e));
}

function isKeptEmail(value: unknown): value is ScimEmail {
  return isObject(value) && typeof value.value === 'string';
}

/**
 * `emails` as shown: the kept list with exactly one primary, and the email column always that
 * primary's address. The provisioning API and the admin API change only the column, so the column
 * wins: the kept address equal to it becomes primary, else the kept primary takes its value.
 */
function emailsOf(column: string, kept: unknown): ScimEmail[] {
  const list = Array.isArray(kept) ? kept.filter(isKeptEmail) : [];
  if (list.length === 0) return [{ value: column, type: 'work', primary: true }];
  const lower = column.toLowerCase();
  let main = list.findIndex((e) => e.value.toLowerCase() === lower);
  if (main === -1)
    main = Math.max(
      0,
      list.findIndex((e) => e.primary === true),
    );
  return list.map((e, i) => {
    if (i === main) return { ...e, value: column, primary: true };
    return e.primary === true ? { ...e, primary: false } : e;
  });
}

/**
 * A PATCH (RFC 7644 §3.5.2) of a stored user, as the fields to write: the operations applied to the
 * user's representation, read back. What the representation only derives stays derived unless an
 * operation changed it: `displayName` (the name, while none is stored) and `userName` (the email, for
 * a user without a username). Read back as shown, a PATCH of the family name would store the old
 * display name, which would then no longer follow the name, and give a username to a user who had none.
 */
export function patchedUserFields(current: ScimUserRow, operations: PatchOperation[], baseUrl: string): ScimUserFields {
  const shown = toScimUser(current, undefined, baseUrl);
  const patched = applyPatch(shown, operations, USER_PATCH_SCHEMA);
  // A POST may give the address as userName alone, but a PATCH that removes every address would
  // silently make userName the user's email: refused, the address is the user's to log in and be
  // mailed at.
  if (!Array.isArray(patched.emails) || patched.emails.length === 0) {
    throw scimErrors.invalidValue(
      'A PATCH cannot remove every address of "emails": a user needs an email. Replace it with another address instead.',
    );
  }
  const fields = fromScimUser(patched);
  const stored = (current.attributes.scim ?? {}) as Record<string, unknown>;
  if (stored.displayName === undefined && fields.scim.displayName === shown.displayName) {
    const { displayName: _derived, ...rest } = fields.scim;
    fields.scim = rest;
  }
  if (current.username === null && fields.username === shown.userName) fields.username = null;
  return fields;
}

/**
 * Reads a full SCIM User (POST or PUT body, or the result of a PATCH) into Gatehouse fields.
 * Read-only attributes (id, meta, groups) are ignored, as RFC 7644 §3.5.1 allows.
 */
export function fromScimUser(input: unknown): ScimUserFields {
  if (!isObject(input)) throw scimErrors.invalidSyntax('The body must be a SCIM User object.');
  const body = caseless(input);
  // "schemas" is required (RFC 7643 §3). A PATCH reads back the current representation, which
  // always holds it: PATCH never changes "schemas".
  requireSchema(body.schemas, USER_SCHEMA);
  const username = optionalString(body, 'username', 'userName')?.trim();
  if (!username) throw scimErrors.invalidValue('"userName" is required.');
  if (username.length > 256) throw scimErrors.invalidValue('"userName" is longer than 256 characters.');

  let email: string | undefined;
  const emails = readEmails(body.emails);
  const chosen = primaryEmailIndex(emails);
  if (chosen !== undefined) email = emails[chosen]?.value;
  if (!email && ADDRESS_SHAPED.test(username)) email = username;
  if (!email) throw scimErrors.invalidValue('A user needs an email address: send "emails" or an email as "userName".');
  if (email.length > 320) throw scimErrors.invalidValue('The email address is longer than 320 characters.');
  const storedEmails = emailsToKeep(emails, chosen);

  let firstName = '';
  let lastName = '';
  const nameParts: Record<string, string> = {};
  if (body.name !== undefined && body.name !== null) {
    if (!isObject(body.name)) throw scimErrors.invalidValue('"name" must be an object.');
    const name = caseless(body.name);
    firstName = optionalString(name, 'givenname', 'name.givenName') ?? '';
    lastName = optionalString(name, 'familyname', 'name.familyName') ?? '';
    for (const key of NAME_KEPT) {
      const value = optionalString(name, key.toLowerCase(), `name.${key}`);
      if (value) nameParts[key] = value;
    }
  }
  const active = booleanOf(body.active, 'active');
  const externalId = optionalString(body, 'externalid', 'externalId') ?? null;
  if (externalId !== null && externalId.length > 256) throw scimErrors.invalidValue('"externalId" is too long.');

  const scim: Record<string, unknown> = {};
  if (storedEmails) scim.emails = storedEmails;
  if (Object.keys(nameParts).length > 0) scim.name = nameParts;
  for (const key of KEPT) {
    const value = optionalString(body, key.toLowerCase(), key);
    if (value !== undefined) scim[key] = value;
  }
  for (const [key, subs] of Object.entries(KEPT_MULTI)) {
    const values = readMultiValued(key, subs, body[key.toLowerCase()]);
    if (values) scim[key] = values;
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
    // Entra ID sends a manager set by a PATCH path as the bare id rather than `{ value }`.
    if (typeof ext.manager === 'string') {
      // Held to the limits of the object form's value: stored unchecked, it failed every later write.
      const value = optionalString(ext, 'manager', 'manager.value');
      if (value) enterprise.manager = { value };
    } else if (ext.manager !== undefined && ext.manager !== null) {
      if (!isObject(ext.manager)) throw scimErrors.invalidValue('"manager" must be an object or an id.');
      const manager = caseless(ext.manager);
      const value = optionalString(manager, 'value', 'manager.value');
      if (value !== undefined) enterprise.manager = { value };
    }
    if (Object.keys(enterprise).length > 0) scim.enterprise = enterprise;
  }
  return { username, email, firstName, lastName, active, scimExternalId: externalId, scim };
}

const scimText = (...path: string[]) => sql`(${users.attributes} #>> ${sql.raw(`'{scim,${path.join(',')}}'`)})`;

/** Roles of the user's own organization that the user holds: the SCIM groups (see scim.groups.ts). */
const inGroup = (condition: SQL) =>
  sql`exists (select 1 from ${userRoles} ur join ${roles} r on r.id = ur.role_id where ur.user_id = ${users.id} and r.organization_id = ${users.organizationId} and ${condition})`;

/** name.formatted as toScimUser joins it: the parts given, in order, one space apart. */
const formattedName = sql`trim(concat_ws(' ', nullif(${scimText('name', 'honorificPrefix')}, ''), nullif(${users.firstName}, ''),
  nullif(${scimText('name', 'middleName')}, ''), nullif(${users.lastName}, ''), nullif(${scimText('name', 'honorificSuffix')}, '')))`;

const keptEmails = sql`(${users.attributes} #> '{scim,emails}')`;
/** The type emailsOf shows on the primary address: the kept entry equal to the column, else the kept primary. */
const primaryEmailType = sql`(case when jsonb_typeof(${keptEmails}) = 'array' then (
  select e ->> 'type' from jsonb_array_elements(${keptEmails}) with ordinality as kept(e, n)
  order by coalesce(lower(e ->> 'value') = lower(${users.email}), false) desc,
    coalesce(e ->> 'primary' = 'true', false) desc, n
  limit 1) else 'work' end)`;

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
    // Stored composed: "José" sent decomposed finds it, as at login.
    normalize: normalizeUsername,
  },
  'name.givenname': { type: 'string', expr: sql`${users.firstName}`, caseExact: false },
  'name.familyname': { type: 'string', expr: sql`${users.lastName}`, caseExact: false },
  'name.formatted': { type: 'string', expr: formattedName, caseExact: false },
  'name.middlename': { type: 'string', expr: scimText('name', 'middleName'), caseExact: false },
  'name.honorificprefix': { type: 'string', expr: scimText('name', 'honorificPrefix'), caseExact: false },
  'name.honorificsuffix': { type: 'string', expr: scimText('name', 'honorificSuffix'), caseExact: false },
  displayname: { type: 'string', expr: sql`coalesce(${scimText('displayName')}, ${formattedName})`, caseExact: false },
  // Filters see the primary address only (the indexed column); see the SCIM section of README.md.
  'emails.value': { type: 'string', expr: sql`${users.email}`, caseExact: false },
  'emails.type': { type: 'string', expr: primaryEmailType, caseExact: false },
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

/**
 * A text sort key with '' read as no value: names are stored as '' rather than NULL, and RFC 7644
 * §3.4.2.3 orders missing values last ascending and first descending, as orderOf does with NULLs.
 */
const sortText = (expr: SQL) => sql`nullif(${expr}, '')`;

/** sortBy attributes (RFC 7644 §3.4.2.3) → the expression ordered by; the id always breaks ties. */
export const USER_SORT_KEYS: Record<string, SQL> = {
  id: sql`${users.id}`,
  // As userName is shown (and filtered): the email stands in for a user without a username.
  username: sql`lower(coalesce(${users.username}, ${users.email})) collate "C"`,
  'emails.value': sql`lower(${users.email}) collate "C"`,
  emails: sql`lower(${users.email}) collate "C"`,
  'name.givenname': sortText(sql`lower(${users.firstName}) collate "C"`),
  'name.familyname': sortText(sql`lower(${users.lastName}) collate "C"`),
  displayname: sortText(sql`lower(coalesce(${scimText('displayName')}, ${formattedName}))`),
  externalid: sortText(sql`${users.scimExternalId}`),
  'meta.created': sql`${users.dateJoined}`,
  'meta.lastmodified': sql`${users.updatedAt}`,
  title: sortText(sql`lower(${scimText('title')})`),
  'enterprise:department': sortText(sql`lower(${scimText('enterprise', 'department')})`),
};
