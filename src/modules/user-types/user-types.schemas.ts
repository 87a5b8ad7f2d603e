import { type Static, Type } from '@fastify/type-provider-typebox';
import { Ajv, type SchemaValidateFunction, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { LOWEST_MIN_LENGTH } from '../../platform/crypto/password-policy.js';
import { isEmailAddress } from '../../platform/email-address.js';
import { AppError, fieldErrorsFromValidation, readablePattern } from '../../platform/http/errors.js';
import { Page, PageQuery } from '../../platform/http/pagination.js';
import { linearRegExp, UnsupportedPatternError } from '../../platform/linear-regexp.js';
import { Username } from '../users/users.schemas.js';
import { USER_STATUSES } from '../users/users.table.js';
import { userTypeErrors } from './user-types.errors.js';
import type { UserType } from './user-types.table.js';

const Code = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: readablePattern('^[a-z][a-z0-9_]*$', 'Use lower-case letters, digits and _, starting with a letter.'),
});
const Plural = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: readablePattern('^[a-z][a-z0-9_-]*$', 'Use lower-case letters, digits, _ and -, starting with a letter.'),
  description: 'The path segment of the typed routes, as in `/api/v1/users/students/`.',
});
const JsonSchema = Type.Record(Type.String(), Type.Unknown(), {
  description: 'JSON Schema (draft 07) for the profile data of users of this type.',
});
const OrganizationCode = Type.String({ minLength: 1, maxLength: 100 });

export const UserTypeView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  organization: Type.Union([Type.String(), Type.Null()], { description: 'Organization code; null = global.' }),
  organization_id: Type.Union([Type.String({ format: 'uuid' }), Type.Null()]),
  code: Type.String(),
  plural: Type.String(),
  label: Type.String(),
  schema: JsonSchema,
  created_at: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});
export const UserTypePage = Page(UserTypeView);

export const CreateUserTypeBody = Type.Object(
  {
    code: Code,
    plural: Plural,
    label: Type.String({ minLength: 1, maxLength: 150 }),
    organization: Type.Optional(
      Type.Union([OrganizationCode, Type.Null()], {
        description:
          'Organization code; null for a global type (superusers only). Omitted: global for a superuser, the ' +
          'caller’s organization for anyone else. An `organization_id` in the body is refused (400 naming it).',
      }),
    ),
    schema: Type.Optional(JsonSchema),
  },
  // Closed, as the typed-user bodies are: a field this route does not take answers 400 naming it.
  { additionalProperties: false },
);
export type CreateUserTypeInput = Static<typeof CreateUserTypeBody>;

export const UpdateUserTypeBody = Type.Partial(
  Type.Object({ plural: Plural, label: Type.String({ minLength: 1, maxLength: 150 }), schema: JsonSchema }),
  { minProperties: 1, additionalProperties: false },
);
export type UpdateUserTypeInput = Static<typeof UpdateUserTypeBody>;

export const UserTypeIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });
export const ListUserTypesQuery = Type.Object({
  ...PageQuery,
  organization: Type.Optional(OrganizationCode),
});

// --- typed users

const Profile = Type.Record(Type.String(), Type.Unknown(), {
  description: "Profile data, validated against the user type's JSON Schema.",
});
const Name = Type.String({ maxLength: 150 });

export const PluralParams = Type.Object({ plural: Type.String({ maxLength: 64 }) });
export const TypedUserParams = Type.Object({
  plural: Type.String({ maxLength: 64 }),
  id: Type.String({ maxLength: 64 }),
});

export const TypedUserQuery = Type.Object({
  organization: Type.Optional(
    Type.String({
      minLength: 1,
      maxLength: 100,
      description:
        'Superusers: the organization the user must be in (default: whichever it is); the plural is resolved ' +
        'in the user’s organization. Others reach their own organization’s users only.',
    }),
  ),
});

export const TypedUserView = Type.Object({
  id: Type.String({ format: 'uuid' }),
  organization: Type.String(),
  organization_id: Type.String({ format: 'uuid' }),
  user_type: Type.String(),
  username: Type.Union([Type.String(), Type.Null()]),
  email: Type.String(),
  first_name: Type.String(),
  last_name: Type.String(),
  profile: Profile,
  status: Type.Union(USER_STATUSES.map((s) => Type.Literal(s))),
  is_active: Type.Boolean(),
  mfa_enabled: Type.Boolean({
    description: 'Read-only: whether a confirmed TOTP authenticator is on (a pending enrolment is not).',
  }),
  date_joined: Type.String({ format: 'date-time' }),
  updated_at: Type.String({ format: 'date-time' }),
});
export const TypedUserPage = Page(TypedUserView);

