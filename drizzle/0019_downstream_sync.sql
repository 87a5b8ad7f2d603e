CREATE TABLE "user_sync_states" (
	"organization_id" uuid NOT NULL,
	"integration_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"synced_version" timestamp with time zone,
	"synced_active" boolean DEFAULT false NOT NULL,
	"synced_at" timestamp with time zone,
	"attempted_at" timestamp with time zone NOT NULL,
	"last_error" text,
	CONSTRAINT "user_sync_states_organization_id_integration_id_user_id_pk" PRIMARY KEY("organization_id","integration_id","user_id")
);
--> statement-breakpoint
ALTER TABLE "user_sync_states" ADD CONSTRAINT "user_sync_states_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "user_sync_states" ADD CONSTRAINT "user_sync_states_integration_id_integrations_id_fk" FOREIGN KEY ("integration_id") REFERENCES "public"."integrations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "user_sync_states" ADD CONSTRAINT "user_sync_states_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "user_sync_states_failed_idx" ON "user_sync_states" USING btree ("integration_id","attempted_at") WHERE last_error is not null;