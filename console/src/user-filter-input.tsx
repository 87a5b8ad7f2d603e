import { AutocompleteInput, ReferenceInput, TextInput, useCanAccess } from 'react-admin';

/** The users list's search takes a prefix; the picker asks it for what was typed. */
const searchUsers = (text: string) => ({ q: text });

/**
 * A list filter on one user: picked by email from the users list (searched as typed), while the
 * filter, and so the URL, holds their id, the value the API takes. Whoever may not read the users
 * list (the server would refuse the search) types the id, as before.
 * `alwaysOn` and `label` are read by the list's filter form.
 */
export function UserFilterInput({ source, label = 'User' }: { source: string; label?: string; alwaysOn?: boolean }) {
  const { canAccess, isPending } = useCanAccess({ resource: 'users', action: 'list' });
  if (isPending) return null;
  if (!canAccess) return <TextInput source={source} label={`${label} id`} />;
  return (
    <ReferenceInput source={source} reference="users">
      <AutocompleteInput label={label} optionText="email" filterToQuery={searchUsers} sx={{ minWidth: 280 }} />
    </ReferenceInput>
  );
}
