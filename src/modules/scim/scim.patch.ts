import type { Filter } from 'scim2-parse-filter';
import { scimErrors } from './scim.errors.js';
import { ENTERPRISE_URN, parseFilter } from './scim.filter.js';

/**
 * RFC 7644 §3.5.2 PATCH, applied to a resource's SCIM representation in memory. The result is
 * then read back like a PUT body, so PATCH and PUT share one validation and one write path.
 */

export const PATCH_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:PatchOp';

export type Resource = Record<string, unknown>;

export interface PatchOperation {
  op: 'add' | 'replace' | 'remove';
  path: string | undefined;
  value: unknown;
}

const CORE_URNS = ['urn:ietf:params:scim:schemas:core:2.0:user', 'urn:ietf:params:scim:schemas:core:2.0:group'];

/** Reads and checks a PatchOp body. */
export function readPatchBody(body: unknown, maxOperations = 1000): PatchOperation[] {
  if (!isObject(body)) throw scimErrors.invalidSyntax('The body must be a PatchOp object.');
  const schemas = body.schemas;
  if (!Array.isArray(schemas) || !schemas.includes(PATCH_SCHEMA)) {
    throw scimErrors.invalidSyntax(`"schemas" must be ["${PATCH_SCHEMA}"].`);
  }
  const operations = body.Operations ?? body.operations;
  if (!Array.isArray(operations) || operations.length === 0) {
    throw scimErrors.invalidSyntax('"Operations" must be a non-empty array.');
  }
  if (operations.length > maxOperations) throw scimErrors.tooMany(`At most ${maxOperations} operations per PATCH.`);
  return operations.map((raw, i) => {
    if (!isObject(raw)) throw scimErrors.invalidSyntax(`Operation ${i} must be an object.`);
    const op = typeof raw.op === 'string' ? raw.op.toLowerCase() : undefined;
    if (op !== 'add' && op !== 'replace' && op !== 'remove') {
      throw scimErrors.invalidSyntax(`Operation ${i}: "op" must be add, replace or remove.`);
    }
    const path = raw.path;
    if (path !== undefined && (typeof path !== 'string' || path.trim() === '')) {
      throw scimErrors.invalidPath(`Operation ${i}: "path" must be a non-empty string.`);
    }
    if (op === 'remove' && path === undefined) throw scimErrors.noTarget(`Operation ${i}: remove needs a "path".`);
    if (op !== 'remove' && raw.value === undefined) {
      throw scimErrors.invalidValue(`Operation ${i}: ${op} needs a "value".`);
    }
    return { op, path: path as string | undefined, value: raw.value };
  });
}

/** The parts of a PATCH path: `[urn:]attr[filter][.sub]`. */
export interface PatchPath {
  /** The extension object holding the attribute, when the path names one. */
  extension: string | undefined;
  attribute: string;
  filter: Filter | undefined;
  sub: string | undefined;
}

