import { type Static, type TSchema, Type } from '@sinclair/typebox';
import { Ajv, type ErrorObject } from 'ajv';
import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { OrganizationCode, oversizedSettings, SETTINGS_MAX_BYTES } from '../organizations/organizations.schemas.js';

/**
 * The RBAC setup file (`gatehouse setup --file rbac.yaml`): organizations, modules, permissions and
 * roles described declaratively, in YAML or JSON (JSON is YAML 1.2, so one parser reads both and
 * every problem gets a line and column). This file reads and checks the shape; setup-file.ts
 * compares it with the database and setup-file.apply.ts writes it. The format is documented in
 * examples/rbac.yaml.
 */

const CODE_PATTERN = OrganizationCode.pattern as string;
const CODE_MESSAGE = 'must start with a letter or digit and hold only letters, digits, "_", "." and "-"';

const Code = (maxLength: number) =>
  Type.String({ minLength: 1, maxLength, pattern: CODE_PATTERN, 'x-message': CODE_MESSAGE });
const OrgCode = Code(OrganizationCode.maxLength ?? 100);
const ModuleCode = Code(64);
const RoleCode = Code(64);
const PermissionCode = Type.String({
  minLength: 3,
  maxLength: 100,
  pattern: '^[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+$',
  'x-message': 'must look like resource.action: lower-case words joined by "." (pid.create)',
});
const Action = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: '^[a-z][a-z0-9_]*$',
  'x-message': 'must be one lower-case word (create, view, …)',
});
const Name = Type.String({ minLength: 1, maxLength: 200 });
const Description = Type.String({ maxLength: 2000 });
/** A role's complete grant list, or "*": everything in the catalog once the file is applied. */
const Grants = <T extends TSchema>(item: T, what: string) =>
  Type.Union([Type.Literal('*'), Type.Array(item)], { 'x-message': `must be "*" or a list of ${what} codes` });

const strict = { additionalProperties: false } as const;

