import { Typography } from '@mui/material';
import {
  Datagrid,
  DateField,
  FunctionField,
  List,
  NumberField,
  type RaRecord,
  SelectInput,
  Show,
  SimpleShowLayout,
  TextField,
  TextInput,
} from 'react-admin';
import { InstantInput } from '../instant-input';
import { RecordLink } from '../record-link';

// The mail outbox: every mail Gatehouse queued. Without SMTP_URL it is where mail goes; with SMTP it
// is the delivery queue. Superusers only: the bodies hold other people's reset and invitation links.

const statuses = ['queued', 'sent', 'stored', 'failed'].map((id) => ({ id, name: id }));

const mailFilters = [
  <TextInput key="to" source="to" label="Recipient" alwaysOn />,
  <SelectInput key="status" source="status" choices={statuses} />,
  <InstantInput key="since" source="since" />,
];

export function MailList() {
  return (
    <List filters={mailFilters} exporter={false} perPage={25} title="Mail">
      <Datagrid rowClick="show" bulkActionButtons={false}>
        <TextField source="to" label="Recipient" sortable={false} />
        <RecordLink source="subject" label="Subject" sortable={false} />
        <DateField source="created_at" label="Created" showTime sortable={false} />
        <TextField source="status" sortable={false} />
        <DateField source="sent_at" label="Sent" showTime emptyText="—" sortable={false} />
      </Datagrid>
    </List>
  );
}

/**
 * A body as text in a <pre>: React escapes it, so an HTML body shows as its source and nothing in a
 * mail ever runs or loads in the console's origin.
 */
function Body({ text, testId }: { text: string; testId: string }) {
  return (
    <Typography
      component="pre"
      variant="body2"
      data-testid={testId}
      sx={{ whiteSpace: 'pre-wrap', wordBreak: 'break-word', fontFamily: 'monospace', m: 0 }}
    >
      {text}
    </Typography>
  );
}

export function MailShow() {
  return (
    // Each read of a mail is an audit event on the server: no refetch on focus or reconnect adds reads
    // the administrator did not make.
    <Show queryOptions={{ refetchOnWindowFocus: false, refetchOnReconnect: false }}>
      <SimpleShowLayout>
        <TextField source="to" label="Recipient" />
        <TextField source="subject" />
        <TextField source="status" />
        <NumberField source="attempts" />
        <TextField source="last_error" emptyText="—" />
        <DateField source="created_at" label="Created" showTime />
        <DateField source="sent_at" label="Sent" showTime emptyText="—" />
        <FunctionField
          label="Body"
          render={(mail: RaRecord) => <Body text={String(mail.text_body ?? '')} testId="mail-text-body" />}
        />
        <FunctionField
          label="HTML body (source)"
          render={(mail: RaRecord) =>
            mail.html_body ? <Body text={String(mail.html_body)} testId="mail-html-body" /> : '—'
          }
        />
      </SimpleShowLayout>
    </Show>
  );
}
