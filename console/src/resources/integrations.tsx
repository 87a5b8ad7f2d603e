import { Chip, Button as MuiButton, Stack, Typography } from '@mui/material';
import { useState } from 'react';
import {
  BooleanField,
  BooleanInput,
  CheckboxGroupInput,
  Create,
  Datagrid,
  DateField,
  DeleteButton,
  Edit,
  EditButton,
  FormDataConsumer,
  FunctionField,
  List,
  NullableBooleanInput,
  NumberField,
  NumberInput,
  Pagination,
  PasswordInput,
  type RaRecord,
  ReferenceManyField,
  SelectInput,
  Show,
  SimpleForm,
  TabbedShowLayout,
  TextField,
  TextInput,
  TopToolbar,
  useCanAccess,
  useNotify,
  useRecordContext,
  useRefresh,
} from 'react-admin';
import { ActiveToggle } from '../active-toggle';
import { checkIntegrationHealth, setIntegrationActive } from '../data-provider';
import { ListSearch } from '../list-search';
import { RecordLink } from '../record-link';
import { requiredSelect, requiredText } from '../required-input';
import { StringInput } from '../string-input';

// The integration registry: external services Gatehouse calls, their sealed credentials, health and calls.

const choices = (values: readonly string[]) => values.map((id) => ({ id, name: id }));

const serviceTypes = choices([
  'payment_gateway',
  'sms_provider',
  'email_provider',
  'storage',
  'analytics',
  'crm',
  'identity_provider',
  'rates_api',
  'webhook',
  'user_provisioning',
  'other',
]);
const authTypes = choices(['none', 'api_key', 'basic', 'bearer', 'oauth2']);
const healthStatuses = choices(['HEALTHY', 'DEGRADED', 'DOWN', 'UNKNOWN']);
const grants = choices(['authorization_code', 'client_credentials']);

type CredentialName = 'api_key' | 'api_secret' | 'username' | 'password' | 'token' | 'client_secret';
const credentialLabels: Record<CredentialName, string> = {
  api_key: 'API key',
  api_secret: 'API secret',
  username: 'Username',
  password: 'Password',
  token: 'Token',
  client_secret: 'Client secret',
};
/** The secrets each authentication type uses, so the form asks only for those. */
const credentialsOf: Record<string, CredentialName[]> = {
  none: [],
  api_key: ['api_key', 'api_secret'],
  basic: ['username', 'password'],
  bearer: ['token'],
  oauth2: ['client_secret'],
};

type CredentialState = { set: boolean; hint: string | null };

function storedCredentials(record: RaRecord | undefined): [CredentialName, CredentialState][] {
  const credentials = (record?.credentials ?? {}) as Partial<Record<CredentialName, CredentialState>>;
  return (Object.keys(credentialLabels) as CredentialName[])
    .map((name): [CredentialName, CredentialState | undefined] => [name, credentials[name]])
    .filter((entry): entry is [CredentialName, CredentialState] => Boolean(entry[1]?.set));
}

const healthColors: Record<string, 'success' | 'warning' | 'error' | 'default'> = {
  HEALTHY: 'success',
  DEGRADED: 'warning',
  DOWN: 'error',
};

function HealthChip() {
  const record = useRecordContext();
  if (!record) return null;
  const status = String(record.health_status);
  return <Chip size="small" label={status} color={healthColors[status] ?? 'default'} />;
}

const filters = [
  <ListSearch key="q" source="q" alwaysOn placeholder="Search name or provider" />,
  <SelectInput key="service_type" source="service_type" choices={serviceTypes} />,
  <SelectInput key="health_status" source="health_status" label="Health" choices={healthStatuses} />,
  <NullableBooleanInput key="is_active" source="is_active" label="Active" />,
];