const OrganizationEntry = Type.Object(
  {
    code: OrgCode,
    name: Name,
    description: Type.Optional(Description),
    settings: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  strict,
);
const ModuleEntry = Type.Object(
  {
    code: ModuleCode,
    name: Name,
    description: Type.Optional(Description),
    order: Type.Optional(Type.Integer({ minimum: 0, maximum: 100_000 })),
    active: Type.Optional(Type.Boolean()),
  },
  strict,
);
const PermissionEntry = Type.Object(
  {
    code: PermissionCode,
    module: ModuleCode,
    /** Omitted: the last part of the code (`pid.create` → `create`) for a new permission. */
    action: Type.Optional(Action),
    name: Name,
    description: Type.Optional(Description),
  },
  strict,
);
const RoleEntry = Type.Object(
  {
    code: RoleCode,
    name: Name,
    level: Type.Integer({ minimum: 0, maximum: 1000 }),
    organization: Type.Optional(OrgCode),
    description: Type.Optional(Description),
    permissions: Type.Optional(Grants(PermissionCode, 'permission')),
    modules: Type.Optional(Grants(ModuleCode, 'module')),
  },
  strict,
);
const SetupFileBody = Type.Object(
  {
    organizations: Type.Optional(Type.Array(OrganizationEntry)),
    modules: Type.Optional(Type.Array(ModuleEntry)),
    permissions: Type.Optional(Type.Array(PermissionEntry)),
    roles: Type.Optional(Type.Array(RoleEntry)),
  },
  strict,
);

export type OrganizationEntry = Static<typeof OrganizationEntry>;
export type ModuleEntry = Static<typeof ModuleEntry>;
export type PermissionEntry = Static<typeof PermissionEntry>;
export type RoleEntry = Static<typeof RoleEntry>;

// Its own Ajv: the HTTP one removes unknown properties, and a setup file refuses them instead.
const ajv = new Ajv({ allErrors: true, strict: false, verbose: true });
const validateBody = ajv.compile(SetupFileBody);

/** A place in the file: keys and list indexes from the top, as in `roles[1].level`. */
export type FieldPath = (string | number)[];

export interface Problem {
  line: number;
  col: number;
  path: FieldPath;
  message: string;
}

/** A refused file: every problem found, each with its line, column and field. */
export class SetupFileError extends Error {
  constructor(
    readonly fileName: string,
    readonly problems: Problem[],
    /**
     * The entries without problems of their own, of a file of the right overall shape: their references
     * are checked against the database too, so that one run reports every problem (setup-file.ts).
     */
    readonly validPart?: SetupFile,
  ) {
    super(`${fileName}: ${problems.length} problem${problems.length === 1 ? '' : 's'}`);
    this.name = 'SetupFileError';
  }

  /** One line per problem, `rbac.yaml:14:12 roles[1].level: must be an integer`, in file order. */
  lines(): string[] {
    return [...this.problems]
      .sort((a, b) => a.line - b.line || a.col - b.col)
      .map(
        (p) => `${this.fileName}:${p.line}:${p.col} ${p.path.length > 0 ? `${formatPath(p.path)}: ` : ''}${p.message}`,
      );
  }
}

export function formatPath(path: FieldPath): string {
  let out = '';
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

export interface SetupFile {
  fileName: string;
  organizations: OrganizationEntry[];
  modules: ModuleEntry[];
  permissions: PermissionEntry[];
  roles: RoleEntry[];
  /** A problem placed at `path` (or the nearest enclosing value the file has). */
  problem(path: FieldPath, message: string): Problem;
  /**
   * Only in a file's valid part: each entry's index in the file (its place for problems), and the codes
   * of the entries left out, which references may still name without being reported a second time.
   */
  indexes?: Record<'organizations' | 'modules' | 'permissions' | 'roles', number[]>;
  leftOut?: { organizations: string[]; modules: string[]; permissions: string[] };
}

/** Reads a setup file; throws SetupFileError with every problem found, so nothing is applied from a bad file. */
export function parseSetupFile(text: string, fileName: string): SetupFile {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const at = (offset: number | undefined) => lineCounter.linePos(offset ?? 0);
  const refuse = (problems: Problem[]): never => {
    throw new SetupFileError(fileName, problems);
  };

  if (doc.errors.length > 0) {
    refuse(doc.errors.map((e) => ({ ...at(e.pos[0]), path: [], message: e.message })));
  }
  if (doc.contents === null) refuse([{ line: 1, col: 1, path: [], message: 'the file is empty' }]);

  /** The node at `path`, or the nearest ancestor that exists; `key` asks for a mapping key instead of its value. */
  const locate = (path: FieldPath, key = false) => {
    let node: unknown = doc.contents;
    let offset = (doc.contents as Node).range?.[0];
    for (const [i, segment] of path.entries()) {
      if (isAlias(node)) node = node.resolve(doc);
      let next: unknown;
      if (isSeq(node)) next = node.items[Number(segment)];
      else if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(segment));
        if (pair && key && i === path.length - 1) return at((pair.key as Node).range?.[0]);
        next = pair?.value;
      }
      const range = (next as Node | undefined)?.range;
      if (!range) break;
      node = next;
      offset = range[0];
    }
    return at(offset);
  };
  const problem = (path: FieldPath, message: string, key = false): Problem => ({
    ...locate(path, key),
    path,
    message,
  });

  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (err) {
    refuse([problem([], (err as Error).message)]);
  }
  const tooMany = oversizedFile(data, problem);
  if (tooMany) refuse([tooMany]);
  // Duplicates are looked for even in a file of the wrong shape, so one run reports both.
  const problems = validateBody(data) ? [] : describeSchemaErrors(validateBody.errors ?? [], data, problem);
  problems.push(...findDuplicates(data, problem));
  // Settings are measured on the organizations of the right shape, whatever else is wrong.
  const shaped: Pick<SetupFile, 'organizations' | 'indexes'> | undefined =
    problems.length === 0
      ? { organizations: (data as Static<typeof SetupFileBody>).organizations ?? [] }
      : validPartOf(fileName, data, problems, problem);
  problems.push(...oversizedSettingsOf(shaped?.organizations ?? [], problem, shaped?.indexes?.organizations));
  if (problems.length > 0) throw new SetupFileError(fileName, problems, validPartOf(fileName, data, problems, problem));

  const body = data as Static<typeof SetupFileBody>;
  return {
    fileName,
    organizations: body.organizations ?? [],
    modules: body.modules ?? [],
    permissions: body.permissions ?? [],
    roles: body.roles ?? [],
    problem,
  };
}

const SECTIONS = ['organizations', 'modules', 'permissions', 'roles'] as const;

/**
 * The most entries (all sections together) one file may hold. A file is applied in one transaction
 * whose audit events and plan are held in memory: past this, split it into several files.
 */
