ALTER TABLE "activities" ADD COLUMN "text_digest" text;--> statement-breakpoint
ALTER TABLE "activities" ADD COLUMN "origin_digest" text;--> statement-breakpoint
ALTER TABLE "audit_seals" ADD COLUMN "line_format" smallint DEFAULT 1 NOT NULL;--> statement-breakpoint
ALTER TABLE "audit_seals" ADD COLUMN "rows_expired" boolean DEFAULT false NOT NULL;