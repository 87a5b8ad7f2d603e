import { type Static, Type } from '@fastify/type-provider-typebox';
import { readablePattern } from '../../platform/http/errors.js';
import { Page, PageQuery } from '../../platform/http/pagination.js';

const Id = Type.String({ format: 'uuid' });
const Timestamp = Type.String({ format: 'date-time' });
const Name = Type.String({ minLength: 1, maxLength: 200 });
const Description = Type.String({ maxLength: 2000 });
// Write bodies are closed: a misspelt field (`permisions`, `is_actve`) answers 400 naming it, where
// dropped in silence it would answer success for a change not made.
const closed = { additionalProperties: false } as const;

export const ModuleCode = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: readablePattern(
    '^[A-Za-z0-9][A-Za-z0-9_.-]*$',
    'Use letters, digits, _ . and -, starting with a letter or digit.',
  ),
  description: 'Stable identifier, e.g. `PID`.',
});
export const PermissionCode = Type.String({
  minLength: 1,
  maxLength: 128,
  pattern: readablePattern(
    '^[A-Za-z0-9][A-Za-z0-9_:-]*(\\.[A-Za-z0-9_:-]+)*$',
    'Use dot-separated parts of letters, digits, _ : and -, e.g. pid.create.',
  ),
  description: 'Dotted identifier, e.g. `pid.create`.',
});
export const RoleCode = Type.String({
  minLength: 1,
  maxLength: 64,
  pattern: readablePattern(
    '^[A-Za-z0-9][A-Za-z0-9_.-]*$',
    'Use letters, digits, _ . and -, starting with a letter or digit.',
  ),
  description:
    'Unique among global roles and within an organization. An organization’s role may share a global role’s ' +
    'code, except a built-in one (super_admin, org_admin, viewer).',
});
export const RoleLevel = Type.Integer({
  minimum: 0,
  maximum: 1000,
  description: 'Lower is more powerful: 0 is the top. Nobody may create or grant a role below their own level.',
});

// ---------------------------------------------------------------------------------------------
// Modules

export const ModuleView = Type.Object({
  id: Id,
  code: Type.String(),
  name: Type.String(),
  description: Type.String(),
  order: Type.Integer(),
  is_active: Type.Boolean(),
  created_at: Timestamp,
  updated_at: Timestamp,
});

export const CreateModuleBody = Type.Object(
  {
    code: ModuleCode,
    name: Name,
    description: Type.Optional(Description),
    order: Type.Optional(Type.Integer({ minimum: -1_000_000, maximum: 1_000_000 })),
    is_active: Type.Optional(Type.Boolean()),
  },
  closed,
);
export type CreateModuleInput = Static<typeof CreateModuleBody>;

export const UpdateModuleBody = Type.Partial(Type.Omit(CreateModuleBody, ['code']), { minProperties: 1, ...closed });
export type UpdateModuleInput = Static<typeof UpdateModuleBody>;

export const ListModulesQuery = Type.Object({ ...PageQuery, is_active: Type.Optional(Type.Boolean()) });
export const ModulePage = Page(ModuleView);

// ---------------------------------------------------------------------------------------------
// Permissions

export const PermissionView = Type.Object({
  id: Id,
  code: Type.String(),
  module: Type.String({ description: 'The module’s code.' }),
  module_id: Id,
  action: Type.String(),
  name: Type.String(),
  description: Type.String(),
  created_at: Timestamp,
  updated_at: Timestamp,
});

const Action = Type.String({ minLength: 1, maxLength: 64, description: 'What it allows: `create`, `view`, …' });

export const CreatePermissionBody = Type.Object(
  {
    code: PermissionCode,
    module: ModuleCode,
    action: Action,
    name: Name,
    description: Type.Optional(Description),
  },
  closed,
);
export type CreatePermissionInput = Static<typeof CreatePermissionBody>;

export const UpdatePermissionBody = Type.Partial(Type.Omit(CreatePermissionBody, ['code']), {
  minProperties: 1,
  ...closed,
});
export type UpdatePermissionInput = Static<typeof UpdatePermissionBody>;

export const ListPermissionsQuery = Type.Object({
  ...PageQuery,
  module: Type.Optional(Type.String({ maxLength: 64, description: 'Only this module’s permissions (code).' })),
});
export const PermissionPage = Page(PermissionView);

/** A module or permission named by code or id. */
export const CatalogRefParams = Type.Object({ ref: Type.String({ minLength: 1, maxLength: 128 }) });

// ---------------------------------------------------------------------------------------------
// Roles

export const RoleView = Type.Object({
  id: Id,
  code: Type.String(),
  name: Type.String(),
  level: Type.Integer(),
  description: Type.String(),
  organization: Type.Union([Type.String(), Type.Null()], { description: 'Owner’s code; null for a global role.' }),
  organization_id: Type.Union([Id, Type.Null()]),
  is_builtin: Type.Boolean(),
  permissions: Type.Array(Type.String(), { description: 'Codes of the permissions it grants.' }),
  modules: Type.Array(Type.String(), { description: 'Codes of the modules it opens.' }),
  created_at: Timestamp,
  updated_at: Timestamp,
});

