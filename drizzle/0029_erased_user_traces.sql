ALTER TABLE "integration_logs" ADD COLUMN "user_ids" uuid[];--> statement-breakpoint
ALTER TABLE "mail_outbox" ADD COLUMN "user_id" uuid;--> statement-breakpoint
CREATE INDEX "integration_logs_user_ids_idx" ON "integration_logs" USING gin ("user_ids") WHERE "integration_logs"."user_ids" is not null;--> statement-breakpoint
CREATE INDEX "mail_outbox_user_idx" ON "mail_outbox" USING btree ("user_id") WHERE "mail_outbox"."user_id" is not null;