/** Parses a PATCH path (RFC 7644 §3.5.2, ABNF `PATH = attrPath / valuePath [subAttr]`). */
export function parsePatchPath(path: string): PatchPath {
  let rest = path.trim();
  let extension: string | undefined;
  const lower = rest.toLowerCase();
  if (lower.startsWith(ENTERPRISE_URN.toLowerCase())) {
    extension = ENTERPRISE_URN;
    rest = rest.slice(ENTERPRISE_URN.length);
    if (rest === '') return { extension: undefined, attribute: ENTERPRISE_URN, filter: undefined, sub: undefined };
    if (!rest.startsWith(':')) throw scimErrors.invalidPath(`"${path}" is not a valid path.`);
    rest = rest.slice(1);
  } else {
    for (const urn of CORE_URNS) {
      if (lower.startsWith(`${urn}:`)) rest = rest.slice(urn.length + 1);
    }
  }
  const open = rest.indexOf('[');
  if (open === -1) {
    if (!/^[A-Za-z$][\w$-]*(\.[A-Za-z$][\w$-]*)?$/.test(rest))
      throw scimErrors.invalidPath(`"${path}" is not a valid path.`);
    const [attribute, sub] = rest.split('.') as [string, string | undefined];
    return { extension, attribute, filter: undefined, sub };
  }
  const attribute = rest.slice(0, open);
  const close = closingBracket(rest, open);
  if (close === -1 || !/^[A-Za-z$][\w$-]*$/.test(attribute))
    throw scimErrors.invalidPath(`"${path}" is not a valid path.`);
  let filter: Filter;
  try {
    filter = parseFilter(rest.slice(open + 1, close));
  } catch {
    throw scimErrors.invalidPath(`The value filter in "${path}" cannot be parsed.`);
  }
  const after = rest.slice(close + 1);
  if (after !== '' && !/^\.[A-Za-z$][\w$-]*$/.test(after))
    throw scimErrors.invalidPath(`"${path}" is not a valid path.`);
  return { extension, attribute, filter, sub: after ? after.slice(1) : undefined };
}

/** Index of the `]` closing the `[` at `open`, skipping quoted strings. */
function closingBracket(text: string, open: number): number {
  let quoted = false;
  for (let i = open + 1; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '\\') i++;
      else if (c === '"') quoted = false;
    } else if (c === '"') quoted = true;
    else if (c === ']') return i;
  }
  return -1;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The key of `name` in `obj`, matched case-insensitively (RFC 7643 §2.1); `name` when absent. */
function keyIn(obj: Record<string, unknown>, name: string): string {
  const lower = name.toLowerCase();
  return Object.keys(obj).find((k) => k.toLowerCase() === lower) ?? name;
}

/** Whether a multi-valued attribute's element matches a value filter; strings compare case-insensitively. */
export function matchesValueFilter(element: unknown, filter: Filter): boolean {
  switch (filter.op) {
    case 'and':
      return filter.filters.every((f) => matchesValueFilter(element, f));
    case 'or':
      return filter.filters.some((f) => matchesValueFilter(element, f));
    case 'not':
      return !matchesValueFilter(element, filter.filter);
    case '[]':
      throw scimErrors.invalidPath('Value filters cannot be nested.');
  }
  const actual = isObject(element) ? element[keyIn(element, filter.attrPath)] : undefined;
  if (filter.op === 'pr') return actual !== undefined && actual !== null && actual !== '';
  const expected = filter.compValue;
  const a = typeof actual === 'string' ? actual.toLowerCase() : actual;
  const e = typeof expected === 'string' ? expected.toLowerCase() : expected;
  switch (filter.op) {
    case 'eq':
      return a === e || (e === null && (a === undefined || a === null));
    case 'ne':
      return a !== e;
    case 'co':
      return typeof a === 'string' && typeof e === 'string' && a.includes(e);
    case 'sw':
      return typeof a === 'string' && typeof e === 'string' && a.startsWith(e);
    case 'ew':
      return typeof a === 'string' && typeof e === 'string' && a.endsWith(e);
    default: {
      if (a === undefined || a === null || e === null || typeof a !== typeof e) return false;
      const x = a as string | number;
      const y = e as string | number;
      return filter.op === 'gt' ? x > y : filter.op === 'ge' ? x >= y : filter.op === 'lt' ? x < y : x <= y;
    }
  }
}

/**
 * How PATCH may treat an attribute (RFC 7643 §2.2 mutability): `readOnly` attributes are never
 * modified; `ignored` ones are accepted and dropped because the service computes or never takes them
 * (name.formatted, password).
 */
type PatchMutability = 'readWrite' | 'readOnly' | 'ignored';

export interface PatchAttribute {
  mutability: PatchMutability;
  /** Takes a value filter in a path (`emails[type eq "work"]`); a single-valued attribute does not. */
  multiValued?: boolean;
  /** Sub-attributes of a complex attribute by lower-case name; absent on a simple attribute. */
  sub?: Record<string, PatchMutability>;
}

