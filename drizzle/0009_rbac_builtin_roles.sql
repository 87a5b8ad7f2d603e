-- Gatehouse's own module, permissions and built-in roles. Every admin route names one of these
-- permissions; superusers hold them all without a role.
INSERT INTO "modules" ("id", "code", "name", "description", "sort_order")
VALUES (gen_random_uuid(), 'GATEHOUSE', 'Gatehouse administration', 'Users, organizations, roles, keys and audit of this installation', 0);
--> statement-breakpoint
INSERT INTO "permissions" ("id", "code", "module_id", "action", "name")
SELECT gen_random_uuid(), p.code, m.id, p.action, p.name
FROM "modules" m,
  (VALUES
    ('organizations.view', 'view', 'View organizations'),
    ('organizations.manage', 'manage', 'Manage organizations'),
    ('users.view', 'view', 'View users'),
    ('users.update', 'update', 'Create and update users'),
    ('users.delete', 'delete', 'Delete users'),
    ('user_types.manage', 'manage', 'Manage user types'),
    ('sessions.manage', 'manage', 'View and revoke sessions of other users'),
    ('roles.view', 'view', 'View modules, permissions, roles and assignments'),
    ('roles.manage', 'manage', 'Manage roles and assign them'),
    ('modules.manage', 'manage', 'Manage the module catalog'),
    ('permissions.manage', 'manage', 'Manage the permission catalog'),
    ('apikeys.manage', 'manage', 'Manage API keys'),
    ('activities.view', 'view', 'View activity and audit records'),
    ('integrations.view', 'view', 'View integrations'),
    ('integrations.manage', 'manage', 'Manage integrations')
  ) AS p(code, action, name)
WHERE m.code = 'GATEHOUSE';
--> statement-breakpoint
INSERT INTO "roles" ("id", "code", "name", "level", "description", "is_builtin")
VALUES
  (gen_random_uuid(), 'super_admin', 'Super administrator', 0, 'Every Gatehouse permission', true),
  (gen_random_uuid(), 'org_admin', 'Organization administrator', 1, 'Everything within one organization', true),
  (gen_random_uuid(), 'viewer', 'Viewer', 9, 'Read-only access to the administration', true);
--> statement-breakpoint
INSERT INTO "role_permissions" ("role_id", "permission_id")
SELECT r.id, p.id
FROM "roles" r JOIN "permissions" p ON true
WHERE r.organization_id IS NULL AND (
  r.code = 'super_admin'
  OR (r.code = 'org_admin' AND p.code NOT IN ('modules.manage', 'permissions.manage'))
  OR (r.code = 'viewer' AND p.code IN ('organizations.view', 'users.view', 'roles.view', 'activities.view', 'integrations.view'))
);
--> statement-breakpoint
INSERT INTO "role_modules" ("role_id", "module_id")
SELECT r.id, m.id
FROM "roles" r, "modules" m
WHERE r.organization_id IS NULL AND r.code IN ('super_admin', 'org_admin', 'viewer') AND m.code = 'GATEHOUSE';
