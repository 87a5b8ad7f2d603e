import { Alert, Box, Button, Card, CardContent, Link, TextField, Typography } from '@mui/material';
import { type FormEvent, type ReactNode, useState } from 'react';
import { useLogin, useNotify } from 'react-admin';
import { Link as RouterLink } from 'react-router-dom';
import { MfaEnrolmentRequired, MfaRequired, sessionEndedByServer } from './auth-provider';
import { api } from './http';

interface Enrolment {
  secret: string;
  otpauthUri: string;
}

/**
 * Password sign-in, then the TOTP step when the account has two-factor authentication on. In an
 * organization that requires it, an account without an authenticator sets one up here: the secret,
 * its first code (which signs in), then the recovery codes, shown once.
 */
export function LoginPage() {
  const login = useLogin();
  const notify = useNotify();
  const [mfaToken, setMfaToken] = useState<string>();
  const [enrolment, setEnrolment] = useState<Enrolment>();
  const [recoveryCodes, setRecoveryCodes] = useState<string[]>();
  const [busy, setBusy] = useState(false);
  // Read once, as the page opens: the sign-out that led here was the server's, not the user's.
  const [sessionEnded] = useState(sessionEndedByServer);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const value = (name: string) => String(form.get(name) ?? '');
    setBusy(true);
    try {
      if (recoveryCodes) await login({ signedIn: true });
      else if (mfaToken && enrolment) {
        const answer = await api<{ recovery_codes?: string[] }>('/api/login/mfa/', {
          method: 'POST',
          body: { mfa_token: mfaToken, code: value('code') },
        });
        setRecoveryCodes(answer.recovery_codes ?? []);
      } else {
        await login(
          mfaToken
            ? { mfaToken, code: value('code') }
            : { username: value('username'), password: value('password'), organization: value('organization') },
        );
      }
    } catch (err) {
      if (err instanceof MfaEnrolmentRequired) {
        setMfaToken(err.mfaToken);
        setEnrolment({ secret: err.secret, otpauthUri: err.otpauthUri });
      } else if (err instanceof MfaRequired) setMfaToken(err.mfaToken);
      else notify((err as Error).message || 'Sign-in failed', { type: 'error' });
    } finally {
      setBusy(false);
    }
  }

  const codeField = (
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
  );
  let fields: ReactNode;
  let action = 'Sign in';
  if (recoveryCodes) {
    action = 'Continue';
    fields = (
      <>
        <Typography gutterBottom>
          Two-factor authentication is on. Keep these recovery codes somewhere safe: each signs in once without the app,
          and they are not shown again.
        </Typography>
        <Box component="ul" aria-label="Recovery codes" sx={{ fontFamily: 'monospace', columns: 2, pl: 3 }}>
          {recoveryCodes.map((code) => (
            <li key={code}>{code}</li>
          ))}
        </Box>
      </>
    );
  } else if (enrolment) {
    action = 'Turn on and sign in';
    fields = (
      <>
        <Typography gutterBottom>
          Your organization requires two-factor authentication. Add this key to an authenticator app (or{' '}
          <Link href={enrolment.otpauthUri}>open it in the app</Link>), then enter the code it shows.
        </Typography>
        <Typography data-testid="totp-secret" sx={{ fontFamily: 'monospace', wordBreak: 'break-all' }}>
          {enrolment.secret}
        </Typography>
        {codeField}
      </>
    );
  } else if (mfaToken) {
    action = 'Verify';
    fields = codeField;
  } else {
    fields = (
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
    );
  }

  return (
    <Box sx={{ minHeight: '100vh', display: 'flex', alignItems: 'center', justifyContent: 'center' }}>
      <Card sx={{ width: 380 }}>
        <CardContent>
          <Typography variant="h5" component="h1" gutterBottom>
            Gatehouse admin
          </Typography>
          {sessionEnded && !mfaToken && (
            <Alert severity="info" sx={{ mb: 1 }}>
              Your session has ended. Sign in again.
            </Alert>
          )}
          <form onSubmit={submit} aria-label="Sign in">
            {fields}
            <Button type="submit" variant="contained" fullWidth disabled={busy} sx={{ mt: 2 }}>
              {action}
            </Button>
          </form>
          {!mfaToken && (
            <Link component={RouterLink} to="/forgot-password" variant="body2" sx={{ display: 'block', mt: 2 }}>
              Forgot your password?
            </Link>
          )}
        </CardContent>
      </Card>
    </Box>
  );
}
