import { Button as MuiButton, Stack } from '@mui/material';
import { useState } from 'react';
import {
  AutocompleteInput,
  BooleanField,
  BooleanInput,
  Confirm,
  Create,
  Datagrid,
  DateField,
  DeleteButton,
  defaultExporter,
  Edit,
  EditButton,
  EmailField,
  type Exporter,
  FormDataConsumer,
  FunctionField,
  List,
  NullableBooleanInput,
  PasswordInput,
  type RaRecord,
  ReferenceInput,
  ReferenceManyField,
  required,
  SaveButton,
  SelectInput,
  Show,
  SimpleForm,
  TabbedShowLayout,
  TextField,
  TextInput,
  Toolbar,
  TopToolbar,
  useCanAccess,
  useCreate,
  useGetIdentity,
  useListContext,
  useNotify,
  useRecordContext,
  useRefresh,
  useUnselectAll,
} from 'react-admin';
import { ActiveToggle } from '../active-toggle';
import { setUserActive } from '../data-provider';
import { problemMessage } from '../http';
import { ListSearch } from '../list-search';
import { RecordLink } from '../record-link';
import { requiredText } from '../required-input';
import { StringInput } from '../string-input';
import { emptyAsNull, ProfileFields, ProfileInputs, type UserType, useUserTypes } from '../typed-profile';

const statuses = ['active', 'suspended', 'locked', 'deactivated'].map((id) => ({ id, name: id }));

const filters = [
  <ListSearch key="q" source="q" alwaysOn placeholder="Search email, username, name" />,
  <TextInput key="organization" source="organization" label="Organization code" />,
  <SelectInput key="status" source="status" choices={statuses} />,
  <TextInput key="user_type" source="user_type" label="User type" />,
  <NullableBooleanInput key="is_staff" source="is_staff" label="Staff" />,
];

/**
 * Deactivates (once confirmed: their sessions end at once) or reactivates the selected users one by
 * one, saying how many the server refused, whom (by email) and why (the problem's detail and fields).
 */
function BulkSetActive() {
  const [confirming, setConfirming] = useState(false);
  const { selectedIds, resource, data } = useListContext();
  const unselectAll = useUnselectAll(resource ?? 'users');
  const notify = useNotify();
  const refresh = useRefresh();
  const { canAccess } = useCanAccess({ resource: 'users', action: 'edit' });
  if (!canAccess) return null;
  async function apply(active: boolean) {
    const results = await Promise.allSettled(selectedIds.map((id) => setUserActive(id, active)));
    // One sentence per reason, naming the users it refused: a selection often meets the same refusal.
    const refusals = new Map<string, string[]>();
    results.forEach((result, index) => {
      if (result.status === 'fulfilled') return;
      const id = selectedIds[index];
      const who = String(data?.find((user) => user.id === id)?.email ?? id);
      const reason = problemMessage(result.reason);
      refusals.set(reason, [...(refusals.get(reason) ?? []), who]);
    });
    const refused = results.filter((result) => result.status === 'rejected').length;
    const verb = active ? 'reactivated' : 'deactivated';
    const reasons = [...refusals].map(([reason, who]) => `${who.join(', ')}: ${reason}`);
    notify(
      refused
        ? `${results.length - refused} ${verb}, ${refused} refused. ${reasons.join(' ')}`
        : `${results.length} ${verb}`,
      // Refusals name people and reasons: left up longer, to be read.
      { type: refused ? 'warning' : 'info', multiLine: refused > 0, autoHideDuration: refused ? 10_000 : undefined },
    );
    unselectAll();
    refresh();
  }
  return (
    <>
      <MuiButton size="small" onClick={() => setConfirming(true)}>
        Deactivate
      </MuiButton>
      <Confirm
        isOpen={confirming}
        title={`Deactivate ${selectedIds.length} ${selectedIds.length === 1 ? 'user' : 'users'}?`}
        content="Their sessions end at once, and they cannot sign in until reactivated."
        confirm="Deactivate"
        onConfirm={() => {
          setConfirming(false);
          void apply(false);
        }}
        onClose={() => setConfirming(false)}
      />
      <MuiButton size="small" onClick={() => apply(true)}>
        Reactivate
      </MuiButton>
    </>
  );
}

/**
 * A text a spreadsheet would run as a formula (=, +, -, @, tab, carriage return first) starts with a
 * quote instead, as the server's own CSV exports write it: names are whatever people typed in. A lone
 * carriage return becomes a line feed: the CSV writer quotes a value holding a line feed but not one
 * holding a bare CR, which a spreadsheet then reads as the end of the row, the rest starting a new one.
 */
