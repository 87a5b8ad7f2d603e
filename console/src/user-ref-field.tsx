import { ReferenceField, TextField, useCanAccess, useRecordContext } from 'react-admin';

/**
 * The user a row names, shown by email and linked to their page; by id when they cannot be read
 * (deleted, or beyond what the signed-in user may see), so the row still says who it was. Whoever may
 * not read users at all sees the id without the console asking. `label` and `sortable` are read by
 * the Datagrid's header.
 */
export function UserRefField({ source = 'user_id' }: { source?: string; label?: string; sortable?: boolean }) {
  const record = useRecordContext();
  const { canAccess, isPending } = useCanAccess({ resource: 'users', action: 'show' });
  const id = record?.[source];
  if (id == null) return null;
  if (isPending || !canAccess) return <>{String(id)}</>;
  return (
    <ReferenceField source={source} reference="users" link="show" emptyText={String(id)}>
      <TextField source="email" />
    </ReferenceField>
  );
}