/** `meta` (RFC 7643 §3.1), on every resource: read-only, sub-attributes included. */
export const META_ATTRIBUTE: PatchAttribute = {
  mutability: 'readOnly',
  sub: Object.fromEntries(
    ['resourcetype', 'created', 'lastmodified', 'location', 'version'].map((k) => [k, 'readOnly']),
  ),
};

/** The attributes PATCH may name on one resource type, by lower-case name. */
export interface PatchSchema {
  resourceType: string;
  attributes: Record<string, PatchAttribute>;
  /** Schema extensions by lower-case URN. */
  extensions: Record<string, Record<string, PatchAttribute>>;
}

/** Applies operations in order to a copy of the resource; any failure refuses the whole PATCH. */
export function applyPatch(resource: Resource, operations: PatchOperation[], schema: PatchSchema): Resource {
  const result = structuredClone(resource);
  for (const operation of operations) applyOperation(result, operation, schema);
  return result;
}

function applyOperation(resource: Resource, { op, path, value }: PatchOperation, schema: PatchSchema): void {
  if (path === undefined) {
    if (op === 'remove') throw scimErrors.noTarget('remove needs a "path".');
    // RFC 7644 §3.5.2.1/§3.5.2.3: without a path, the value is an object of attributes to add or replace.
    if (!isObject(value)) throw scimErrors.invalidValue(`${op} without a path needs an object value.`);
    for (const [name, v] of Object.entries(value)) {
      const extension = name.toLowerCase() === ENTERPRISE_URN.toLowerCase();
      if (extension && isObject(v)) {
        for (const [k, w] of Object.entries(v)) {
          const target = { extension: ENTERPRISE_URN, attribute: k, filter: undefined, sub: undefined };
          if (isWritable(schema, target, `${name}:${k}`, false)) setAttribute(resource, target, op, w);
        }
        continue;
      }
      // "schemas" states what the value is made of; the resource's own list does not change by PATCH.
      if (name.toLowerCase() === 'schemas') continue;
      const target =
        name.includes('.') || name.includes(':')
          ? parsePatchPath(name)
          : { extension: undefined, attribute: name, filter: undefined, sub: undefined };
      if (isWritable(schema, target, name, false)) setAttribute(resource, target, op, v);
    }
    return;
  }
  const target = parsePatchPath(path);
  if (!isWritable(schema, target, path, true)) return;
  if (op === 'remove') removeAttribute(resource, target, value);
  else setAttribute(resource, target, op, value);
}

/**
 * Whether an operation may change the target. A name the resource type does not have answers 400
 * invalidPath (RFC 7644 §3.5.2). A read-only attribute named by a path answers 400 mutability (§3.5.2:
 * "a client MUST NOT modify an attribute that has mutability readOnly"); inside a value without a
 * path it is skipped, as a PUT skips it (§3.5.1), because clients send back whole representations
 * that hold id and meta.
 */
function isWritable(schema: PatchSchema, target: PatchPath, name: string, withPath: boolean): boolean {
  const attribute = attributeOf(schema, target);
  if (!attribute) throw scimErrors.invalidPath(`"${name}" is not an attribute of a ${schema.resourceType}.`);
  if (target.filter && !attribute.multiValued) {
    throw scimErrors.invalidPath(`"${name}": only a multi-valued attribute takes a value filter.`);
  }
  if (target.filter && attribute.sub) {
    const unknown = filterAttributes(target.filter).find((a) => !attribute.sub?.[a.toLowerCase()]);
    if (unknown)
      throw scimErrors.invalidPath(`"${name}": "${unknown}" is not a sub-attribute of "${target.attribute}".`);
  }
  let mutability = attribute.mutability;
  if (target.sub !== undefined) {
    // RFC 7644 §3.5.2: a path that names no attribute of the resource is invalidPath; a simple
    // attribute (userName, title) has no sub-attribute to name.
    if (!attribute.sub) throw scimErrors.invalidPath(`"${name}": "${target.attribute}" has no sub-attributes.`);
    const sub = attribute.sub[target.sub.toLowerCase()];
    if (!sub) throw scimErrors.invalidPath(`"${name}" is not an attribute of a ${schema.resourceType}.`);
    if (mutability === 'readWrite') mutability = sub;
  }
  if (mutability === 'readOnly') {
    if (withPath) throw scimErrors.mutability(`"${name}" is read-only and cannot be modified.`);
    return false;
  }
  return mutability === 'readWrite';
}

