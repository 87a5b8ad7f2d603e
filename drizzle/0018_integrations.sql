CREATE TABLE "integration_health_checks" (
	"organization_id" uuid NOT NULL,
	"id" uuid PRIMARY KEY NOT NULL,
	"integration_id" uuid NOT NULL,
	"status" text NOT NULL,
	"response_time_ms" integer,
	"http_status" integer,
	"error_message" text,
	"checked_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "integration_health_checks_status_check" CHECK ("integration_health_checks"."status" in ('success', 'failure', 'timeout'))
);
--> statement-breakpoint
CREATE TABLE "integration_logs" (
	"organization_id" uuid NOT NULL,
	"id" uuid PRIMARY KEY NOT NULL,
	"integration_id" uuid NOT NULL,
	"method" text NOT NULL,
	"endpoint" text NOT NULL,
	"request_headers" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"request_body" text,
	"response_status" integer,
	"response_body" text,
	"duration_ms" integer NOT NULL,
	"success" boolean NOT NULL,
	"error_message" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "integration_oauth2_states" (
	"state_hash" text PRIMARY KEY NOT NULL,
	"organization_id" uuid NOT NULL,
	"integration_id" uuid NOT NULL,
	"code_verifier_sealed" text NOT NULL,
	"redirect_uri" text NOT NULL,
	"created_by" uuid,
	"expires_at" timestamp with time zone NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "integration_oauth2_tokens" (
	"organization_id" uuid NOT NULL,
	"integration_id" uuid NOT NULL,
	"access_token_sealed" text NOT NULL,
	"refresh_token_sealed" text,
	"token_type" text DEFAULT 'Bearer' NOT NULL,
	"scope" text,
	"expires_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "integration_oauth2_tokens_organization_id_integration_id_pk" PRIMARY KEY("organization_id","integration_id")
);
--> statement-breakpoint
CREATE TABLE "integrations" (
	"organization_id" uuid NOT NULL,
	"id" uuid PRIMARY KEY NOT NULL,
	"name" text NOT NULL,
	"service_type" text NOT NULL,
	"provider_name" text DEFAULT '' NOT NULL,
	"description" text DEFAULT '' NOT NULL,
	"auth_type" text NOT NULL,
	"base_url" text NOT NULL,
	"health_check_path" text DEFAULT '/' NOT NULL,
	"api_key_header" text DEFAULT 'X-API-Key' NOT NULL,
	"timeout_ms" integer DEFAULT 10000 NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"is_test_mode" boolean DEFAULT false NOT NULL,
	"settings" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"oauth2" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"credentials_sealed" text,
	"credential_hints" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"health_status" text DEFAULT 'UNKNOWN' NOT NULL,
	"consecutive_failures" integer DEFAULT 0 NOT NULL,
	"total_requests" bigint DEFAULT 0 NOT NULL,
	"failed_requests" bigint DEFAULT 0 NOT NULL,
	"last_health_check_at" timestamp with time zone,
	"last_used_at" timestamp with time zone,
	"created_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "integrations_health_status_check" CHECK ("integrations"."health_status" in ('HEALTHY', 'DEGRADED', 'DOWN', 'UNKNOWN'))
);
--> statement-breakpoint
ALTER TABLE "integration_health_checks" ADD CONSTRAINT "integration_health_checks_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integration_health_checks" ADD CONSTRAINT "integration_health_checks_integration_id_integrations_id_fk" FOREIGN KEY ("integration_id") REFERENCES "public"."integrations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integration_logs" ADD CONSTRAINT "integration_logs_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integration_logs" ADD CONSTRAINT "integration_logs_integration_id_integrations_id_fk" FOREIGN KEY ("integration_id") REFERENCES "public"."integrations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integration_oauth2_states" ADD CONSTRAINT "integration_oauth2_states_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integration_oauth2_states" ADD CONSTRAINT "integration_oauth2_states_integration_id_integrations_id_fk" FOREIGN KEY ("integration_id") REFERENCES "public"."integrations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integration_oauth2_states" ADD CONSTRAINT "integration_oauth2_states_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integration_oauth2_tokens" ADD CONSTRAINT "integration_oauth2_tokens_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integration_oauth2_tokens" ADD CONSTRAINT "integration_oauth2_tokens_integration_id_integrations_id_fk" FOREIGN KEY ("integration_id") REFERENCES "public"."integrations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integrations" ADD CONSTRAINT "integrations_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "integrations" ADD CONSTRAINT "integrations_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "integration_health_checks_integration_idx" ON "integration_health_checks" USING btree ("integration_id","id");--> statement-breakpoint
CREATE INDEX "integration_logs_integration_idx" ON "integration_logs" USING btree ("integration_id","id");--> statement-breakpoint
CREATE INDEX "integration_oauth2_states_integration_idx" ON "integration_oauth2_states" USING btree ("integration_id");--> statement-breakpoint
CREATE UNIQUE INDEX "integrations_org_name_key" ON "integrations" USING btree ("organization_id",lower("name"));--> statement-breakpoint
CREATE INDEX "integrations_org_id_idx" ON "integrations" USING btree ("organization_id","id");--> statement-breakpoint
CREATE INDEX "integrations_active_checked_idx" ON "integrations" USING btree ("last_health_check_at") WHERE "integrations"."is_active";