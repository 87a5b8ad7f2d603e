import { sql } from 'drizzle-orm';
import { boolean, index, integer, pgTable, primaryKey, text, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { createdAt, idColumn, updatedAt } from '../../platform/db/columns.js';
import { organizations } from '../organizations/organizations.table.js';
import { userIdColumn } from '../users/users.table.js';

/**
 * The authorization model of seed 002. Modules and permissions form one platform-wide catalog;
 * roles are global (`organization_id` null) or owned by one organization; users hold roles.
 */

/** An application area (seed 002's `PID`, `QHSE`, …) that roles open to their holders. */
export const rbacModules = pgTable(
  'modules',
  {
    id: idColumn(),
    code: text('code').notNull(),
    name: text('name').notNull(),
    description: text('description').notNull().default(''),
    order: integer('sort_order').notNull().default(0),
    /** An inactive module opens nothing: neither access to it nor its permissions count. */
    isActive: boolean('is_active').notNull().default(true),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('modules_code_key').on(t.code)],
);

export const permissions = pgTable(
  'permissions',
  {
    id: idColumn(),
    code: text('code').notNull(),
    moduleId: uuid('module_id')
      .notNull()
      .references(() => rbacModules.id, { onDelete: 'cascade' }),
    action: text('action').notNull(),
    name: text('name').notNull(),
    description: text('description').notNull().default(''),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('permissions_code_key').on(t.code), index('permissions_module_idx').on(t.moduleId)],
);

export const roles = pgTable(
  'roles',
  {
    id: idColumn(),
    /** Null for a global role, offered to every organization. */
    organizationId: uuid('organization_id').references(() => organizations.id, { onDelete: 'cascade' }),
    code: text('code').notNull(),
    name: text('name').notNull(),
    /** Lower is more powerful: 0 is the top. */
    level: integer('level').notNull(),
    description: text('description').notNull().default(''),
    /** Created by migration (`super_admin`, `org_admin`, `viewer`); not deletable. */
    isBuiltin: boolean('is_builtin').notNull().default(false),
    /** A SCIM client's id for the role as a Group (RFC 7643 `externalId`), unique within the organization. */
    scimExternalId: text('scim_external_id'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    // Codes are unique among global roles and within each organization; an organization may reuse
    // a global code, and its own role then wins when assigning by code.
    uniqueIndex('roles_global_code_key').on(t.code).where(sql`${t.organizationId} is null`),
    uniqueIndex('roles_org_code_key').on(t.organizationId, t.code).where(sql`${t.organizationId} is not null`),
    // Partial: most roles have none, and `filter=externalId eq "…"` always names one.
    uniqueIndex('roles_org_scim_external_id_key')
      .on(t.organizationId, t.scimExternalId)
      .where(sql`${t.scimExternalId} is not null`),
  ],
);

const roleIdColumn = () =>
  uuid('role_id')
    .notNull()
    .references(() => roles.id, { onDelete: 'cascade' });

export const rolePermissions = pgTable(
  'role_permissions',
  {
    roleId: roleIdColumn(),
    permissionId: uuid('permission_id')
      .notNull()
      .references(() => permissions.id, { onDelete: 'cascade' }),
  },
  (t) => [
    primaryKey({ columns: [t.roleId, t.permissionId] }),
    index('role_permissions_permission_idx').on(t.permissionId),
  ],
);

export const roleModules = pgTable(
  'role_modules',
  {
    roleId: roleIdColumn(),
    moduleId: uuid('module_id')
      .notNull()
      .references(() => rbacModules.id, { onDelete: 'cascade' }),
  },
  (t) => [primaryKey({ columns: [t.roleId, t.moduleId] }), index('role_modules_module_idx').on(t.moduleId)],
);

export const userRoles = pgTable(
  'user_roles',
  {
    userId: userIdColumn(),
    roleId: roleIdColumn(),
    isPrimary: boolean('is_primary').notNull().default(false),
    /** Who assigned it; kept when that user is deleted. */
    assignedBy: uuid('assigned_by'),
    createdAt: createdAt(),
  },
  (t) => [
    primaryKey({ columns: [t.userId, t.roleId] }),
    index('user_roles_role_idx').on(t.roleId),
    uniqueIndex('user_roles_one_primary_key').on(t.userId).where(sql`${t.isPrimary}`),
  ],
);

export type RbacModule = typeof rbacModules.$inferSelect;
export type Permission = typeof permissions.$inferSelect;
export type Role = typeof roles.$inferSelect;