function attributeOf(schema: PatchSchema, target: PatchPath): PatchAttribute | undefined {
  const name = target.attribute.toLowerCase();
  if (target.extension) return schema.extensions[target.extension.toLowerCase()]?.[name];
  // The extension named whole, e.g. a replace of all its attributes at once.
  if (schema.extensions[name]) return { mutability: 'readWrite' };
  return schema.attributes[name];
}

function containerOf(resource: Resource, target: PatchPath, create: boolean): Record<string, unknown> | undefined {
  if (!target.extension) return resource;
  const key = keyIn(resource, target.extension);
  const existing = resource[key];
  if (isObject(existing)) return existing;
  if (!create) return undefined;
  const created: Record<string, unknown> = {};
  resource[key] = created;
  return created;
}

function setAttribute(resource: Resource, target: PatchPath, op: 'add' | 'replace', value: unknown): void {
  const container = containerOf(resource, target, true) as Record<string, unknown>;
  const key = keyIn(container, target.attribute);
  const current = container[key];
  if (target.filter) {
    const matches = Array.isArray(current) ? current.filter((e) => matchesValueFilter(e, target.filter as Filter)) : [];
    if (matches.length === 0) {
      const created = op === 'add' ? elementNamedBy(target.filter) : undefined;
      if (!created) throw scimErrors.noTarget(`No value of "${target.attribute}" matches the filter.`);
      // Entra ID adds a mobile number as `phoneNumbers[type eq "mobile"].value`: the value it names.
      if (target.sub) created[target.sub] = value;
      else if (isObject(value)) Object.assign(created, value);
      else throw scimErrors.invalidValue('The value must be an object.');
      const values = [...(Array.isArray(current) ? current : []), created];
      demoteOtherPrimaries(values, [created]);
      container[key] = values;
      return;
    }
    for (const element of matches) {
      if (target.sub) {
        if (!isObject(element)) throw scimErrors.invalidPath(`"${target.attribute}" has no sub-attributes.`);
        element[keyIn(element, target.sub)] = value;
      } else {
        if (!isObject(element) || !isObject(value)) throw scimErrors.invalidValue('The value must be an object.');
        Object.assign(element, value);
      }
    }
    demoteOtherPrimaries(current as unknown[], matches);
    return;
  }
  if (target.sub) {
    if (Array.isArray(current)) {
      // A sub-attribute of a multi-valued attribute without a filter: every value (RFC 7644 §3.5.2.3).
      for (const element of current) if (isObject(element)) element[keyIn(element, target.sub)] = value;
      return;
    }
    const object = isObject(current) ? current : {};
    object[keyIn(object, target.sub)] = value;
    container[key] = object;
    return;
  }
  if (Array.isArray(current) || (current === undefined && Array.isArray(value))) {
    const values = Array.isArray(value) ? value : [value];
    if (op === 'replace') {
      container[key] = values;
      return;
    }
    container[key] = addValues((current ?? []) as unknown[], values);
    return;
  }
  // A singular complex attribute (name, manager, the extension object) takes the sub-attributes sent
  // and keeps the others, on replace as on add (RFC 7644 §3.5.2.1 and §3.5.2.3: "Sub-attributes that
  // are not specified in the value parameter are left unchanged").
  if (isObject(current) && isObject(value)) {
    for (const [name, v] of Object.entries(value)) current[keyIn(current, name)] = v;
    return;
  }
  container[key] = value;
}