export const ListTypedUsersQuery = Type.Object(
  { ...PageQuery, organization: Type.Optional(OrganizationCode) },
  {
    patternProperties: { '^profile\\.': Type.String({ maxLength: 500 }) },
    description: 'Filter on profile data with `profile.<key>=<value>` (exact match; several are combined with AND).',
  },
);

export const CreateTypedUserBody = Type.Object(
  {
    email: Type.String({ format: 'email', maxLength: 254 }),
    username: Type.Optional(Username),
    first_name: Type.Optional(Name),
    last_name: Type.Optional(Name),
    password: Type.Optional(Type.String({ minLength: LOWEST_MIN_LENGTH, maxLength: 1024 })),
    organization: Type.Optional(
      Type.String({
        minLength: 1,
        maxLength: 100,
        description:
          'Organization code (default: the type’s organization, else the caller’s). An `organization_id` in the body is refused (400 naming it).',
      }),
    ),
    profile: Type.Optional(Profile),
  },
  // Closed, as the typed PATCH is: a field the plain user create takes but this one does not (is_staff,
  // is_superuser, user_type, attributes, status) answers 400 naming it, rather than 201 for a user
  // created without it. The type is the one the path names.
  { additionalProperties: false },
);
export type CreateTypedUserInput = Static<typeof CreateTypedUserBody>;

export const UpdateTypedUserBody = Type.Partial(
  Type.Object({
    email: Type.String({ format: 'email', maxLength: 254 }),
    username: Type.Union([Username, Type.Null()]),
    first_name: Name,
    last_name: Name,
    status: Type.Union(USER_STATUSES.map((s) => Type.Literal(s))),
    is_active: Type.Boolean({
      description:
        'false deactivates the user; true reactivates a deactivated one. Given with `status`, they must agree.',
    }),
    profile: Type.Record(Type.String(), Type.Unknown(), {
      description: 'Keys to set; a key set to null is removed. The result must match the type’s schema.',
    }),
  }),
  // Closed: a field this route does not take (a password, is_staff, a misspelling) answers 400 naming
  // it, rather than 200 for a change not made. Fields the view shows are sent back freely (partialUpdate).
  { minProperties: 1, additionalProperties: false },
);
export type UpdateTypedUserInput = Static<typeof UpdateTypedUserBody>;

// Profile data against a type's JSON Schema: here, beside the schemas, so the provisioning core can
// check every user write without importing the user-types service (which uses the core).
// Profile schemas are user-supplied: no type coercion, no defaults injected, unknown keywords tolerated,
// and their patterns (`pattern`, `patternProperties`) run on a linear-time engine, since one
// backtracking pattern would hold the event loop, and so every organization, for as long as it runs.
// Formats are ajv-formats' own, but for `email`, judged as the user's own address is: a schema cannot
// define one.
const validators = new Map<string, ValidateFunction>();

/**
 * Compiles a type's schema, or refuses it with 400 naming `schema` (or the pattern inside it). Each
 * schema gets an Ajv instance of its own: Ajv registers a schema's `$id` in its instance, so in a
 * shared one a type naming an `$id` could not be compiled a second time, and one organization's `$id`
 * would block (and reveal) another's. A `$ref` reaches nothing outside the schema itself either.
 */
export function compileSchema(schema: Record<string, unknown>): ValidateFunction {
  assertTakesObjects(schema);
  assertWithinLimits(schema);
  const ajv = new Ajv({ allErrors: true, strict: false, code: { regExp: linearRegExp } });
  addFormats.default(ajv);
  ajv.addFormat('email', { type: 'string', validate: isEmailAddress });
  // Ajv compares every pair of items (9,000 small arrays: 1.5 s), and with allErrors a `maxItems`
  // beside it does not spare that: one pass over each item's canonical text is linear.
  ajv.removeKeyword('uniqueItems');
  ajv.addKeyword({
    keyword: 'uniqueItems',
    type: 'array',
    schemaType: 'boolean',
    errors: true,
    validate: hasUniqueItems,
  });
  try {
    const validate = ajv.compile(schema);
    // A $ref the walk above cannot follow (one naming an `$id`) may still lead back to where it
    // started: tried once on the empty profile, it is refused here rather than at every user write.
    validate({});
    return validate;
  } catch (err) {
    if (err instanceof UnsupportedPatternError) {
      throw userTypeErrors.invalidSchema(err.message, patternPath(schema, err.pattern));
    }
    if (err instanceof RangeError) {
      // Ajv inlines a $ref that leads only to other $refs until the stack runs out.
      const cycle = refCycle(schema);
      if (cycle) {
        throw userTypeErrors.invalidSchema(
          `its $refs form a cycle that never reaches a schema (${cycle.refs.join(' → ')}).`,
          cycle.field,
        );
      }
      throw userTypeErrors.invalidSchema(
        'it nests or refers too deeply to be compiled, or a $ref applies a schema to the value it is already validating.',
      );
    }
    // Ajv's own refusals name what is wrong in the schema ("can't resolve reference …"); an error of
    // the engine itself (a TypeError) would say nothing to the schema's author.
    if (err instanceof TypeError || err instanceof ReferenceError || err instanceof SyntaxError) {
      throw userTypeErrors.invalidSchema('it cannot be compiled.');
    }
    throw userTypeErrors.invalidSchema((err as Error).message);
  }
}