export function IntegrationList() {
  return (
    <List filters={filters} perPage={25} exporter={false}>
      <Datagrid rowClick="show" bulkActionButtons={false}>
        <RecordLink source="name" label="Name" sortable={false} />
        <TextField source="service_type" label="Service type" sortable={false} />
        <TextField source="provider_name" label="Provider" sortable={false} />
        <FunctionField label="Health" render={() => <HealthChip />} />
        <BooleanField source="is_active" label="Active" sortable={false} />
        <BooleanField source="is_test_mode" label="Test mode" sortable={false} />
        <TextField source="organization" sortable={false} />
        <DateField source="last_health_check_at" label="Last check" showTime emptyText="never" sortable={false} />
      </Datagrid>
    </List>
  );
}

/** Runs the health check at once; the status, history and counters on the page follow its result. */
function CheckNowButton() {
  const integration = useRecordContext();
  const notify = useNotify();
  const refresh = useRefresh();
  const [pending, setPending] = useState(false);
  const { canAccess } = useCanAccess({ resource: 'integrations', action: 'edit' });
  if (!integration || !canAccess) return null;
  async function check() {
    setPending(true);
    try {
      const { check, integration: after } = await checkIntegrationHealth(integration!.id);
      const detail = check.http_status ? `HTTP ${check.http_status}` : (check.error_message ?? check.status);
      notify(`Health check: ${check.status} (${detail}); now ${after.health_status}`, {
        type: check.status === 'success' ? 'info' : 'warning',
      });
      refresh();
    } catch (err) {
      notify((err as Error).message, { type: 'error' });
    } finally {
      setPending(false);
    }
  }
  return (
    <MuiButton size="small" onClick={check} disabled={pending}>
      Check now
    </MuiButton>
  );
}

/** Off: calls are refused and scheduled checks skip it. On: called and checked again. */
function IntegrationActiveToggle() {
  return (
    <ActiveToggle
      resource="integrations"
      isActive={(integration) => Boolean(integration.is_active)}
      setActive={setIntegrationActive}
      onLabel="Activate"
      noun="Integration"
    />
  );
}

function IntegrationShowActions() {
  return (
    <TopToolbar>
      <CheckNowButton />
      <IntegrationActiveToggle />
      <EditButton />
      <DeleteButton
        mutationMode="pessimistic"
        confirmTitle="Delete this integration?"
        confirmContent="Its credentials, tokens, health-check history and request logs are deleted with it."
      />
    </TopToolbar>
  );
}

/** Which secrets are stored, with the hint the server keeps of a long key or token; never their values. */
function CredentialHints() {
  const record = useRecordContext();
  const stored = storedCredentials(record);
  if (stored.length === 0) return <Typography variant="body2">None stored</Typography>;
  return (
    <Stack direction="row" spacing={1} data-testid="credential-hints">
      {stored.map(([name, state]) => (
        <Chip
          key={name}
          size="small"
          variant="outlined"
          label={state.hint ? `${credentialLabels[name]} ${state.hint}` : `${credentialLabels[name]} set`}
        />
      ))}
    </Stack>
  );
}

