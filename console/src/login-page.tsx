import { Box, Button, Card, CardContent, TextField, Typography } from '@mui/material';
import { type FormEvent, useState } from 'react';
import { useLogin, useNotify } from 'react-admin';
import { MfaRequired } from './auth-provider';

/** Password sign-in, then the TOTP step when the account has two-factor authentication on. */
export function LoginPage() {
  const login = useLogin();
  const notify = useNotify();
  const [mfaToken, setMfaToken] = useState<string>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const value = (name: string) => String(form.get(name) ?? '');
    setBusy(true);
    try {
      await login(
        mfaToken
          ? { mfaToken, code: value('code') }
          : { username: value('username'), password: value('password'), organization: value('organization') },
      );
    } catch (err) {
      if (err instanceof MfaRequired) setMfaToken(err.mfaToken);
      else notify((err as Error).message || 'Sign-in failed', { type: 'error' });
    } finally {
      setBusy(false);
    }
  }

  return (
    <Box sx={{ minHeight: '100vh', display: 'flex', alignItems: 'center', justifyContent: 'center' }}>
      <Card sx={{ width: 380 }}>
        <CardContent>
          <Typography variant="h5" component="h1" gutterBottom>
            Gatehouse admin
          </Typography>
          <form onSubmit={submit} aria-label="Sign in">
            {mfaToken ? (
              <TextField
                key="code"
                name="code"
                label="Authentication code"
                autoComplete="one-time-code"
                inputMode="numeric"
                autoFocus
                required
                fullWidth
                margin="normal"
              />
            ) : (
              <>
                <TextField
                  name="username"
                  label="Email or username"
                  autoComplete="username"
                  autoFocus
                  required
                  fullWidth
                  margin="normal"
                />
                <TextField
                  name="password"
                  label="Password"
                  type="password"
                  autoComplete="current-password"
                  required
                  fullWidth
                  margin="normal"
                />
                <TextField
                  name="organization"
                  label="Organization code (optional)"
                  helperText="Only when the same login exists in several organizations"
                  fullWidth
                  margin="normal"
                />
              </>
            )}
            <Button type="submit" variant="contained" fullWidth disabled={busy} sx={{ mt: 2 }}>
              {mfaToken ? 'Verify' : 'Sign in'}
            </Button>
          </form>
        </CardContent>
      </Card>
    </Box>
  );
}