const Codes = <T extends typeof PermissionCode | typeof ModuleCode>(code: T) =>
  Type.Array(code, { maxItems: 1000, uniqueItems: true });

export const CreateRoleBody = Type.Object(
  {
    code: RoleCode,
    name: Name,
    level: RoleLevel,
    description: Type.Optional(Description),
    organization: Type.Optional(
      Type.Union([Type.String({ minLength: 1, maxLength: 100 }), Type.Null()], {
        description:
          'Owner organization (code); null for a global role (superusers only). Omitted: global for a superuser, ' +
          'the caller’s organization for anyone else. An `organization_id` in the body is refused (400 naming it).',
      }),
    ),
    permissions: Type.Optional(Codes(PermissionCode)),
    modules: Type.Optional(Codes(ModuleCode)),
  },
  closed,
);
export type CreateRoleInput = Static<typeof CreateRoleBody>;

export const UpdateRoleBody = Type.Partial(
  Type.Object({
    name: Name,
    level: RoleLevel,
    description: Description,
    permissions: Codes(PermissionCode),
    modules: Codes(ModuleCode),
  }),
  { minProperties: 1, description: 'Given grant lists replace the role’s current ones.', ...closed },
);
export type UpdateRoleInput = Static<typeof UpdateRoleBody>;

export const ListRolesQuery = Type.Object({
  ...PageQuery,
  assignable: Type.Optional(
    Type.Boolean({
      description: 'Only roles the caller may assign: within their delegation ceiling (superusers: every role).',
    }),
  ),
  organization: Type.Optional(
    Type.String({
      maxLength: 100,
      description: 'Only this organization’s own roles (code); `global` for global ones.',
    }),
  ),
});
export const RolePage = Page(RoleView);
export const RoleIdParams = Type.Object({
  id: Type.String({
    minLength: 1,
    maxLength: 64,
    description: 'The role’s id. Not its code, which may name a global role and organizations’ roles alike.',
  }),
});

// ---------------------------------------------------------------------------------------------
// Assignments

export const AssignmentView = Type.Object({
  role: Type.String({ description: 'The role’s code.' }),
  role_id: Id,
  name: Type.String(),
  level: Type.Integer(),
  organization: Type.Union([Type.String(), Type.Null()], { description: 'The role’s owner; null when global.' }),
  organization_id: Type.Union([Id, Type.Null()], { description: 'The role’s owner; null when global.' }),
  is_primary: Type.Boolean(),
  assigned_by: Type.Union([Id, Type.Null()]),
  created_at: Timestamp,
});

export const AssignRoleBody = Type.Object(
  {
    role: Type.String({
      minLength: 1,
      maxLength: 64,
      description:
        'Role code: the user’s organization’s role of that code first, then the global one. A role id names ' +
        'one role exactly (the global role of a code the organization reuses).',
    }),
    is_primary: Type.Optional(
      Type.Boolean({
        description:
          'Make it the primary role (the first role always is). False on the primary role makes the most ' +
          'powerful other role (lowest level, then code) primary; the only role stays primary (400 naming is_primary).',
      }),
    ),
  },
  // An assignment has no expiry or scope of its own: such a field is refused, not read as granted.
  closed,
);
export type AssignRoleInput = Static<typeof AssignRoleBody>;

export const UserRolesParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) });
export const UserRoleParams = Type.Object({
  id: Type.String({ minLength: 1, maxLength: 64 }),
  role: Type.String({
    minLength: 1,
    maxLength: 64,
    description: 'Role id, or code: of the roles of that code the user holds, their organization’s first.',
  }),
});
export const ListUserRolesQuery = Type.Object({ ...PageQuery });
export const AssignmentPage = Page(AssignmentView);

// ---------------------------------------------------------------------------------------------
// Checks

export const EffectivePermissionsView = Type.Object({
  permissions: Type.Array(Type.String()),
  modules: Type.Array(Type.String()),
  roles: Type.Array(
    Type.Object({
      code: Type.String(),
      role_id: Id,
      organization: Type.Union([Type.String(), Type.Null()], {
        description: 'The role’s owner; null when global (a code may be both a global and an organization’s role).',
      }),
      level: Type.Integer(),
      is_primary: Type.Boolean(),
    }),
  ),
  level: Type.Union([Type.Integer(), Type.Null()], {
    description: 'The most powerful level held; null without roles.',
  }),
  is_superuser: Type.Boolean(),
});

export const AuthorizeBody = Type.Object(
  {
    user_id: Type.String({ format: 'uuid' }),
    permission: Type.Optional(PermissionCode),
    module: Type.Optional(ModuleCode),
  },
  { description: 'Name a permission, a module, or both (then both must hold).' },
);
export type AuthorizeInput = Static<typeof AuthorizeBody>;

export const AuthorizeView = Type.Object({
  allowed: Type.Boolean(),
  reason: Type.String({ description: 'The role and grant that allowed it, or what is missing.' }),
});
