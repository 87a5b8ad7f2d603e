CREATE TABLE "user_types" (
	"organization_id" uuid,
	"id" uuid PRIMARY KEY NOT NULL,
	"code" text NOT NULL,
	"plural" text NOT NULL,
	"label" text NOT NULL,
	"schema" jsonb DEFAULT '{}'::jsonb NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "user_types_org_code_key" UNIQUE NULLS NOT DISTINCT("organization_id","code"),
	CONSTRAINT "user_types_org_plural_key" UNIQUE NULLS NOT DISTINCT("organization_id","plural")
);
--> statement-breakpoint
ALTER TABLE "user_types" ADD CONSTRAINT "user_types_organization_id_organizations_id_fk" FOREIGN KEY ("organization_id") REFERENCES "public"."organizations"("id") ON DELETE cascade ON UPDATE no action;