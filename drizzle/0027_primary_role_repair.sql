-- Users whose primary role was unmarked or deleted without another taking its place: their most
-- powerful remaining role (lowest level, then code) becomes primary, as the service now does.
UPDATE "user_roles" SET "is_primary" = true
WHERE ("user_id", "role_id") IN (
  SELECT DISTINCT ON (ur."user_id") ur."user_id", ur."role_id"
  FROM "user_roles" ur
  JOIN "roles" r ON r."id" = ur."role_id"
  WHERE NOT EXISTS (
    SELECT 1 FROM "user_roles" p WHERE p."user_id" = ur."user_id" AND p."is_primary"
  )
  ORDER BY ur."user_id", r."level", r."code"
);
