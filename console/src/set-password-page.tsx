import { Alert, Button, TextField, Typography } from '@mui/material';
import { type FormEvent, useEffect, useState } from 'react';
import { HttpError } from 'react-admin';
import { Link as RouterLink } from 'react-router-dom';
import { api, type Problem } from './http';
import { PublicPage, SignInButton, USED_LINK, useLinkToken } from './public-page';

interface TokenStatus {
  valid: true;
  purpose: 'password_reset' | 'invite';
  expires_at: string;
}

type State =
  | { step: 'checking' }
  | { step: 'unusable'; message: string }
  | { step: 'form'; status: TokenStatus }
  | { step: 'done' };

/** A 400 or 404 about the token means the link is spent; anything else (server down) says itself. */
function unusable(err: unknown): { step: 'unusable'; message: string } {
  if (err instanceof HttpError && (err.status === 400 || err.status === 404)) {
    return { step: 'unusable', message: USED_LINK };
  }
  return { step: 'unusable', message: `The link could not be checked: ${(err as Error).message}. Try again later.` };
}

/**
 * Where a mailed password-reset or invitation link lands: says whether the link can still be used
 * (nothing is used up by looking), then sets the new password, entered twice.
 */
export function SetPasswordPage() {
  const token = useLinkToken();
  const [state, setState] = useState<State>({ step: 'checking' });
  const [fieldErrors, setFieldErrors] = useState<{ password?: string; repeat?: string }>({});
  const [formError, setFormError] = useState<string>();
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    setFieldErrors({});
    setFormError(undefined);
    if (!token) {
      setState({ step: 'unusable', message: USED_LINK });
      return;
    }
    setState({ step: 'checking' });
    let current = true;
    // In the body, not the query string: a URL ends up in access logs.
    api<TokenStatus>('/api/v1/users/password-reset/check/', { method: 'POST', body: { token }, unchecked: true }).then(
      (status) => current && setState({ step: 'form', status }),
      (err) => current && setState(unusable(err)),
    );
    return () => {
      current = false;
    };
  }, [token]);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const password = String(form.get('new_password') ?? '');
    setFormError(undefined);
    if (password !== String(form.get('repeat') ?? '')) {
      setFieldErrors({ repeat: 'The two passwords differ.' });
      return;
    }
    setFieldErrors({});
    setBusy(true);
    try {
      await api('/api/v1/users/password-reset/confirm/', {
        method: 'POST',
        body: { token, new_password: password },
        unchecked: true,
      });
      setState({ step: 'done' });
    } catch (err) {
      const problem = err instanceof HttpError ? (err.body as Problem | undefined) : undefined;
      const errors = problem?.errors ?? [];
      if (errors.some((e) => e.field === 'token')) setState({ step: 'unusable', message: USED_LINK });
      else if (errors.some((e) => e.field === 'new_password')) {
        setFieldErrors({ password: errors.find((e) => e.field === 'new_password')?.message });
      } else setFormError((err as Error).message || 'The password could not be set.');
    } finally {
      setBusy(false);
    }
  }

  if (state.step === 'checking') {
    return (
      <PublicPage title="Set your password">
        <Typography>Checking your link…</Typography>
      </PublicPage>
    );
  }
  if (state.step === 'unusable') {
    return (
      <PublicPage title="Set your password">
        <Alert severity="error">{state.message}</Alert>
        {/* A reset or an invitation link alike: a reset link sets the first password of an invited account too. */}
        <Button component={RouterLink} to="/forgot-password" variant="contained" sx={{ mt: 2, mr: 1 }}>
          Ask for a new link
        </Button>
        <SignInButton variant="outlined" />
      </PublicPage>
    );
  }
  if (state.step === 'done') {
    return (
      <PublicPage title="Set your password">
        <Alert severity="success">Your password has been set. Sign in with it.</Alert>
        <SignInButton />
      </PublicPage>
    );
  }
  const { purpose, expires_at } = state.status;
  return (
    <PublicPage title={purpose === 'invite' ? 'Set your password' : 'Reset your password'}>
      <Typography variant="body2" color="text.secondary">
        This link works until {new Date(expires_at).toLocaleString()}, once.
        {purpose === 'password_reset' && ' Setting a new password signs you out everywhere.'}
      </Typography>
      <form onSubmit={submit} aria-label="Set password">
        <TextField
          name="new_password"
          label="New password"
          type="password"
          autoComplete="new-password"
          autoFocus
          required
          fullWidth
          margin="normal"
          error={Boolean(fieldErrors.password)}
          helperText={fieldErrors.password}
        />
        <TextField
          name="repeat"
          label="New password again"
          type="password"
          autoComplete="new-password"
          required
          fullWidth
          margin="normal"
          error={Boolean(fieldErrors.repeat)}
          helperText={fieldErrors.repeat}
        />
        {formError && <Alert severity="error">{formError}</Alert>}
        <Button type="submit" variant="contained" fullWidth disabled={busy} sx={{ mt: 2 }}>
          Set password
        </Button>
      </form>
    </PublicPage>
  );
}