export const MAX_SETUP_ENTRIES = 100_000;

/** A file over MAX_SETUP_ENTRIES, placed at its largest section; checked before any entry is. */
function oversizedFile(data: unknown, problem: (path: FieldPath, message: string) => Problem): Problem | undefined {
  if (!isRecord(data)) return undefined;
  const sizes = SECTIONS.map((section) => {
    const list = data[section];
    return [section, Array.isArray(list) ? list.length : 0] as const;
  });
  const total = sizes.reduce((sum, [, n]) => sum + n, 0);
  if (total <= MAX_SETUP_ENTRIES) return undefined;
  const [largest] = [...sizes].sort((a, b) => b[1] - a[1])[0] as readonly [string, number];
  return problem(
    [largest],
    `the file holds ${total} entries; at most ${MAX_SETUP_ENTRIES} are taken in one file (split it)`,
  );
}

/**
 * The entries of a refused file that have no problem of their own, when the file is a mapping whose
 * sections are lists; undefined otherwise (nothing in it can be read as entries).
 */
function validPartOf(
  fileName: string,
  data: unknown,
  problems: Problem[],
  problem: (path: FieldPath, message: string) => Problem,
): SetupFile | undefined {
  if (!isRecord(data) || problems.some((p) => p.path.length === 0)) return undefined;
  const refused = (section: string, i: number) => problems.some((p) => p.path[0] === section && p.path[1] === i);
  const part = {
    valid: {} as Record<string, unknown[]>,
    indexes: {} as Record<string, number[]>,
    leftOut: {} as Record<string, string[]>,
  };
  for (const section of SECTIONS) {
    const list = data[section] ?? [];
    if (!Array.isArray(list) || problems.some((p) => p.path[0] === section && p.path.length === 1)) return undefined;
    part.valid[section] = [];
    part.indexes[section] = [];
    part.leftOut[section] = [];
    list.forEach((entry: unknown, i) => {
      if (!refused(section, i)) {
        part.valid[section]?.push(entry);
        part.indexes[section]?.push(i);
      } else if (isRecord(entry) && typeof entry.code === 'string') part.leftOut[section]?.push(entry.code);
    });
  }
  const { valid, indexes, leftOut } = part as unknown as {
    valid: Required<Static<typeof SetupFileBody>>;
    indexes: Record<(typeof SECTIONS)[number], number[]>;
    leftOut: Record<(typeof SECTIONS)[number], string[]>;
  };
  return { fileName, ...valid, problem, indexes, leftOut };
}

/** Organization settings over the API's limit (SETTINGS_MAX_BYTES as JSON): a file writes no more than a request. */
function oversizedSettingsOf(
  entries: OrganizationEntry[],
  problem: (path: FieldPath, message: string) => Problem,
  indexes: number[] | undefined,
): Problem[] {
  return entries.flatMap((entry, k) => {
    const bytes = oversizedSettings(entry.settings);
    return bytes === undefined
      ? []
      : [
          problem(
            ['organizations', indexes?.[k] ?? k, 'settings'],
            `must be at most ${SETTINGS_MAX_BYTES} bytes as JSON (these are ${bytes})`,
          ),
        ];
  });
}

const TYPE_NAMES: Record<string, string> = {
  integer: 'an integer',
  number: 'a number',
  string: 'a string',
  boolean: 'true or false',
  object: 'a mapping (key: value)',
  array: 'a list',
};

