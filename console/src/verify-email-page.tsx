import { Alert, Typography } from '@mui/material';
import { useEffect, useRef, useState } from 'react';
import { HttpError } from 'react-admin';
import { api } from './http';
import { PublicPage, SignInButton, USED_LINK, useLinkToken } from './public-page';
import { ResendVerificationForm } from './resend-verification-form';

/** `spent`: the link can no longer be used (used, expired, replaced, or never existed); a new one can be asked for. */
type Outcome = { verified: true } | { verified: false; message: string; spent: boolean };

/** Where a mailed verification link lands: uses the token up and says how it went. */
export function VerifyEmailPage() {
  const token = useLinkToken();
  const [outcome, setOutcome] = useState<Outcome>();
  // The token works once: a second run of the effect (React's development mode) must not spend it again.
  const sent = useRef<{ token: string; outcome: Promise<Outcome> }>(undefined);

  useEffect(() => {
    setOutcome(undefined);
    if (!token) {
      setOutcome({ verified: false, message: USED_LINK, spent: true });
      return;
    }
    if (sent.current?.token !== token) {
      const outcome = api('/api/v1/users/verify-email/', { method: 'POST', body: { token }, unchecked: true }).then(
        (): Outcome => ({ verified: true }),
        (err): Outcome =>
          err instanceof HttpError && (err.status === 400 || err.status === 404)
            ? { verified: false, message: USED_LINK, spent: true }
            : {
                verified: false,
                message: `The address could not be verified: ${(err as Error).message}. Try again later.`,
                spent: false,
              },
      );
      sent.current = { token, outcome };
    }
    let current = true;
    void sent.current.outcome.then((result) => current && setOutcome(result));
    return () => {
      current = false;
    };
  }, [token]);

  return (
    <PublicPage title="Verify your email address">
      {!outcome && <Typography>Verifying your address…</Typography>}
      {outcome?.verified && <Alert severity="success">Your email address is verified.</Alert>}
      {outcome && !outcome.verified && <Alert severity="error">{outcome.message}</Alert>}
      {outcome && !outcome.verified && outcome.spent && <ResendVerificationForm />}
      {outcome && <SignInButton variant={outcome.verified ? 'contained' : 'outlined'} />}
    </PublicPage>
  );
}