/** JSON text with every object's keys sorted: equal for two values exactly when JSON Schema deems them equal. */
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/** `uniqueItems` (draft 07 §6.4.5) in one pass, with Ajv's own error for the first repeated item. */
const hasUniqueItems: SchemaValidateFunction = (unique: boolean, data: unknown[]): boolean => {
  if (!unique) return true;
  const seen = new Map<string, number>();
  for (const [j, item] of data.entries()) {
    const key = canonicalJson(item);
    const i = seen.get(key);
    if (i !== undefined) {
      hasUniqueItems.errors = [
        {
          keyword: 'uniqueItems',
          message: `must NOT have duplicate items (items ## ${i} and ${j} are identical)`,
          params: { i: j, j: i },
        },
      ];
      return false;
    }
    seen.set(key, j);
  }
  return true;
};

/**
 * A profile is a JSON object: a root `type` that does not allow one (`"string"`, `"array"`,
 * `["null", "integer"]`) would refuse every profile, the empty one included, and leave the type
 * unusable for writing users.
 */
function assertTakesObjects(schema: Record<string, unknown>): void {
  const type = schema.type;
  if (type === undefined) return;
  const types = Array.isArray(type) ? type : [type];
  if (types.includes('object')) return;
  throw userTypeErrors.invalidSchema(
    `its root must take an object (the profile), so its "type" must be "object" or a list holding it, not ${JSON.stringify(type)}.`,
  );
}

/**
 * What a profile schema may hold at most, so that compiling it (Ajv generates and compiles code, in
 * time growing faster than the schema: 1,000 properties took about 1 s, 5,000 about 17 s) and
 * validating a profile against it stay within milliseconds, on the event loop every organization
 * shares. The school template's largest type uses 12 subschemas.
 */
export const SCHEMA_LIMITS = {
  /** Its JSON text, in bytes. */
  bytes: 32 * 1024,
  /** Schemas in it, the root included (each property's, each item of `allOf`, …). */
  subschemas: 128,
  /** Schemas inside schemas, counted from the root. */
  depth: 16,
  /** `pattern`s and `patternProperties` keys, each a regular expression RE2 compiles and runs. */
  patterns: 16,
  /**
   * Schema applications in one validation, counting a schema once per way it is reached (`$ref`s
   * to one definition from several places count each time): what a profile costs, per array item.
   */
  applications: 1024,
} as const;

/** Keywords whose value is one schema, a list of schemas, or a map of names to schemas (draft 07). */
const ONE_SCHEMA = [
  'additionalItems',
  'additionalProperties',
  'contains',
  'propertyNames',
  'not',
  'if',
  'then',
  'else',
];
const SCHEMA_LISTS = ['allOf', 'anyOf', 'oneOf', 'items'];
const SCHEMA_MAPS = ['properties', 'patternProperties', 'definitions', 'dependencies'];

interface SchemaNode {
  path: string;
  depth: number;
  /** The schemas a validation applies next, to this value or one inside it, with the field of each. */
  applied: { node: object; field: string }[];
}

