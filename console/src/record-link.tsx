import type { MouseEvent } from 'react';
import { Link, useCreatePath, useRecordContext, useResourceContext } from 'react-admin';

/**
 * The cell that opens its row: a link, so keyboard users reach a record with Tab and Enter as mouse
 * users do with a click on the row. `type: false` (no page the user may open) shows plain text.
 * `sortable` is read by the list's header (a column sorts only where the API can sort by it).
 */
export function RecordLink({
  source,
  type = 'show',
}: {
  source: string;
  label?: string;
  sortable?: boolean;
  type?: 'show' | 'edit' | false;
}) {
  const record = useRecordContext();
  const resource = useResourceContext();
  const createPath = useCreatePath();
  if (!record) return null;
  const text = String(record[source] ?? '');
  if (type === false || !resource) return <>{text}</>;
  return (
    // The row's own click would open the same page again.
    <Link to={createPath({ resource, id: record.id, type })} onClick={(event: MouseEvent) => event.stopPropagation()}>
      {text}
    </Link>
  );
}
