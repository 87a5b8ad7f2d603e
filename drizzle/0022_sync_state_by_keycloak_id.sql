ALTER TABLE "user_sync_states" DROP CONSTRAINT "user_sync_states_user_id_users_id_fk";
--> statement-breakpoint
ALTER TABLE "user_sync_states" ADD COLUMN "keycloak_id" text;--> statement-breakpoint
-- The downstream holds each user under its keycloak_id as it is now; a row whose user has none any
-- more names no identity that could still be deactivated there.
UPDATE "user_sync_states" AS s SET "keycloak_id" = u."external_id" FROM "users" AS u WHERE u."id" = s."user_id";--> statement-breakpoint
DELETE FROM "user_sync_states" WHERE "keycloak_id" IS NULL;--> statement-breakpoint
ALTER TABLE "user_sync_states" ALTER COLUMN "keycloak_id" SET NOT NULL;--> statement-breakpoint
ALTER TABLE "user_sync_states" DROP CONSTRAINT "user_sync_states_organization_id_integration_id_user_id_pk";--> statement-breakpoint
ALTER TABLE "user_sync_states" ADD CONSTRAINT "user_sync_states_organization_id_integration_id_keycloak_id_pk" PRIMARY KEY("organization_id","integration_id","keycloak_id");