/** Every schema object in `root` by keyword (not by every JSON object: `enum` and `const` hold data). */
function schemaNodes(root: Record<string, unknown>): Map<object, SchemaNode> {
  const nodes = new Map<object, SchemaNode>();
  const isNode = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  const visit = (schema: Record<string, unknown>, path: string, depth: number): void => {
    if (nodes.has(schema)) return;
    const node: SchemaNode = { path, depth, applied: [] };
    nodes.set(schema, node);
    const child = (keyword: string, value: unknown, at: string) => {
      if (!isNode(value)) return;
      // Definitions apply only where a $ref names them.
      if (keyword !== 'definitions') node.applied.push({ node: value, field: at });
      visit(value, at, depth + 1);
    };
    for (const keyword of ONE_SCHEMA) child(keyword, schema[keyword], `${path}.${keyword}`);
    for (const keyword of SCHEMA_LISTS) {
      const value = schema[keyword];
      if (Array.isArray(value)) {
        for (const [i, v] of value.entries()) child(keyword, v, `${path}.${keyword}.${i}`);
      } else if (keyword === 'items') child(keyword, value, `${path}.${keyword}`);
    }
    for (const keyword of SCHEMA_MAPS) {
      const map = schema[keyword];
      if (!isNode(map)) continue;
      for (const [name, value] of Object.entries(map)) child(keyword, value, `${path}.${keyword}.${name}`);
    }
    if (typeof schema.$ref === 'string') {
      const target = resolvePointer(root, schema.$ref);
      if (isNode(target)) {
        node.applied.push({ node: target, field: `${path}.$ref` });
        // A $ref may point anywhere in the document, into a keyword no walk reaches.
        visit(target, schema.$ref === '#' ? 'schema' : `schema${schema.$ref.slice(1).replaceAll('/', '.')}`, depth + 1);
      }
    }
  };
  visit(root, 'schema', 0);
  return nodes;
}

/**
 * Refuses a schema beyond SCHEMA_LIMITS, or a recursive one: a `$ref` to a schema enclosing it.
 * Applied to the same value (`{"$ref": "#"}`, `{"allOf": [{"$ref": "#"}]}`) validation would call
 * itself until the stack runs out; through a property it ends with the profile's nesting, but two
 * such paths double the work at every level (`{"allOf": [A, A]}` where A recurses through
 * `properties`), which 64 levels of profile make endless. A user's profile needs no recursion.
 */
function assertWithinLimits(schema: Record<string, unknown>): void {
  const refuse = (message: string, field = 'schema'): never => {
    throw userTypeErrors.invalidSchema(message, field);
  };
  const bytes = Buffer.byteLength(JSON.stringify(schema));
  if (bytes > SCHEMA_LIMITS.bytes)
    refuse(`it must be at most ${SCHEMA_LIMITS.bytes} bytes written out (this is ${bytes}).`);
  const nodes = schemaNodes(schema);
  if (nodes.size > SCHEMA_LIMITS.subschemas) {
    refuse(`it may hold at most ${SCHEMA_LIMITS.subschemas} schemas, the root included (this holds ${nodes.size}).`);
  }
  let patterns = 0;
  for (const [s, node] of nodes) {
    const at = s as Record<string, unknown>;
    if (node.depth > SCHEMA_LIMITS.depth) {
      refuse(`schemas may nest at most ${SCHEMA_LIMITS.depth} deep.`, node.path);
    }
    if (typeof at.pattern === 'string') patterns++;
    if (typeof at.patternProperties === 'object' && at.patternProperties !== null) {
      patterns += Object.keys(at.patternProperties).length;
    }
  }
  if (patterns > SCHEMA_LIMITS.patterns) {
    refuse(
      `it may hold at most ${SCHEMA_LIMITS.patterns} patterns (pattern, patternProperties); this holds ${patterns}.`,
    );
  }
  const cycle = refCycle(schema);
  if (cycle) {
    refuse(`its $refs form a cycle that never reaches a schema (${cycle.refs.join(' → ')}).`, cycle.field);
  }
  // Depth-first over the schemas a validation applies: one met again on the current path is a
  // recursion; the count of paths is how many schema applications one validation makes.
  const applications = new Map<object, number>();
  const onPath = new Set<object>();
  const count = (s: object): number => {
    const known = applications.get(s);
    if (known !== undefined) return known;
    onPath.add(s);
    let total = 1;
    for (const { node, field } of nodes.get(s)?.applied ?? []) {
      if (onPath.has(node)) {
        refuse(
          `${field} refers back to a schema enclosing it, a cycle: a profile schema may not be recursive ` +
            `(its validation could apply the same schema to the same value without end, or ` +
            'twice as often at every level of the profile).',
          field,
        );
      }
      total += count(node);
      if (total > SCHEMA_LIMITS.applications) {
        refuse(
          `a validation may apply at most ${SCHEMA_LIMITS.applications} schemas, each counted once per way it is ` +
            'reached ($refs to one definition from several places count each time).',
          field,
        );
      }
    }
    onPath.delete(s);
    applications.set(s, total);
    return total;
  };
  count(schema);
}

