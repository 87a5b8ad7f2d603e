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
  Confirm,
  Create,
  Datagrid,
  DateField,
  DeleteButton,
  List,
  type RaRecord,
  required,
  Show,
  SimpleForm,
  SimpleShowLayout,
  TextField,
  TextInput,
  TopToolbar,
  useCanAccess,
  useNotify,
  useRecordContext,
  useRedirect,
  useRefresh,
} from 'react-admin';
import { rotateApiKey } from '../data-provider';
import { InstantInput } from '../instant-input';
import { RecordLink } from '../record-link';
import { requiredText } from '../required-input';

const scopes = ['provisioning', 'scim', 'authorize', 'read:users'].map((id) => ({ id, name: id }));

export function ApiKeyList() {
  return (
    <List perPage={25} exporter={false}>
      <Datagrid rowClick="show" bulkActionButtons={false}>
        <RecordLink source="name" label="Name" sortable={false} />
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

/**
 * Rotation issues a new key with the same name, organization, scopes and expiry and revokes this
 * one, in one transaction on the server; the new key is shown once, like a created one.
 */
function RotateButton() {
  const apiKey = useRecordContext();
  const notify = useNotify();
  const redirect = useRedirect();
  const [confirming, setConfirming] = useState(false);
  const [pending, setPending] = useState(false);
  const [created, setCreated] = useState<RaRecord & { key: string }>();
  const { canAccess } = useCanAccess({ resource: 'api-keys', action: 'edit' });
  if (!apiKey || !canAccess) return null;
  async function rotate() {
    setPending(true);
    try {
      setCreated(await rotateApiKey(apiKey!.id));
    } catch (err) {
      notify((err as Error).message, { type: 'error' });
    } finally {
      setPending(false);
      setConfirming(false);
    }
  }
  return (
    <>
      <Button size="small" onClick={() => setConfirming(true)} disabled={Boolean(apiKey.revoked_at)}>
        Rotate
      </Button>
      <Confirm
        isOpen={confirming}
        loading={pending}
        title="Rotate this API key?"
        content="A new key with the same name, organization, scopes and expiry replaces it, and this one stops working at once."
        confirm="Rotate"
        onConfirm={rotate}
        onClose={() => setConfirming(false)}
      />
      {created && (
        <KeyOnce
          created={created}
          title="API key rotated"
          onClose={() => {
            setCreated(undefined);
            redirect('show', 'api-keys', created.id);
          }}
        />
      )}
    </>
  );
}

/**
 * The API's DELETE revokes a key, which stays with its revocation time: the page stays on it, and there
 * is nothing left to revoke.
 */
function RevokeButton() {
  const apiKey = useRecordContext();
  const notify = useNotify();
  const refresh = useRefresh();
  return (
    <DeleteButton
      label="Revoke"
      mutationMode="pessimistic"
      disabled={!apiKey || Boolean(apiKey.revoked_at)}
      confirmTitle="Revoke this API key?"
      confirmContent="It stops working at once, and cannot be used again."
      mutationOptions={{
        onSuccess: () => {
          notify('API key revoked', { type: 'info' });
          refresh();
        },
      }}
    />
  );
}

export function ApiKeyShow() {
  return (
    <Show
      actions={
        <TopToolbar>
          <RotateButton />
        </TopToolbar>
      }
    >
      <SimpleShowLayout>
        <TextField source="name" />
        <TextField source="prefix" />
        <TextField source="organization" emptyText="(platform)" />
        <TextField source="scopes" />
        <DateField source="expires_at" showTime emptyText="never" />
        <DateField source="last_used_at" showTime emptyText="never" />
        <DateField source="revoked_at" showTime emptyText="—" />
        <DateField source="created_at" showTime />
        <RevokeButton />
      </SimpleShowLayout>
    </Show>
  );
}

/**
 * The key exists in clear only in the create answer (the server keeps its hash), so it is shown
 * here once, from memory, and never stored anywhere in the browser.
 */
function KeyOnce({
  created,
  title = 'API key created',
  onClose,
}: {
  created: RaRecord & { key: string };
  title?: string;
  onClose(): void;
}) {
  const [copied, setCopied] = useState(false);
  async function copy() {
    await navigator.clipboard.writeText(created.key);
    setCopied(true);
  }
  return (
    // Only "Done" closes it: Escape or a click beside it would lose the key for good.
    <Dialog open aria-labelledby="new-key-title" maxWidth="sm" fullWidth>
      <DialogTitle id="new-key-title">{title}</DialogTitle>
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
          <TextInput source="name" {...requiredText} />
          <TextInput source="organization" label="Organization code" helperText="Default: yours" />
          <CheckboxGroupInput source="scopes" choices={scopes} validate={required()} />
          <InstantInput source="expires_at" label="Expires" />
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
