DROP INDEX "activities_object_idx";--> statement-breakpoint
CREATE INDEX "activities_object_idx" ON "activities" USING btree ("object_type","object_id","timestamp") WHERE object_type is not null;