/** The sub-attributes a value filter compares. */
function filterAttributes(filter: Filter): string[] {
  switch (filter.op) {
    case 'and':
    case 'or':
      return filter.filters.flatMap(filterAttributes);
    case 'not':
      return filterAttributes(filter.filter);
    case '[]':
      return [];
    default:
      return [filter.attrPath];
  }
}

/**
 * The new value an `add` through a value filter creates when no value matches it, from a filter of
 * equalities (`type eq "mobile"`, joined by `and`): those sub-attributes set as compared. RFC 7644
 * §3.5.2.1 says an add creates what its path names; identity providers rely on it. Any other filter
 * names no value to create (undefined).
 */
function elementNamedBy(filter: Filter): Record<string, unknown> | undefined {
  if (filter.op === 'and') {
    const parts = filter.filters.map(elementNamedBy);
    return parts.every((p) => p !== undefined) ? Object.assign({}, ...parts) : undefined;
  }
  if (filter.op !== 'eq' || filter.compValue === null || filter.attrPath.includes('.')) return undefined;
  return { [filter.attrPath]: filter.compValue };
}

/**
 * RFC 7644 §3.5.2.1 add to a multi-valued attribute: new values are appended; a value already there
 * (same "value") takes the sub-attributes sent with it, so an add can mark an existing address primary.
 */
function addValues(current: unknown[], values: unknown[]): unknown[] {
  const result = [...current];
  const touched: unknown[] = [];
  for (const v of values) {
    const existing = result.find((c) => same(c, v));
    if (existing === undefined) {
      result.push(v);
      touched.push(v);
    } else if (isObject(existing) && isObject(v)) {
      Object.assign(existing, v);
      touched.push(existing);
    }
  }
  demoteOtherPrimaries(result, touched);
  return result;
}

function isPrimary(element: unknown): boolean {
  if (!isObject(element)) return false;
  const primary = element[keyIn(element, 'primary')];
  return primary === true || (typeof primary === 'string' && primary.toLowerCase() === 'true');
}

/**
 * RFC 7644 §3.5.2: an operation that sets "primary" to true on a value sets it to false on the
 * attribute's other values, so a client can move the primary mark with a single operation.
 */
function demoteOtherPrimaries(values: unknown[], changed: unknown[]): void {
  if (!changed.some(isPrimary)) return;
  for (const element of values) {
    if (isObject(element) && !changed.includes(element) && isPrimary(element))
      element[keyIn(element, 'primary')] = false;
  }
}

function same(a: unknown, b: unknown): boolean {
  if (isObject(a) && isObject(b) && 'value' in a && 'value' in b) return a.value === b.value;
  return JSON.stringify(a) === JSON.stringify(b);
}

function removeAttribute(resource: Resource, target: PatchPath, value: unknown): void {
  const container = containerOf(resource, target, false);
  if (!container) return;
  const key = keyIn(container, target.attribute);
  const current = container[key];
  if (target.filter) {
    if (!Array.isArray(current)) return;
    const filter = target.filter;
    if (target.sub) {
      for (const element of current) {
        if (isObject(element) && matchesValueFilter(element, filter)) delete element[keyIn(element, target.sub)];
      }
      return;
    }
    container[key] = current.filter((e) => !matchesValueFilter(e, filter));
    return;
  }
  if (target.sub) {
    if (Array.isArray(current)) {
      for (const element of current) if (isObject(element)) delete element[keyIn(element, target.sub)];
    } else if (isObject(current)) delete current[keyIn(current, target.sub)];
    return;
  }
  // Azure AD and others send the values to take out of a multi-valued attribute (members) as the value.
  if (Array.isArray(current) && Array.isArray(value)) {
    container[key] = current.filter((c) => !value.some((v) => same(c, v)));
    return;
  }
  delete container[key];
}
