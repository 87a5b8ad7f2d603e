CREATE TABLE "downstream_sync_leases" (
	"organization_id" uuid NOT NULL,
	"integration_id" uuid NOT NULL,
	"holder" uuid NOT NULL,
	"lease_until" timestamp with time zone NOT NULL,
	CONSTRAINT "downstream_sync_leases_organization_id_integration_id_pk" PRIMARY KEY("organization_id","integration_id")
);
--> statement-breakpoint
ALTER TABLE "downstream_sync_leases" ADD CONSTRAINT "downstream_sync_leases_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "downstream_sync_leases" ADD CONSTRAINT "downstream_sync_leases_integration_id_integrations_id_fk" FOREIGN KEY ("integration_id") REFERENCES "public"."integrations"("id") ON DELETE cascade ON UPDATE no action;