/** The object a local JSON pointer (`#/definitions/a`, RFC 6901) names in `root`, if any. */
function resolvePointer(root: unknown, ref: string): unknown {
  // `#anchor` names an `$id`, not a pointer: not followed here.
  if (ref !== '#' && !ref.startsWith('#/')) return undefined;
  let node = root;
  for (const raw of ref.slice(1).split('/').slice(1)) {
    let key: string;
    try {
      key = decodeURIComponent(raw).replace(/~1/g, '/').replace(/~0/g, '~');
    } catch {
      return undefined;
    }
    if (typeof node !== 'object' || node === null || !Object.hasOwn(node, key)) return undefined;
    node = (node as Record<string, unknown>)[key];
  }
  return node;
}

/**
 * The first chain of local `$ref`s that comes back to where it started through `$ref`s alone (a
 * schema `{ "$ref": "#/definitions/b" }` whose target refers back), with the dotted field of the
 * `$ref` where the cycle closes.
 */
function refCycle(root: Record<string, unknown>): { refs: string[]; field: string } | undefined {
  const pathOf = new Map<unknown, string>();
  const walk = (node: unknown, path: string): void => {
    if (typeof node !== 'object' || node === null || pathOf.has(node)) return;
    pathOf.set(node, path);
    for (const [key, value] of Object.entries(node)) walk(value, `${path}.${key}`);
  };
  walk(root, 'schema');
  for (const start of pathOf.keys()) {
    const seen: unknown[] = [];
    const refs: string[] = [];
    let node: unknown = start;
    while (typeof node === 'object' && node !== null && typeof (node as { $ref?: unknown }).$ref === 'string') {
      const at = seen.indexOf(node);
      if (at >= 0) {
        const loop = refs.slice(at);
        return { refs: [...loop, loop[0] as string], field: `${pathOf.get(node)}.$ref` };
      }
      seen.push(node);
      const ref = (node as { $ref: string }).$ref;
      refs.push(ref);
      node = resolvePointer(root, ref);
    }
  }
  return undefined;
}

/** Where a pattern sits in a schema, as `schema.properties.code.pattern`; `schema` when not found. */
function patternPath(schema: unknown, pattern: string, path = 'schema'): string {
  if (typeof schema !== 'object' || schema === null) return 'schema';
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'pattern' && value === pattern) return `${path}.pattern`;
    if (key === 'patternProperties' && typeof value === 'object' && value !== null && pattern in value) {
      return `${path}.patternProperties`;
    }
    const found = patternPath(value, pattern, `${path}.${key}`);
    if (found !== 'schema') return found;
  }
  return 'schema';
}

function validatorOf(type: UserType): ValidateFunction {
  // Keyed on the last change, so an edited schema applies at once, without a restart. Compiling
  // takes ~10 ms (an Ajv instance each); a cached validator holds ~15 KB.
  const key = `${type.id}:${type.updatedAt.getTime()}`;
  let validate = validators.get(key);
  if (!validate) {
    try {
      validate = compileSchema(type.schema);
    } catch (err) {
      // Stored before patterns had to run in linear time: not the writer's fault, the type's.
      const reason = err instanceof AppError ? (err.errors?.[0]?.message ?? err.message) : (err as Error).message;
      throw userTypeErrors.storedSchemaUnusable(type.code, reason.replace(/^Not a usable JSON Schema: /, ''));
    }
    if (validators.size > 1_000) validators.clear();
    validators.set(key, validate);
  }
  return validate;
}

/**
 * Refuses profile data that does not match the type's schema, naming each field as `<field>.<path>`:
 * `field` is where the request holds the profile (`profile` on the typed routes, `attributes.profile`
 * where the request gives attributes).
 */
export function validateProfile(type: UserType, profile: Record<string, unknown>, field = 'profile'): void {
  const validate = validatorOf(type);
  let valid: boolean;
  try {
    valid = validate(profile) as boolean;
  } catch (err) {
    // A schema stored before self-applying $refs were refused calls itself until the stack runs out.
    if (err instanceof RangeError) {
      throw userTypeErrors.storedSchemaUnusable(type.code, 'validating a profile against it never ends');
    }
    throw err;
  }
  if (valid) return;
  const errors = fieldErrorsFromValidation(validate.errors ?? []).map((e) => ({
    field: e.field === 'body' ? field : `${field}.${e.field}`,
    message: e.message,
  }));
  throw userTypeErrors.invalidProfile(errors);
}
