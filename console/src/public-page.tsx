import { Box, Button, Card, CardContent, Typography } from '@mui/material';
import type { ReactNode } from 'react';
import { Link as RouterLink, useLocation } from 'react-router-dom';

/**
 * The frame of the pages a mailed link opens: outside the console's layout, for people who are not
 * signed in (and may never have administration rights).
 */
export function PublicPage({ title, children }: { title: string; children: ReactNode }) {
  return (
    <Box sx={{ minHeight: '100vh', display: 'flex', alignItems: 'center', justifyContent: 'center' }}>
      <Card sx={{ width: 420 }}>
        <CardContent>
          <Typography variant="h5" component="h1" gutterBottom>
            {title}
          </Typography>
          {children}
        </CardContent>
      </Card>
    </Box>
  );
}

export function SignInButton({ variant = 'contained' }: { variant?: 'contained' | 'outlined' }) {
  return (
    <Button component={RouterLink} to="/login" variant={variant} sx={{ mt: 2 }}>
      Sign in
    </Button>
  );
}

export const USED_LINK =
  'This link can no longer be used: it was already used, has expired, or never existed. Ask for a new one.';

/**
 * The token of a mailed link. The server puts it in the fragment (`#token=`), which the browser
 * never sends: not on loading this page, nor in a Referer.
 */
export function useLinkToken(): string | undefined {
  const { hash } = useLocation();
  return new URLSearchParams(hash.replace(/^#/, '')).get('token') || undefined;
}