export function IntegrationShow() {
  return (
    <Show actions={<IntegrationShowActions />}>
      <TabbedShowLayout>
        <TabbedShowLayout.Tab label="Details">
          <TextField source="name" />
          <TextField source="service_type" />
          <TextField source="provider_name" emptyText="—" />
          <TextField source="description" emptyText="—" />
          <TextField source="organization" />
          <TextField source="auth_type" />
          <TextField source="base_url" label="Base URL" />
          <TextField source="health_check_path" />
          <TextField source="api_key_header" label="API key header" />
          <NumberField source="timeout_ms" label="Timeout (ms)" />
          <BooleanField source="is_active" label="Active" />
          <BooleanField source="is_test_mode" label="Test mode" />
          <FunctionField label="Credentials" render={() => <CredentialHints />} />
          <FunctionField label="Health" render={() => <HealthChip />} />
          <NumberField source="consecutive_failures" />
          <NumberField source="total_requests" />
          <NumberField source="failed_requests" />
          <FunctionField
            label="Success rate"
            render={(r: RaRecord) => (r.success_rate === null ? '—' : `${r.success_rate} %`)}
          />
          <DateField source="last_health_check_at" showTime emptyText="never" />
          <DateField source="last_used_at" showTime emptyText="never" />
          <DateField source="created_at" showTime />
          <DateField source="updated_at" showTime />
        </TabbedShowLayout.Tab>
        <TabbedShowLayout.Tab label="Health checks" path="health-checks">
          <ReferenceManyField
            reference="integration-health-checks"
            target="integration"
            label={false}
            perPage={10}
            pagination={<Pagination rowsPerPageOptions={[10, 25, 50]} />}
          >
            <Datagrid bulkActionButtons={false} rowClick={false} empty={<p>No health checks yet.</p>}>
              <DateField source="checked_at" label="Checked" showTime sortable={false} />
              <TextField source="status" sortable={false} />
              <NumberField source="http_status" label="HTTP" emptyText="—" sortable={false} />
              <NumberField source="response_time_ms" label="Time (ms)" emptyText="—" sortable={false} />
              <TextField source="error_message" label="Error" emptyText="—" sortable={false} />
            </Datagrid>
          </ReferenceManyField>
        </TabbedShowLayout.Tab>
        <TabbedShowLayout.Tab label="Request logs" path="logs">
          <ReferenceManyField
            reference="integration-logs"
            target="integration"
            label={false}
            perPage={25}
            pagination={<Pagination rowsPerPageOptions={[25, 50, 100]} />}
          >
            <Datagrid
              bulkActionButtons={false}
              rowClick="expand"
              expand={<RequestLogDetail />}
              empty={<p>No requests logged.</p>}
            >
              <DateField source="created_at" label="At" showTime sortable={false} />
              <TextField source="method" sortable={false} />
              <TextField source="endpoint" sortable={false} />
              <NumberField source="response_status" label="Status" emptyText="—" sortable={false} />
              <NumberField source="duration_ms" label="Time (ms)" sortable={false} />
              <BooleanField source="success" sortable={false} />
              <TextField source="error_message" label="Error" emptyText="—" sortable={false} />
            </Datagrid>
          </ReferenceManyField>
        </TabbedShowLayout.Tab>
      </TabbedShowLayout>
    </Show>
  );
}

/** A logged call's headers and bodies, as stored: redacted and cut to a bound by the server. */
function RequestLogDetail() {
  const log = useRecordContext();
  if (!log) return null;
  return (
    <Stack spacing={1} component="pre" sx={{ whiteSpace: 'pre-wrap', wordBreak: 'break-all', m: 0 }}>
      <span>{JSON.stringify(log.request_headers, null, 2)}</span>
      {log.request_body ? <span>{String(log.request_body)}</span> : null}
      {log.response_body ? <span>{String(log.response_body)}</span> : null}
    </Stack>
  );
}

/**
 * The form's values as the API takes them. Secrets are typed into `new_credentials` (the record's
 * `credentials` holds only what is set, never a value), and only those typed are sent: an omitted one
 * keeps what is stored, null removes it. Empty OAuth2 settings are left out rather than sent as null.
 */
function integrationBody(data: Record<string, unknown>): Record<string, unknown> {
  const { new_credentials, remove_credentials, credentials: _stored, oauth2, ...body } = data;

  const settings: Record<string, unknown> = {};
  for (const [name, value] of Object.entries((oauth2 ?? {}) as Record<string, unknown>)) {
    if (value !== null && value !== undefined && value !== '') settings[name] = value;
  }
  if (Object.keys(settings).length > 0 || data.auth_type === 'oauth2') body.oauth2 = settings;

  const secrets: Record<string, string | null> = {};
  for (const name of (remove_credentials ?? []) as string[]) secrets[name] = null;
  for (const [name, value] of Object.entries((new_credentials ?? {}) as Record<string, unknown>)) {
    if (typeof value === 'string' && value !== '') secrets[name] = value;
  }
  if (Object.keys(secrets).length > 0) body.credentials = secrets;
  return body;
}

