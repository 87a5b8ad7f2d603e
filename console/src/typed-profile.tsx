import { Stack, Typography } from '@mui/material';
import {
  BooleanInput,
  DateInput,
  Labeled,
  NumberInput,
  type RaRecord,
  required,
  SelectInput,
  TextInput,
  useCanAccess,
  useGetList,
  useRecordContext,
} from 'react-admin';
import { InstantInput } from './instant-input';
import { JsonInput } from './json-input';
import { requiredSelect, requiredText } from './required-input';

// A typed user's profile (`attributes.profile`) shown and edited through inputs derived from the
// JSON Schema of their user type. The server checks the profile against that schema on save.

export interface UserType extends RaRecord {
  code: string;
  plural: string;
  label: string;
  organization: string | null;
  schema: Record<string, unknown>;
}

interface PropertySchema {
  type?: unknown;
  title?: unknown;
  description?: unknown;
  enum?: unknown;
  format?: unknown;
}

/** A select left at its empty choice means no value: null, which the server reads as "none" or "remove". */
export const emptyAsNull = (value: unknown) => (value === '' ? null : value);

/** Where the form keeps a profile key: the user record's own field, so a refused key lands on its input. */
export const profileSource = (key: string) => `attributes.profile.${key}`;

/**
 * The type a user of `organization` with type `code` has: the organization's own before a global one of
 * the same code, as the server resolves it.
 */
export function typeOfUser(
  types: readonly UserType[],
  organization: string | null | undefined,
  code: unknown,
): UserType | undefined {
  if (typeof code !== 'string' || code === '') return undefined;
  return (
    types.find((type) => type.code === code && type.organization === organization) ??
    types.find((type) => type.code === code && type.organization === null)
  );
}

/**
 * The user types visible in `organization` (its own and the global ones), for those who may read them
 * (`user_types.manage`); `readable` false otherwise, and the profile is then shown as stored JSON.
 */
export function useUserTypes(organization: string | null | undefined) {
  const { canAccess, isPending: checking } = useCanAccess({ resource: 'user-types', action: 'list' });
  const { data, isPending } = useGetList<UserType>(
    'user-types',
    { filter: organization ? { organization } : {}, pagination: { page: 1, perPage: 500 } },
    { enabled: canAccess === true },
  );
  return { types: data ?? [], readable: canAccess === true, isPending: checking || (canAccess === true && isPending) };
}

/**
 * The schema's properties the form can name: a key with a dot would read as a nested path. Such keys
 * are left out of the form, and so kept as stored (profile updates are merged key by key).
 */
export function profileProperties(schema: Record<string, unknown> | undefined): [string, PropertySchema][] {
  const properties = schema?.properties;
  if (typeof properties !== 'object' || properties === null) return [];
  return Object.entries(properties as Record<string, PropertySchema>).filter(([key]) => !key.includes('.'));
}

/** The one type a property takes: of a list such as `["integer", "null"]`, the non-null one. */
function typeName(property: PropertySchema): string | undefined {
  if (typeof property.type === 'string') return property.type;
  if (Array.isArray(property.type)) {
    const named = property.type.filter((t) => t !== 'null');
    return named.length === 1 && typeof named[0] === 'string' ? named[0] : undefined;
  }
  return undefined;
}

function ProfileInput({ name, property, isRequired }: { name: string; property: PropertySchema; isRequired: boolean }) {
  const source = profileSource(name);
  const label = typeof property.title === 'string' && property.title !== '' ? property.title : name;
  const helperText = typeof property.description === 'string' ? property.description : false;
  const validate = isRequired ? required() : undefined;
  const common = { source, label, helperText, validate };
  const marked = isRequired ? requiredText : {};
  if (Array.isArray(property.enum)) {
    const choices = property.enum
      .filter((value) => value === null || ['string', 'number', 'boolean'].includes(typeof value))
      .map((value) => ({ id: value as string, name: String(value) }));
    return <SelectInput {...common} {...(isRequired ? requiredSelect : {})} choices={choices} parse={emptyAsNull} />;
  }
  switch (typeName(property)) {
    case 'boolean':
      return <BooleanInput {...common} />;
    case 'integer':
      return <NumberInput {...common} {...marked} step={1} />;
    case 'number':
      return <NumberInput {...common} {...marked} />;
    case 'string':
      if (property.format === 'date') return <DateInput {...common} {...marked} />;
      if (property.format === 'date-time') return <InstantInput {...common} />;
      return <TextInput {...common} {...marked} />;
    default:
      // Objects, arrays and anything else the form has no input for: their JSON, checked by the server.
      return <JsonInput {...common} />;
  }
}

/**
 * The profile inputs of the type picked in the form (`user_type`): they follow a change of type, and
 * show nothing for a user without one, or for an administrator who may not read user types.
 */
export function ProfileInputs({ organization, code }: { organization: string | null | undefined; code: unknown }) {
  const { types } = useUserTypes(organization);
  const type = typeOfUser(types, organization, code);
  if (!type) return null;
  const requiredKeys = Array.isArray(type.schema.required) ? (type.schema.required as unknown[]) : [];
  const properties = profileProperties(type.schema);
  return (
    <Stack sx={{ width: '100%' }}>
      <Typography variant="subtitle1" sx={{ mt: 2 }}>
        {type.label} profile
      </Typography>
      {properties.map(([name, property]) => (
        <ProfileInput key={name} name={name} property={property} isRequired={requiredKeys.includes(name)} />
      ))}
    </Stack>
  );
}

function displayed(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'boolean') return value ? 'Yes' : 'No';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/**
 * A typed user's profile on their page: each of the schema's properties under its title, then any
 * stored key the schema does not name. Without access to the type, the stored profile as JSON.
 */
export function ProfileFields() {
  const user = useRecordContext();
  const organization = typeof user?.organization === 'string' ? user.organization : undefined;
  const { types } = useUserTypes(organization);
  const profile = (user?.attributes as { profile?: Record<string, unknown> } | undefined)?.profile;
  if (!user?.user_type && !profile) return null;
  const type = typeOfUser(types, organization, user?.user_type);
  const named = profileProperties(type?.schema).map(([name, property]) => ({
    name,
    label: typeof property.title === 'string' && property.title !== '' ? property.title : name,
  }));
  const known = new Set(named.map((entry) => entry.name));
  const others = Object.keys(profile ?? {})
    .filter((name) => !known.has(name))
    .map((name) => ({ name, label: name }));
  return (
    <Stack data-testid="user-profile">
      {[...named, ...others].map(({ name, label }) => (
        <Labeled key={name} label={label}>
          <Typography variant="body2">{displayed(profile?.[name])}</Typography>
        </Labeled>
      ))}
    </Stack>
  );
}
