DROP INDEX "users_org_email_lower_idx";--> statement-breakpoint
DROP INDEX "users_org_email_key";--> statement-breakpoint
CREATE UNIQUE INDEX "users_org_email_key" ON "users" USING btree ("organization_id",lower("email") collate "C");