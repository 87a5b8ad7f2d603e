CREATE TABLE "activities" (
	"timestamp" timestamp with time zone DEFAULT now() NOT NULL,
	"id" uuid NOT NULL,
	"kind" text NOT NULL,
	"activity_type" text NOT NULL,
	"category" text NOT NULL,
	"severity" text DEFAULT 'info' NOT NULL,
	"success" boolean DEFAULT true NOT NULL,
	"organization_id" uuid,
	"user_id" uuid,
	"actor_type" text DEFAULT 'system' NOT NULL,
	"actor_id" uuid,
	"api_key_id" uuid,
	"object_type" text,
	"object_id" text,
	"description" text DEFAULT '' NOT NULL,
	"details" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"tags" text[] DEFAULT '{}'::text[] NOT NULL,
	"ip_address" text,
	"user_agent" text,
	"method" text,
	"path" text,
	"status" smallint,
	"duration_ms" double precision,
	"xid" bigint DEFAULT (pg_current_xact_id()::text)::bigint NOT NULL,
	"subject_ref" text,
	"actor_ref" text,
	"content_digest" text,
	CONSTRAINT "activities_timestamp_id_pk" PRIMARY KEY("timestamp","id")
) PARTITION BY RANGE ("timestamp");
--> statement-breakpoint
CREATE TABLE "activity_statistics" (
	"period_type" text NOT NULL,
	"period_start" timestamp with time zone NOT NULL,
	"period_end" timestamp with time zone NOT NULL,
	"organization_id" uuid,
	"total_activities" integer NOT NULL,
	"user_activities" integer NOT NULL,
	"system_activities" integer NOT NULL,
	"success_count" integer NOT NULL,
	"failure_count" integer NOT NULL,
	"request_count" integer NOT NULL,
	"by_category" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"p50_duration_ms" double precision,
	"p95_duration_ms" double precision,
	"computed_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "activity_statistics_period_key" UNIQUE NULLS NOT DISTINCT("period_type","period_start","organization_id")
);
--> statement-breakpoint
CREATE TABLE "audit_seals" (
	"id" bigserial PRIMARY KEY NOT NULL,
	"from_xid" bigint NOT NULL,
	"to_xid" bigint NOT NULL,
	"row_count" integer NOT NULL,
	"first_timestamp" timestamp with time zone,
	"last_timestamp" timestamp with time zone,
	"prev_hash" text NOT NULL,
	"hash" text NOT NULL,
	"sealed_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE INDEX "activities_user_idx" ON "activities" USING btree ("user_id","timestamp","id");--> statement-breakpoint
CREATE INDEX "activities_org_idx" ON "activities" USING btree ("organization_id","timestamp","id");--> statement-breakpoint
CREATE INDEX "activities_object_idx" ON "activities" USING btree ("object_type","object_id","timestamp");--> statement-breakpoint
CREATE INDEX "activities_audit_xid_idx" ON "activities" USING btree ("xid","id") WHERE kind = 'audit';--> statement-breakpoint
-- Hand-written (drizzle-kit knows no partitioning): a default partition so an insert never fails,
-- and monthly partitions (UTC) from last month to two months ahead; the maintenance job keeps
-- creating them ahead and drops those past the retention period.
CREATE TABLE "activities_default" PARTITION OF "activities" DEFAULT;--> statement-breakpoint
DO $$
DECLARE
  first_month timestamp := date_trunc('month', now() AT TIME ZONE 'UTC');
  m timestamp;
BEGIN
  FOR i IN -1..2 LOOP
    m := first_month + make_interval(months => i);
    EXECUTE format(
      'CREATE TABLE IF NOT EXISTS %I PARTITION OF activities FOR VALUES FROM (%L) TO (%L)',
      'activities_p' || to_char(m, 'YYYYMM'),
      to_char(m, 'YYYY-MM-DD') || ' 00:00:00+00',
      to_char(m + interval '1 month', 'YYYY-MM-DD') || ' 00:00:00+00');
  END LOOP;
END
$$;