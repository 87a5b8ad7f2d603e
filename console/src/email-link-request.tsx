import { TextField } from '@mui/material';
import { type FormEvent, useState } from 'react';
import { HttpError } from 'react-admin';
import { api, type Problem } from './http';

export type EmailLinkFieldErrors = { email?: string; organization?: string };

/**
 * The state of a form that asks for a mailed link by address (a password reset, a new verification
 * link). The server accepts every well-formed request alike (202) and mails later, in a job, so the
 * form learns nothing about the address; only the field refusals, a rate limit or a failure show.
 */
export function useEmailLinkRequest(path: string) {
  const [sent, setSent] = useState(false);
  const [fieldErrors, setFieldErrors] = useState<EmailLinkFieldErrors>({});
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
      await api(path, { method: 'POST', body, unchecked: true });
      setSent(true);
    } catch (err) {
      const problem = err instanceof HttpError ? (err.body as Problem | undefined) : undefined;
      const errors: EmailLinkFieldErrors = {};
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

  return { sent, setSent, fieldErrors, formError, busy, submit };
}

/** The address and the optional organization code such a form asks for, with the server's refusals. */
export function EmailLinkFields({
  idPrefix,
  fieldErrors,
  autoFocus = false,
}: {
  idPrefix: string;
  fieldErrors: EmailLinkFieldErrors;
  autoFocus?: boolean;
}) {
  return (
    <>
      <TextField
        id={`${idPrefix}-email`}
        name="email"
        label="Email"
        type="email"
        autoComplete="email"
        autoFocus={autoFocus}
        required
        fullWidth
        margin="normal"
        error={Boolean(fieldErrors.email)}
        helperText={fieldErrors.email}
      />
      <TextField
        id={`${idPrefix}-organization`}
        name="organization"
        label="Organization code (optional)"
        fullWidth
        margin="normal"
        error={Boolean(fieldErrors.organization)}
        helperText={fieldErrors.organization ?? 'Only when the address is used in several organizations'}
      />
    </>
  );
}
