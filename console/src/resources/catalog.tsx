import {
  AutocompleteArrayInput,
  AutocompleteInput,
  BooleanField,
  BooleanInput,
  Create,
  Datagrid,
  DateField,
  Edit,
  FunctionField,
  List,
  NullableBooleanInput,
  NumberField,
  NumberInput,
  type RaRecord,
  ReferenceArrayInput,
  ReferenceInput,
  required,
  Show,
  SimpleForm,
  SimpleShowLayout,
  TextField,
  TextInput,
  useCanAccess,
  useGetIdentity,
} from 'react-admin';
import { ListSearch } from '../list-search';
import { RecordLink } from '../record-link';
import { requiredText } from '../required-input';
import { StringInput } from '../string-input';

// The RBAC catalog and organizations: plain lists and forms over the administration routes.

/** How a picker shows a catalog entry: its name, then the code the API stores. */
const codeAndName = (entry: RaRecord) => `${entry.name} (${entry.id})`;

export function OrganizationList() {
  return (
    <List filters={[<ListSearch key="q" source="q" alwaysOn />]} exporter={false}>
      <Datagrid rowClick="show" bulkActionButtons={false}>
        <RecordLink source="code" label="Code" sortable={false} />
        <TextField source="name" sortable={false} />
        <BooleanField source="is_active" label="Active" sortable={false} />
        <DateField source="created_at" label="Created" sortable={false} />
      </Datagrid>
    </List>
  );
}

export function OrganizationShow() {
  return (
    <Show>
      <SimpleShowLayout>
        <TextField source="id" />
        <TextField source="code" />
        <TextField source="name" />
        <TextField source="description" />
        <BooleanField source="is_active" />
        <DateField source="created_at" showTime />
        <FunctionField
          label="Settings"
          render={(org: RaRecord) => JSON.stringify(org.settings ?? {})}
          sx={{ fontFamily: 'monospace' }}
        />
      </SimpleShowLayout>
    </Show>
  );
}

export function OrganizationCreate() {
  return (
    <Create redirect="show">
      <SimpleForm>
        <TextInput source="code" {...requiredText} />
        <TextInput source="name" {...requiredText} />
        <StringInput source="description" multiline />
      </SimpleForm>
    </Create>
  );
}

const SETTING_LABELS = { nullLabel: 'Default', trueLabel: 'Yes', falseLabel: 'No' };

/** A setting left at "Default" is not stored: the API takes settings as given, and null is no value. */
function withoutUnsetSettings(data: RaRecord): RaRecord {
  const settings = (data.settings ?? {}) as Record<string, unknown>;
  return {
    ...data,
    settings: Object.fromEntries(Object.entries(settings).filter(([, value]) => value !== null && value !== '')),
  };
}

export function OrganizationEdit() {
  return (
    <Edit mutationMode="pessimistic" redirect="show" transform={withoutUnsetSettings}>
      <SimpleForm>
        <TextInput source="name" {...requiredText} />
        <StringInput source="description" multiline />
        <BooleanInput source="is_active" label="Active (off: its users cannot log in, their sessions end)" />
        <NullableBooleanInput
          source="settings.self_registration"
          label="Self-registration open (default: yes)"
          {...SETTING_LABELS}
        />
        <NullableBooleanInput
          source="settings.require_email_verification"
          label="Email verification before login (default: no)"
          {...SETTING_LABELS}
        />
        <NullableBooleanInput
          source="settings.require_mfa"
          label="Two-factor authentication required (default: no)"
          {...SETTING_LABELS}
        />
        <NumberInput
          source="settings.password_min_length"
          label="Minimum password length (default 10)"
          min={8}
          max={128}
        />
      </SimpleForm>
    </Edit>
  );
}

export function RoleList() {
  return (
    <List exporter={false}>
      <Datagrid rowClick="show" bulkActionButtons={false}>
        <RecordLink source="code" label="Code" sortable={false} />
        <TextField source="name" sortable={false} />
        <NumberField source="level" sortable={false} />
        <TextField source="organization" emptyText="(global)" sortable={false} />
        <BooleanField source="is_builtin" label="Built in" sortable={false} />
      </Datagrid>
    </List>
  );
}

export function RoleShow() {
  return (
    <Show>
      <SimpleShowLayout>
        <TextField source="code" />
        <TextField source="name" />
        <NumberField source="level" />
        <TextField source="description" />
        <TextField source="organization" emptyText="(global)" />
        <TextField source="permissions" />
        <TextField source="modules" />
      </SimpleShowLayout>
    </Show>
  );
}

