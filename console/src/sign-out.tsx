import ExitIcon from '@mui/icons-material/PowerSettingsNew';
import { ListItemIcon, ListItemText, MenuItem } from '@mui/material';
import { useCallback } from 'react';
import { useLogout, useNotify, useUserMenu } from 'react-admin';

/**
 * Signs out, or says why not. react-admin's own Logout leaves a refused sign-out (the session still
 * open) unreported; the page stays as it is then, since the user is still signed in.
 */
export function useSignOut({ returnHere }: { returnHere: boolean }): () => Promise<void> {
  const logout = useLogout();
  const notify = useNotify();
  return useCallback(async () => {
    try {
      await logout({ byUser: true }, undefined, returnHere);
    } catch (err) {
      notify((err as Error).message, { type: 'error' });
    }
  }, [logout, notify, returnHere]);
}

/** The user menu's Logout entry, as react-admin's (the next sign-in starts at the dashboard). */
export function SignOutMenuItem() {
  const signOut = useSignOut({ returnHere: false });
  const userMenu = useUserMenu();
  return (
    <MenuItem
      onClick={() => {
        userMenu?.onClose();
        void signOut();
      }}
    >
      <ListItemIcon>
        <ExitIcon fontSize="small" />
      </ListItemIcon>
      <ListItemText>Logout</ListItemText>
    </MenuItem>
  );
}