/** Ajv's errors as problems in the file's terms: field paths, positions and plain messages. */
function describeSchemaErrors(
  errors: ErrorObject[],
  data: unknown,
  problem: (path: FieldPath, message: string, key?: boolean) => Problem,
): Problem[] {
  const pathOf = (pointer: string): FieldPath => {
    const path: FieldPath = [];
    let value = data;
    for (const raw of pointer.split('/').slice(1)) {
      const segment = raw.replaceAll('~1', '/').replaceAll('~0', '~');
      const index = Array.isArray(value) ? Number(segment) : undefined;
      path.push(index ?? segment);
      value = (value as Record<string, unknown> | undefined)?.[segment];
    }
    return path;
  };
  // A failed "*"-or-list union: when the value is a list, its items' own errors say more than the union.
  const listed = new Set(
    errors.filter((e) => e.keyword === 'anyOf' && Array.isArray(e.data)).map((e) => e.instancePath),
  );
  const unions = new Set(errors.filter((e) => e.keyword === 'anyOf').map((e) => e.instancePath));

  const problems: Problem[] = [];
  const seen = new Set<string>();
  for (const e of errors) {
    const inUnion = unions.has(e.instancePath) && e.keyword !== 'anyOf';
    if (inUnion || (e.keyword === 'anyOf' && listed.has(e.instancePath))) continue;
    const path = pathOf(e.instancePath);
    const schema = (e.parentSchema ?? {}) as Record<string, unknown>;
    let found: Problem;
    switch (e.keyword) {
      case 'required':
        found = problem(path, `${e.params.missingProperty} is required`);
        break;
      case 'additionalProperties': {
        const allowed = Object.keys((schema.properties as object | undefined) ?? {}).join(', ');
        found = problem([...path, e.params.additionalProperty], `unknown key (expected one of: ${allowed})`, true);
        break;
      }
      case 'type':
        found = problem(
          path,
          path.length === 0
            ? 'the file must be a mapping of organizations, modules, permissions and roles'
            : `must be ${TYPE_NAMES[e.params.type as string] ?? e.params.type}`,
        );
        break;
      case 'minimum':
      case 'maximum':
        found = problem(path, `must be between ${schema.minimum} and ${schema.maximum}`);
        break;
      case 'minLength':
        found = problem(
          path,
          e.params.limit === 1 ? 'must not be empty' : `must be at least ${e.params.limit} characters`,
        );
        break;
      case 'maxLength':
        found = problem(path, `must be at most ${e.params.limit} characters`);
        break;
      default:
        found = problem(path, (schema['x-message'] as string | undefined) ?? e.message ?? 'is not valid');
    }
    const key = `${formatPath(found.path)}\n${found.message}`;
    if (!seen.has(key)) problems.push(found);
    seen.add(key);
  }
  return problems;
}

/**
 * Codes given twice (roles: twice in the same organization) and codes listed twice in one grant
 * list. Reads the raw data, skipping entries of the wrong shape (the schema reports those).
 */
function findDuplicates(data: unknown, problem: (path: FieldPath, message: string) => Problem): Problem[] {
  const problems: Problem[] = [];
  const entries = (section: string): Record<string, unknown>[] => {
    const list = isRecord(data) ? data[section] : undefined;
    return Array.isArray(list) ? list.map((item) => (isRecord(item) ? item : {})) : [];
  };
  const check = (section: string, keyOf: (entry: Record<string, unknown>) => string | undefined, what: string) => {
    const first = new Map<string, number>();
    entries(section).forEach((entry, i) => {
      const key = keyOf(entry);
      if (key === undefined) return;
      const earlier = first.get(key);
      if (earlier === undefined) first.set(key, i);
      else {
        const { line } = problem([section, earlier, 'code'], '');
        const name = section === 'roles' ? describeRole(key) : key;
        problems.push(problem([section, i, 'code'], `${what} ${name} is already defined at line ${line}`));
      }
    });
  };
  const code = (entry: Record<string, unknown>) => (typeof entry.code === 'string' ? entry.code : undefined);
  check('organizations', code, 'organization');
  check('modules', code, 'module');
  check('permissions', code, 'permission');
  check(
    'roles',
    (entry) => {
      const org = typeof entry.organization === 'string' ? entry.organization : null;
      return typeof entry.code === 'string' ? roleKey(org, entry.code) : undefined;
    },
    'role',
  );
  entries('roles').forEach((role, i) => {
    for (const field of ['permissions', 'modules'] as const) {
      const list = role[field];
      if (!Array.isArray(list)) continue;
      const seen = new Set<unknown>();
      list.forEach((item, j) => {
        if (typeof item === 'string' && seen.has(item))
          problems.push(problem(['roles', i, field, j], `${item} is listed twice`));
        seen.add(item);
      });
    }
  });
  return problems;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The identity of a role: its organization's code (empty for a global role) and its code. */
export function roleKey(organizationCode: string | null, code: string): string {
  return `${organizationCode ?? ''}/${code}`;
}

/** `engineer (global)` or `super_admin (DEFAULT)`. */
export function describeRole(key: string): string {
  const slash = key.indexOf('/');
  const org = key.slice(0, slash);
  return `${key.slice(slash + 1)} (${org === '' ? 'global' : org})`;
}
