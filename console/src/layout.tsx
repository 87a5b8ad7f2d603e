import { Box, Button, Card, CardContent, Typography } from '@mui/material';
import { type ReactNode, useEffect } from 'react';
import { AppBar, Layout, Loading, UserMenu, useNotify, usePermissions } from 'react-admin';
import { type Access, hasConsoleAccess } from './auth-provider';
import { onListNotice } from './data-provider';
import { SignOutEverywhereMenuItem, SignOutMenuItem, useSignOut } from './sign-out';

function NoAccess() {
  const signOut = useSignOut({ returnHere: true });
  return (
    <Box sx={{ minHeight: '100vh', display: 'flex', alignItems: 'center', justifyContent: 'center' }}>
      <Card sx={{ maxWidth: 460 }}>
        <CardContent>
          <Typography variant="h5" component="h1" gutterBottom>
            No access
          </Typography>
          <Typography gutterBottom>
            You are signed in, but your account has no administration rights. Ask an administrator for a role that
            grants them.
          </Typography>
          <Button variant="outlined" onClick={() => void signOut()}>
            Sign out
          </Button>
        </CardContent>
      </Card>
    </Box>
  );
}

function ConsoleAppBar() {
  return (
    <AppBar
      userMenu={
        <UserMenu>
          <SignOutMenuItem />
          <SignOutEverywhereMenuItem />
        </UserMenu>
      }
    />
  );
}

/**
 * Long unbroken values (a 150-character username, a URL) wrap in list cells and on a record's page
 * rather than widening the table or the page past the window.
 */
const wrapLongValues = {
  '& .RaDatagrid-rowCell': { overflowWrap: 'anywhere' },
  '& .RaShow-card': { overflowWrap: 'anywhere' },
} as const;

/** Says why a list shows another page than its URL asked for (the data provider cannot notify itself). */
function ListNotices() {
  const notify = useNotify();
  useEffect(() => onListNotice((message) => notify(message, { type: 'info' })), [notify]);
  return null;
}

/** react-admin's layout, or the "no access" page for a signed-in user without administration rights. */
export function ConsoleLayout({ children }: { children: ReactNode }) {
  const { permissions, isPending } = usePermissions<Access>();
  if (isPending) return <Loading />;
  if (!hasConsoleAccess(permissions)) return <NoAccess />;
  return (
    <Layout appBar={ConsoleAppBar} sx={wrapLongValues}>
      <ListNotices />
      {children}
    </Layout>
  );
}