function OAuth2Fields() {
  return (
    <>
      <Typography variant="subtitle2">OAuth2</Typography>
      <SelectInput source="oauth2.grant" label="Grant" choices={grants} emptyText="authorization_code (default)" />
      <TextInput source="oauth2.issuer" label="Issuer" helperText="Alone, its endpoints are discovered" />
      <TextInput source="oauth2.authorization_url" label="Authorization URL" />
      <TextInput source="oauth2.token_url" label="Token URL" />
      <TextInput source="oauth2.client_id" label="Client id" />
      <TextInput source="oauth2.scope" label="Scope" />
    </>
  );
}

/** Write-only inputs: nothing typed here is ever read back from the server. */
function CredentialInputs({ creating }: { creating: boolean }) {
  const record = useRecordContext();
  const stored = new Map(storedCredentials(record));
  return (
    <FormDataConsumer<{ auth_type?: string }>>
      {({ formData }) => {
        const names = credentialsOf[formData.auth_type ?? 'none'] ?? [];
        const removable = [...stored.keys()].map((id) => ({ id, name: credentialLabels[id] }));
        return (
          <>
            {names.map((name) => {
              const state = stored.get(name);
              return (
                <PasswordInput
                  key={name}
                  source={`new_credentials.${name}`}
                  label={credentialLabels[name]}
                  autoComplete="new-password"
                  helperText={
                    creating || !state
                      ? 'Stored encrypted; never shown again'
                      : `Stored${state.hint ? ` (${state.hint})` : ''}: leave empty to keep it`
                  }
                />
              );
            })}
            {!creating && removable.length > 0 && (
              <CheckboxGroupInput source="remove_credentials" label="Remove stored secrets" choices={removable} />
            )}
          </>
        );
      }}
    </FormDataConsumer>
  );
}

function IntegrationFields({ creating }: { creating: boolean }) {
  return (
    <>
      <TextInput source="name" {...requiredText} />
      <SelectInput source="service_type" label="Service type" choices={serviceTypes} {...requiredSelect} />
      <StringInput source="provider_name" label="Provider" />
      <StringInput source="description" multiline />
      {creating && <TextInput source="organization" label="Organization code" helperText="Default: yours" />}
      <TextInput source="base_url" label="Base URL" type="url" {...requiredText} />
      <TextInput source="health_check_path" label="Health-check path" {...requiredText} />
      <NumberInput source="timeout_ms" label="Timeout (ms)" min={100} max={60_000} {...requiredText} />
      <SelectInput source="auth_type" label="Authentication" choices={authTypes} {...requiredSelect} />
      <FormDataConsumer<{ auth_type?: string }>>
        {({ formData }) =>
          formData.auth_type === 'api_key' ? (
            <TextInput source="api_key_header" label="API key header" {...requiredText} />
          ) : formData.auth_type === 'oauth2' ? (
            <OAuth2Fields />
          ) : null
        }
      </FormDataConsumer>
      <CredentialInputs creating={creating} />
      <BooleanInput source="is_active" label="Active" />
      <BooleanInput source="is_test_mode" label="Test mode" />
    </>
  );
}

export function IntegrationCreate() {
  return (
    <Create redirect="show" transform={integrationBody}>
      <SimpleForm
        defaultValues={{
          auth_type: 'none',
          health_check_path: '/',
          api_key_header: 'X-API-Key',
          timeout_ms: 10_000,
          is_active: true,
          is_test_mode: false,
        }}
      >
        <IntegrationFields creating />
      </SimpleForm>
    </Create>
  );
}

export function IntegrationEdit() {
  // Pessimistic, so that the server's field errors (a refused URL) reach the form.
  return (
    <Edit mutationMode="pessimistic" redirect="show" transform={integrationBody}>
      <SimpleForm>
        <IntegrationFields creating={false} />
      </SimpleForm>
    </Edit>
  );
}