function spreadsheetSafe(value: unknown): unknown {
  if (typeof value === 'string') {
    const text = value.replace(/\r(?!\n)/g, '\n');
    return /^[=+\-@\t\r\n]/.test(text) ? `'${text}` : text;
  }
  if (Array.isArray(value)) return value.map(spreadsheetSafe);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, spreadsheetSafe(item)]));
  }
  return value;
}

const exportUsers: Exporter = (records, fetchRelated, dataProvider, resource) =>
  defaultExporter(records.map(spreadsheetSafe), fetchRelated, dataProvider, resource);

export function UserList() {
  // Row selection serves the bulk actions alone: not offered to whom may not use them.
  const { canAccess: canEdit } = useCanAccess({ resource: 'users', action: 'edit' });
  return (
    <List filters={filters} perPage={25} exporter={exportUsers} sort={{ field: 'email', order: 'ASC' }}>
      <Datagrid rowClick="show" bulkActionButtons={canEdit ? <BulkSetActive /> : false}>
        <RecordLink source="email" label="Email" />
        <TextField source="username" sortable={false} />
        <FunctionField label="Name" render={(u: RaRecord) => `${u.first_name} ${u.last_name}`.trim()} />
        <TextField source="organization" sortable={false} />
        <TextField source="status" sortable={false} />
        <TextField source="user_type" label="Type" sortable={false} />
        <BooleanField source="is_staff" label="Staff" sortable={false} />
        <DateField source="date_joined" label="Joined" sortByOrder="DESC" />
      </Datagrid>
    </List>
  );
}

/** Deactivation ends the user's sessions on the server; reactivation sets the status back to active. */
function UserActiveToggle() {
  return (
    <ActiveToggle
      resource="users"
      isActive={(user) => user.status === 'active'}
      setActive={setUserActive}
      onLabel="Reactivate"
      noun="User"
    />
  );
}

function UserShowActions() {
  return (
    <TopToolbar>
      <UserActiveToggle />
      <EditButton />
    </TopToolbar>
  );
}

function AssignRole() {
  const user = useRecordContext();
  const [create, { isPending }] = useCreate();
  const notify = useNotify();
  const refresh = useRefresh();
  const { canAccess } = useCanAccess({ resource: 'user-roles', action: 'create' });
  if (!user || !canAccess) return null;
  return (
    <SimpleForm
      record={{}}
      toolbar={
        <Toolbar>
          <SaveButton label="Assign role" disabled={isPending} alwaysEnable />
        </Toolbar>
      }
      onSubmit={(values: Record<string, unknown>) =>
        create(
          'user-roles',
          // Only a ticked box is sent: left out, the server makes a first role primary (a user who holds
          // roles always has one) and leaves a later one as it is.
          { data: { user_id: user.id, role: values.role, ...(values.is_primary ? { is_primary: true } : {}) } },
          {
            onSuccess: () => {
              notify('Role assigned', { type: 'info' });
              refresh();
            },
            onError: (err) => notify((err as Error).message, { type: 'error' }),
          },
        )
      }
    >
      <Stack direction="row" spacing={2} sx={{ alignItems: 'center' }}>
        {/* The organization's roles and the global ones that the signed-in user may hand out (the
            server refuses the others), each sent by id: the code may name both. */}
        <ReferenceInput source="role" reference="assignable-roles" filter={{ organization: user.organization }}>
          <AutocompleteInput
            label="Role"
            optionText={(role: RaRecord) =>
              `${role.name} (${role.code}) — ${role.organization === null ? 'global' : 'organization'}`
            }
            validate={required()}
            sx={{ minWidth: 320 }}
          />
        </ReferenceInput>
        <BooleanInput source="is_primary" label="Primary" />
      </Stack>
    </SimpleForm>
  );
}

