ALTER TABLE "users" ADD COLUMN "scim_external_id" text;--> statement-breakpoint
CREATE UNIQUE INDEX "users_org_scim_external_id_key" ON "users" USING btree ("organization_id","scim_external_id");