DROP INDEX "activities_audit_actor_idx";--> statement-breakpoint
CREATE INDEX "activities_audit_actor_idx" ON "activities" USING btree ("actor_id") WHERE kind = 'audit' and actor_id is not null;