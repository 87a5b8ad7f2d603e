import EverywhereIcon from '@mui/icons-material/PhonelinkErase';
import ExitIcon from '@mui/icons-material/PowerSettingsNew';
import { ListItemIcon, ListItemText, MenuItem } from '@mui/material';
import { useCallback } from 'react';
import { useLogout, useNotify, useUserMenu } from 'react-admin';

/**
 * Signs out, or says why not. react-admin's own Logout leaves a refused sign-out (the session still
 * open) unreported; the page stays as it is then, since the user is still signed in. `everywhere`
 * ends every session of the user (other browsers, API clients), not only this one.
 */
export function useSignOut({
  returnHere,
  everywhere = false,
}: {
  returnHere: boolean;
  everywhere?: boolean;
}): () => Promise<void> {
  const logout = useLogout();
  const notify = useNotify();
  return useCallback(async () => {
    try {
      await logout({ byUser: true, everywhere }, undefined, returnHere);
    } catch (err) {
      notify((err as Error).message, { type: 'error' });
    }
  }, [logout, notify, returnHere, everywhere]);
}

function SignOutItem({ everywhere }: { everywhere: boolean }) {
  const signOut = useSignOut({ returnHere: false, everywhere });
  const userMenu = useUserMenu();
  return (
    <MenuItem
      onClick={() => {
        userMenu?.onClose();
        void signOut();
      }}
    >
      <ListItemIcon>{everywhere ? <EverywhereIcon fontSize="small" /> : <ExitIcon fontSize="small" />}</ListItemIcon>
      <ListItemText>{everywhere ? 'Sign out everywhere' : 'Logout'}</ListItemText>
    </MenuItem>
  );
}

/** The user menu's Logout entry, as react-admin's (the next sign-in starts at the dashboard). */
export function SignOutMenuItem() {
  return <SignOutItem everywhere={false} />;
}

/** Ends every session of the user (a lost laptop), then leaves for the sign-in page like Logout. */
export function SignOutEverywhereMenuItem() {
  return <SignOutItem everywhere />;
}
