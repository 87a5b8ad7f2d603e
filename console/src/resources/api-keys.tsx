import {
  Alert,
  Button,
  Dialog,
  DialogActions,
  DialogContent,
  DialogTitle,
  TextField as MuiTextField,
} from '@mui/material';
import { useState } from 'react';
import {
  CheckboxGroupInput,
  Create,
  Datagrid,
  DateField,
  DateTimeInput,
  DeleteButton,
  List,
  type RaRecord,
  required,
  Show,
  SimpleForm,
  SimpleShowLayout,
  TextField,
  TextInput,
  useRedirect,
} from 'react-admin';

const scopes = ['provisioning', 'scim', 'authorize', 'read:users'].map((id) => ({ id, name: id }));

export function ApiKeyList() {
  return (
    <List perPage={25} exporter={false}>
      <Datagrid rowClick="show" bulkActionButtons={false}>
        <TextField source="name" sortable={false} />
        <TextField source="prefix" sortable={false} />
        <TextField source="organization" emptyText="(platform)" sortable={false} />
        <TextField source="scopes" sortable={false} />
        <DateField source="last_used_at" label="Last used" showTime emptyText="never" sortable={false} />
        <DateField source="revoked_at" label="Revoked" showTime emptyText="—" sortable={false} />
        <DateField source="created_at" label="Created" sortable={false} />
      </Datagrid>
    </List>
  );
}

export function ApiKeyShow() {
  return (
    <Show>
      <SimpleShowLayout>
        <TextField source="name" />
        <TextField source="prefix" />
        <TextField source="organization" emptyText="(platform)" />
        <TextField source="scopes" />
        <DateField source="expires_at" showTime emptyText="never" />
        <DateField source="last_used_at" showTime emptyText="never" />
        <DateField source="revoked_at" showTime emptyText="—" />
        <DateField source="created_at" showTime />
        <DeleteButton label="Revoke" mutationMode="pessimistic" confirmTitle="Revoke this API key?" />
      </SimpleShowLayout>
    </Show>
  );
}

/**
 * The key exists in clear only in the create answer (the server keeps its hash), so it is shown
 * here once, from memory, and never stored anywhere in the browser.
 */
function KeyOnce({ created, onClose }: { created: RaRecord & { key: string }; onClose(): void }) {
  const [copied, setCopied] = useState(false);
  async function copy() {
    await navigator.clipboard.writeText(created.key);
    setCopied(true);
  }
  return (
    <Dialog open onClose={onClose} aria-labelledby="new-key-title" maxWidth="sm" fullWidth>
      <DialogTitle id="new-key-title">API key created</DialogTitle>
      <DialogContent>
        <Alert severity="warning" sx={{ mb: 2 }}>
          Copy the key now: it is shown only once and cannot be read again.
        </Alert>
        <MuiTextField
          label="Key"
          value={created.key}
          fullWidth
          slotProps={{ htmlInput: { readOnly: true, 'data-testid': 'new-api-key' } }}
          onFocus={(event) => event.target.select()}
        />
      </DialogContent>
      <DialogActions>
        <Button onClick={copy}>{copied ? 'Copied' : 'Copy'}</Button>
        <Button onClick={onClose} variant="contained">
          Done
        </Button>
      </DialogActions>
    </Dialog>
  );
}

export function ApiKeyCreate() {
  const [created, setCreated] = useState<RaRecord & { key: string }>();
  const redirect = useRedirect();
  return (
    <>
      <Create mutationOptions={{ onSuccess: (data: RaRecord & { key: string }) => setCreated(data) }}>
        <SimpleForm>
          <TextInput source="name" validate={required()} />
          <TextInput source="organization" label="Organization code" helperText="Default: yours" />
          <CheckboxGroupInput source="scopes" choices={scopes} validate={required()} />
          <DateTimeInput source="expires_at" label="Expires" />
        </SimpleForm>
      </Create>
      {created && (
        <KeyOnce
          created={created}
          onClose={() => {
            setCreated(undefined);
            redirect('show', 'api-keys', created.id);
          }}
        />
      )}
    </>
  );
}
