import { Alert, Button, TextField, Typography } from '@mui/material';
import { type FormEvent, useState } from 'react';
import { HttpError } from 'react-admin';
import { api, type Problem } from './http';

/** The one answer to every accepted request: whether an account uses the address is never told. */
const SENT = 'If an unverified account uses this address, a new link is on its way.';

type FieldErrors = { email?: string; organization?: string };

/**
 * Asks for a new verification link, where a spent one leaves the person. The token names nobody the
 * page may show, so the address is typed in. The server accepts every well-formed request alike
 * (202) and mails only active, unverified accounts, later, in a job; the page adds nothing that could
 * tell one address from another.
 */
export function ResendVerificationForm() {
  const [sent, setSent] = useState(false);
  const [fieldErrors, setFieldErrors] = useState<FieldErrors>({});
  const [formError, setFormError] = useState<string>();
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    const email = String(form.get('email') ?? '').trim();
    const organization = String(form.get('organization') ?? '').trim();
    setFieldErrors({});
    setFormError(undefined);
    setBusy(true);
    try {
      // An empty code means every organization, which the API says by leaving the field out.
      const body: Record<string, string> = { email };
      if (organization) body.organization = organization;
      await api('/api/v1/users/verify-email/resend/', { method: 'POST', body, unchecked: true });
      setSent(true);
    } catch (err) {
      const problem = err instanceof HttpError ? (err.body as Problem | undefined) : undefined;
      const errors: FieldErrors = {};
      for (const e of problem?.errors ?? []) {
        if (e.field === 'email' || e.field === 'organization') errors[e.field] ??= e.message;
      }
      if (err instanceof HttpError && err.status === 429) setFormError('Too many requests. Try again later.');
      else if (errors.email || errors.organization) setFieldErrors(errors);
      // Not about the address (the server or the network failed): nothing was queued, so say so.
      else setFormError(`The request could not be sent: ${(err as Error).message}. Try again later.`);
    } finally {
      setBusy(false);
    }
  }

  if (sent) {
    return (
      <>
        <Alert severity="success" sx={{ mt: 2 }}>
          {SENT}
        </Alert>
        <Typography variant="body2" color="text.secondary" sx={{ mt: 2 }}>
          The link works once, for 72 hours, and replaces the earlier ones. No mail? Check the address, or your spam
          folder, and ask again.
        </Typography>
        <Button variant="outlined" sx={{ mt: 2 }} onClick={() => setSent(false)}>
          Ask again
        </Button>
      </>
    );
  }
  return (
    <>
      <Typography variant="body2" color="text.secondary" sx={{ mt: 2 }}>
        Enter your email address to be sent a new verification link.
      </Typography>
      {/* noValidate: the server judges the address, and its answer is shown under the field. */}
      <form onSubmit={submit} aria-label="Ask for a new verification link" noValidate>
        <TextField
          id="resend-email"
          name="email"
          label="Email"
          type="email"
          autoComplete="email"
          required
          fullWidth
          margin="normal"
          error={Boolean(fieldErrors.email)}
          helperText={fieldErrors.email}
        />
        <TextField
          id="resend-organization"
          name="organization"
          label="Organization code (optional)"
          fullWidth
          margin="normal"
          error={Boolean(fieldErrors.organization)}
          helperText={fieldErrors.organization ?? 'Only when the address is used in several organizations'}
        />
        {formError && <Alert severity="error">{formError}</Alert>}
        <Button type="submit" variant="contained" fullWidth disabled={busy} sx={{ mt: 2 }}>
          Send a new link
        </Button>
      </form>
    </>
  );
}
