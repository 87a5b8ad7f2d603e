import { Button, Typography } from '@mui/material';
import {
  BooleanField,
  Datagrid,
  DateField,
  DeleteButton,
  FilterButton,
  List,
  NullableBooleanInput,
  NumberField,
  SelectInput,
  TextField,
  TextInput,
  TopToolbar,
  useListFilterContext,
  useRecordContext,
} from 'react-admin';
import { query } from '../http';
import { InstantInput } from '../instant-input';
import { UserFilterInput } from '../user-filter-input';
import { UserRefField } from '../user-ref-field';

const severities = ['info', 'warning', 'critical'].map((id) => ({ id, name: id }));

const activityFilters = [
  <TextInput key="activity_type" source="activity_type" label="Type" alwaysOn />,
  <UserFilterInput key="user" source="user" label="User" />,
  <TextInput key="category" source="category" />,
  <SelectInput key="severity" source="severity" choices={severities} />,
  <NullableBooleanInput key="success" source="success" />,
  <InstantInput key="since" source="since" />,
  <InstantInput key="until" source="until" />,
];

/**
 * The filters' "Add filter" button (replacing the default actions drops it), and the export link: the
 * audit export streams from the server with the list's current filters; the cookie authenticates it.
 */
function ActivityActions() {
  const { filterValues } = useListFilterContext();
  return (
    <TopToolbar>
      <FilterButton />
      <Button component="a" href={`/api/v1/activities/export/${query({ ...filterValues, format: 'csv' })}`} download>
        Export CSV
      </Button>
    </TopToolbar>
  );
}

/** An event's details, a JSON object, as indented JSON text. */
function ActivityDetails() {
  const activity = useRecordContext();
  if (!activity) return null;
  return (
    <Typography
      component="pre"
      variant="body2"
      data-testid="activity-details"
      sx={{ whiteSpace: 'pre-wrap', wordBreak: 'break-word', fontFamily: 'monospace', m: 0 }}
    >
      {JSON.stringify(activity.details ?? {}, null, 2)}
    </Typography>
  );
}

export function ActivityList() {
  return (
    <List filters={activityFilters} actions={<ActivityActions />} exporter={false} perPage={50}>
      <Datagrid bulkActionButtons={false} rowClick="expand" expand={<ActivityDetails />}>
        <DateField source="timestamp" showTime sortable={false} />
        <TextField source="activity_type" label="Type" sortable={false} />
        <TextField source="category" sortable={false} />
        <TextField source="severity" sortable={false} />
        <BooleanField source="success" sortable={false} />
        <UserRefField label="User" sortable={false} />
        <TextField source="actor_type" label="By" sortable={false} />
        <UserRefField source="actor_id" label="Actor" sortable={false} />
        <TextField source="organization" sortable={false} />
        <TextField source="description" sortable={false} />
        <TextField source="ip_address" label="IP" sortable={false} />
      </Datagrid>
    </List>
  );
}

export function ActiveUserList() {
  return (
    <List exporter={false} perPage={50} title="Active users now">
      <Datagrid bulkActionButtons={false} rowClick={false}>
        <TextField source="email" sortable={false} />
        <TextField source="username" sortable={false} />
        <TextField source="organization" sortable={false} />
        <DateField source="last_activity" showTime sortable={false} />
        <TextField source="method" sortable={false} />
        <TextField source="current_path" label="Path" sortable={false} />
        <TextField source="ip_address" label="IP" sortable={false} />
        <TextField source="browser" sortable={false} />
      </Datagrid>
    </List>
  );
}

const periods = ['hour', 'day'].map((id) => ({ id, name: id }));

export function ActivityStatList() {
  return (
    <List
      exporter={false}
      title="Activity statistics"
      filters={[<SelectInput key="period" source="period" choices={periods} alwaysOn />]}
    >
      <Datagrid bulkActionButtons={false} rowClick={false}>
        <DateField source="period_start" showTime sortable={false} />
        <TextField source="period_type" label="Period" sortable={false} />
        <TextField source="organization" emptyText="(whole platform)" sortable={false} />
        <NumberField source="total_activities" label="Total" sortable={false} />
        <NumberField source="success_count" label="Succeeded" sortable={false} />
        <NumberField source="failure_count" label="Failed" sortable={false} />
        <NumberField source="request_count" label="Requests" sortable={false} />
        <NumberField source="p95_duration_ms" label="p95 ms" sortable={false} />
      </Datagrid>
    </List>
  );
}

/** Only an open session can be revoked; revoking one's own signs the console out, and says so. */
function RevokeSessionButton() {
  const session = useRecordContext();
  if (!session?.active) return null;
  return (
    <DeleteButton
      label="Revoke"
      redirect={false}
      mutationMode="pessimistic"
      confirmTitle="Revoke this session?"
      confirmContent={
        session.current
          ? 'This is the session you are using: revoking it signs you out here.'
          : 'Its refresh token stops working and the device is signed out.'
      }
      successMessage="Session revoked"
    />
  );
}

export function SessionList() {
  return (
    <List
      exporter={false}
      filters={[
        <UserFilterInput key="user" source="user" label="User" alwaysOn />,
        <NullableBooleanInput key="active" source="active" />,
      ]}
    >
      <Datagrid bulkActionButtons={false} rowClick={false}>
        <UserRefField label="User" sortable={false} />
        <TextField source="organization" sortable={false} />
        <TextField source="ip_address" label="IP" sortable={false} />
        <TextField source="browser" sortable={false} />
        <TextField source="os" label="OS" sortable={false} />
        <DateField source="last_activity_at" label="Last activity" showTime sortable={false} />
        <BooleanField source="active" sortable={false} />
        <BooleanField source="current" label="This session" sortable={false} />
        <RevokeSessionButton />
      </Datagrid>
    </List>
  );
}
