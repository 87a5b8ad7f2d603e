/**
 * A field a change sets, with its value before and after: the shape user updates record
 * (`changes: [{field, from, to}]`, see the provisioning core), used by the catalog's and roles'
 * audit events and by the setup file's plan.
 */
export interface FieldChange {
  field: string;
  from: unknown;
  to: unknown;
}

/** The fields of `[field, from, to]` whose new value is given and differs, in content, from the old. */
export function fieldChanges(fields: [string, unknown, unknown][]): FieldChange[] {
  return fields
    .filter(([, from, to]) => to !== undefined && canonical(from) !== canonical(to))
    .map(([field, from, to]) => ({ field, from, to }));
}

/** JSON with sorted keys: settings equal in content compare equal whatever the key order. */
function canonical(value: unknown): string {
  return JSON.stringify(value, (_key, v) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
      : v,
  );
}