function RoleFields({ creating }: { creating: boolean }) {
  // Empty means a global role for superusers; anyone else creates roles of their own organization.
  const { identity } = useGetIdentity();
  const emptyOrganization = identity?.isSuperuser === true ? 'Empty: a global role' : 'Empty: your organization';
  return (
    <>
      {creating && <TextInput source="code" {...requiredText} />}
      <TextInput source="name" {...requiredText} />
      <NumberInput source="level" {...requiredText} helperText="Lower is more powerful" />
      <StringInput source="description" multiline />
      {creating && <TextInput source="organization" label="Organization code" helperText={emptyOrganization} />}
      <ReferenceArrayInput source="permissions" reference="permission-codes" perPage={100}>
        <AutocompleteArrayInput label="Permissions" optionText={codeAndName} />
      </ReferenceArrayInput>
      <ReferenceArrayInput source="modules" reference="module-codes" perPage={100}>
        <AutocompleteArrayInput label="Modules" optionText={codeAndName} />
      </ReferenceArrayInput>
    </>
  );
}

export function RoleCreate() {
  return (
    <Create redirect="show">
      <SimpleForm defaultValues={{ permissions: [], modules: [] }}>
        <RoleFields creating />
      </SimpleForm>
    </Create>
  );
}

export function RoleEdit() {
  return (
    <Edit mutationMode="pessimistic" redirect="show">
      <SimpleForm>
        <RoleFields creating={false} />
      </SimpleForm>
    </Edit>
  );
}

const permissionFilters = [
  <ReferenceInput key="module" source="module" reference="module-codes" alwaysOn>
    <AutocompleteInput label="Module" optionText={codeAndName} sx={{ minWidth: 240 }} />
  </ReferenceInput>,
];

/** A row opens its edit form only for those who may edit it; readers see everything in the list. */
function useEditRowClick(resource: string): 'edit' | false {
  const { canAccess } = useCanAccess({ resource, action: 'edit' });
  return canAccess ? 'edit' : false;
}

/** The code cell of a catalog list: a link to the editor for those who may edit. */
function EditLink({ resource }: { resource: string; label?: string }) {
  return <RecordLink source="code" type={useEditRowClick(resource)} />;
}

export function PermissionList() {
  return (
    <List exporter={false} filters={permissionFilters}>
      <Datagrid rowClick={useEditRowClick('permissions')} bulkActionButtons={false}>
        <EditLink resource="permissions" label="Code" />
        <TextField source="module" sortable={false} />
        <TextField source="action" sortable={false} />
        <TextField source="name" sortable={false} />
        <TextField source="description" sortable={false} />
      </Datagrid>
    </List>
  );
}

export function PermissionCreate() {
  return (
    <Create redirect="list">
      <SimpleForm>
        <TextInput source="code" {...requiredText} helperText="<module>.<action>" />
        <ReferenceInput source="module" reference="module-codes">
          <AutocompleteInput label="Module" optionText={codeAndName} validate={required()} />
        </ReferenceInput>
        <TextInput source="action" {...requiredText} />
        <TextInput source="name" {...requiredText} />
        <StringInput source="description" multiline />
      </SimpleForm>
    </Create>
  );
}

export function PermissionEdit() {
  return (
    <Edit mutationMode="pessimistic" redirect="list">
      <SimpleForm>
        <TextInput source="name" {...requiredText} />
        <StringInput source="description" multiline />
      </SimpleForm>
    </Edit>
  );
}

export function ModuleList() {
  return (
    <List exporter={false}>
      <Datagrid rowClick={useEditRowClick('modules')} bulkActionButtons={false}>
        <EditLink resource="modules" label="Code" />
        <TextField source="name" sortable={false} />
        <TextField source="description" sortable={false} />
        <NumberField source="order" sortable={false} />
        <BooleanField source="is_active" label="Active" sortable={false} />
      </Datagrid>
    </List>
  );
}

export function ModuleCreate() {
  return (
    <Create redirect="list">
      <SimpleForm>
        <TextInput source="code" {...requiredText} />
        <TextInput source="name" {...requiredText} />
        <StringInput source="description" multiline />
        <NumberInput source="order" />
      </SimpleForm>
    </Create>
  );
}

export function ModuleEdit() {
  return (
    <Edit mutationMode="pessimistic" redirect="list">
      <SimpleForm>
        <TextInput source="name" {...requiredText} />
        <StringInput source="description" multiline />
        <NumberInput source="order" />
        <BooleanInput source="is_active" />
      </SimpleForm>
    </Edit>
  );
}
