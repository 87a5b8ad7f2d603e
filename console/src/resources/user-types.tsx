import {
  Create,
  Datagrid,
  DeleteButton,
  Edit,
  List,
  required,
  SaveButton,
  SimpleForm,
  TextField,
  TextInput,
  Toolbar,
  useCanAccess,
  useGetIdentity,
} from 'react-admin';
import { JsonInput } from '../json-input';
import { requiredText } from '../required-input';

// User types: the kinds of users (students, staff, …) and the JSON Schema of their profile. The server
// refuses a schema it cannot use and a plural its paths reserve; the forms show why at the input.

export function UserTypeList() {
  // A row opens the editor only for whom may edit (user_types.manage, as every user-type route needs).
  const { canAccess } = useCanAccess({ resource: 'user-types', action: 'edit' });
  return (
    <List exporter={false} title="User types">
      <Datagrid bulkActionButtons={false} rowClick={canAccess ? 'edit' : false}>
        <TextField source="code" sortable={false} />
        <TextField source="label" label="Name" sortable={false} />
        <TextField source="plural" sortable={false} />
        <TextField source="organization" emptyText="(global)" sortable={false} />
      </Datagrid>
    </List>
  );
}

const SCHEMA_HELP =
  'JSON Schema (draft 07) of the profile, e.g. {"type": "object", "required": ["grade"], "properties": ' +
  '{"grade": {"type": "integer", "title": "Grade"}}}; each property becomes an input of the user form ' +
  '(its title the label, its description the help).';

function SchemaInput() {
  return <JsonInput source="schema" label="Schema" helperText={SCHEMA_HELP} object validate={required()} />;
}

export function UserTypeCreate() {
  // Empty means a global type for superusers; anyone else creates types of their own organization.
  const { identity } = useGetIdentity();
  const emptyOrganization = identity?.isSuperuser === true ? 'Empty: a global type' : 'Empty: your organization';
  return (
    <Create redirect="list">
      <SimpleForm defaultValues={{ schema: { type: 'object', properties: {} } }}>
        <TextInput source="code" {...requiredText} helperText="Stored on each user as their user_type" />
        <TextInput source="label" label="Name" {...requiredText} />
        <TextInput source="plural" {...requiredText} helperText="Its users are served at /api/v1/users/<plural>/" />
        <TextInput source="organization" label="Organization code" helperText={emptyOrganization} />
        <SchemaInput />
      </SimpleForm>
    </Create>
  );
}

/** Delete is pessimistic: a type that users still hold is refused (409), and the refusal is shown. */
function UserTypeToolbar() {
  return (
    <Toolbar sx={{ justifyContent: 'space-between' }}>
      <SaveButton />
      <DeleteButton mutationMode="pessimistic" />
    </Toolbar>
  );
}

export function UserTypeEdit() {
  return (
    <Edit mutationMode="pessimistic" redirect="list">
      <SimpleForm toolbar={<UserTypeToolbar />}>
        <TextField source="code" />
        <TextField source="organization" emptyText="(global)" />
        <TextInput source="label" label="Name" {...requiredText} />
        <TextInput source="plural" {...requiredText} />
        <SchemaInput />
      </SimpleForm>
    </Edit>
  );
}
