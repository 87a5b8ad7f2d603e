import type { ActivityListRow } from './activity.queries.js';

/** An activity as the API shows it (contract §5 fields first). */
export function toActivityView(r: ActivityListRow) {
  return {
    id: r.id,
    kind: r.kind,
    activity_type: r.activity_type,
    category: r.category,
    severity: r.severity,
    success: r.success,
    user_id: r.user_id,
    organization: r.organization,
    organization_id: r.organization_id,
    actor_type: r.actor_type,
    actor_id: r.actor_id,
    api_key_id: r.api_key_id,
    object_type: r.object_type,
    object_id: r.object_id,
    description: r.description,
    details: r.details ?? {},
    tags: r.tags ?? [],
    ip_address: r.ip_address,
    user_agent: r.user_agent,
    method: r.method,
    path: r.path,
    status: r.status,
    duration_ms: r.duration_ms,
    // Milliseconds, as every other object shows time; the cursor carries the microseconds (`ts`).
    timestamp: `${r.ts.slice(0, 23)}Z`,
  };
}

/** The list's fields, in its order: the CSV export's columns. */
const CSV_COLUMNS = [
  'id',
  'kind',
  'activity_type',
  'category',
  'severity',
  'success',
  'user_id',
  'organization',
  'organization_id',
  'actor_type',
  'actor_id',
  'api_key_id',
  'object_type',
  'object_id',
  'description',
  'details',
  'tags',
  'ip_address',
  'user_agent',
  'method',
  'path',
  'status',
  'duration_ms',
  'timestamp',
] as const satisfies readonly (keyof ReturnType<typeof toActivityView>)[];

/** The CSV header; the lines are built by PostgreSQL (exportActivityLines) in this column order. */
export function toActivityCsvHeader(): string {
  return `${CSV_COLUMNS.join(',')}\r\n`;
}