export function UserShow() {
  // Tabs the server would refuse are not offered: a viewer's Sessions tab would load forever.
  const { canAccess: canSeeSessions } = useCanAccess({ resource: 'user-sessions', action: 'list' });
  const { canAccess: canRemoveRoles } = useCanAccess({ resource: 'user-roles', action: 'delete' });
  return (
    <Show actions={<UserShowActions />}>
      <TabbedShowLayout>
        <TabbedShowLayout.Tab label="Profile">
          <TextField source="id" />
          <EmailField source="email" />
          <TextField source="username" />
          <TextField source="first_name" />
          <TextField source="last_name" />
          <TextField source="organization" />
          <TextField source="status" />
          <TextField source="user_type" />
          <ProfileFields />
          <TextField source="external_id" />
          <BooleanField source="email_verified" />
          <BooleanField source="is_staff" />
          <BooleanField source="is_superuser" />
          <BooleanField source="mfa_enabled" label="Two-factor authentication" />
          <DateField source="last_login" showTime />
          <DateField source="date_joined" showTime />
        </TabbedShowLayout.Tab>
        <TabbedShowLayout.Tab label="Roles" path="roles">
          <ReferenceManyField reference="user-roles" target="user" label={false}>
            <Datagrid bulkActionButtons={false} rowClick={false} empty={<p>No roles.</p>}>
              <TextField source="role" label="Code" />
              <TextField source="name" />
              <TextField source="level" />
              {/* A global role and the organization's may share a code: the owner tells them apart. */}
              <TextField source="organization" emptyText="(global)" />
              <BooleanField source="is_primary" label="Primary" />
              {canRemoveRoles && <DeleteButton label="Remove" redirect={false} mutationMode="pessimistic" />}
            </Datagrid>
          </ReferenceManyField>
          <AssignRole />
        </TabbedShowLayout.Tab>
        {canSeeSessions && (
          <TabbedShowLayout.Tab label="Sessions" path="sessions">
            <ReferenceManyField reference="user-sessions" target="user" label={false} filter={{ active: true }}>
              <Datagrid bulkActionButtons={false} rowClick={false} empty={<p>No active sessions.</p>}>
                <TextField source="ip_address" label="IP" />
                <TextField source="browser" />
                <TextField source="os" label="OS" />
                <TextField source="device_type" label="Device" />
                <DateField source="created_at" showTime />
                <DateField source="last_activity_at" label="Last activity" showTime />
                <DeleteButton label="Revoke" redirect={false} mutationMode="pessimistic" />
              </Datagrid>
            </ReferenceManyField>
          </TabbedShowLayout.Tab>
        )}
      </TabbedShowLayout>
    </Show>
  );
}

/**
 * The user's type, picked among those of their organization and the global ones (typed as a code by
 * whom may not read user types), then the inputs of that type's profile.
 */
function UserTypeInputs({ creating, form }: { creating: boolean; form: Record<string, unknown> }) {
  const { identity } = useGetIdentity();
  const user = useRecordContext();
  const typedOrganization = form.organization;
  // A new user joins the organization typed in the form, by default the administrator's own.
  const organization = creating
    ? typeof typedOrganization === 'string' && typedOrganization !== ''
      ? typedOrganization
      : (identity?.organization as string | undefined)
    : (user?.organization as string | undefined);
  const { types, readable } = useUserTypes(organization);
  return (
    <>
      {readable ? (
        <SelectInput
          source="user_type"
          label="User type"
          choices={types.filter((type, index) => types.findIndex((t) => t.code === type.code) === index)}
          optionValue="code"
          optionText={(type: UserType) => `${type.label} (${type.code})`}
          emptyText="None"
          parse={emptyAsNull}
        />
      ) : (
        <TextInput source="user_type" label="User type" />
      )}
      <ProfileInputs organization={organization} code={form.user_type} />
    </>
  );
}

function UserFields({ creating }: { creating: boolean }) {
  const { identity } = useGetIdentity();
  return (
    <>
      <TextInput source="email" type="email" {...requiredText} />
      <TextInput source="username" />
      <StringInput source="first_name" />
      <StringInput source="last_name" />
      {creating && <TextInput source="organization" label="Organization code" helperText="Default: yours" />}
      <FormDataConsumer>{({ formData }) => <UserTypeInputs creating={creating} form={formData} />}</FormDataConsumer>
      <SelectInput source="status" choices={statuses} />
      <BooleanInput source="is_staff" label="Staff" />
      {identity?.isSuperuser === true && <BooleanInput source="is_superuser" label="Superuser" />}
      <PasswordInput
        source="password"
        autoComplete="new-password"
        helperText={creating ? 'Optional: without one the user cannot sign in until invited' : 'Leave empty to keep it'}
      />
    </>
  );
}

export function UserCreate() {
  return (
    <Create redirect="show">
      <SimpleForm>
        <UserFields creating />
      </SimpleForm>
    </Create>
  );
}

export function UserEdit() {
  // Pessimistic, so that the server's field errors (a taken email) reach the form.
  return (
    <Edit mutationMode="pessimistic" redirect="show">
      <SimpleForm>
        <UserFields creating={false} />
      </SimpleForm>
    </Edit>
  );
}
