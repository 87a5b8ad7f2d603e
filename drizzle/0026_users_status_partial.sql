DROP INDEX "users_org_status_idx";--> statement-breakpoint
DROP INDEX "users_status_idx";--> statement-breakpoint
CREATE INDEX "users_org_status_idx" ON "users" USING btree ("organization_id","status","id") WHERE status <> 'active';--> statement-breakpoint
CREATE INDEX "users_status_idx" ON "users" USING btree ("status","id") WHERE status <> 'active';