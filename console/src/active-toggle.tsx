import { Button as MuiButton } from '@mui/material';
import { type RaRecord, useCanAccess, useNotify, useRecordContext, useRefresh } from 'react-admin';

/**
 * A show page's switch between active and inactive for the record in context, shown to those who
 * may edit the resource. What each state means is the server's business; this only flips it.
 */
export function ActiveToggle(props: {
  resource: string;
  isActive: (record: RaRecord) => boolean;
  setActive: (id: string, active: boolean) => Promise<unknown>;
  /** The label that turns the record back on ("Reactivate", "Activate"). */
  onLabel: string;
  /** What the record is called in the notices ("User", "Integration"). */
  noun: string;
}) {
  const record = useRecordContext();
  const notify = useNotify();
  const refresh = useRefresh();
  const { canAccess } = useCanAccess({ resource: props.resource, action: 'edit' });
  if (!record || !canAccess) return null;
  const active = props.isActive(record);
  async function toggle() {
    try {
      await props.setActive(String(record?.id), !active);
      notify(`${props.noun} ${active ? 'deactivated' : `${props.onLabel.toLowerCase()}d`}`, { type: 'info' });
      refresh();
    } catch (err) {
      notify((err as Error).message, { type: 'error' });
    }
  }
  return (
    <MuiButton size="small" color={active ? 'warning' : 'primary'} onClick={toggle}>
      {active ? 'Deactivate' : props.onLabel}
    </MuiButton>
  );
}
