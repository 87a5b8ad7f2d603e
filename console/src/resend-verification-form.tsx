import { Alert, Button, Typography } from '@mui/material';
import { EmailLinkFields, useEmailLinkRequest } from './email-link-request';

/** The one answer to every accepted request: whether an account uses the address is never told. */
const SENT = 'If an unverified account uses this address, a new link is on its way.';

/**
 * Asks for a new verification link, where a spent one leaves the person. The token names nobody the
 * page may show, so the address is typed in. The server accepts every well-formed request alike
 * (202) and mails only active, unverified accounts, later, in a job; the page adds nothing that could
 * tell one address from another.
 */
export function ResendVerificationForm() {
  const { sent, setSent, fieldErrors, formError, busy, submit } = useEmailLinkRequest(
    '/api/v1/users/verify-email/resend/',
  );

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
        <EmailLinkFields idPrefix="resend" fieldErrors={fieldErrors} />
        {formError && <Alert severity="error">{formError}</Alert>}
        <Button type="submit" variant="contained" fullWidth disabled={busy} sx={{ mt: 2 }}>
          Send a new link
        </Button>
      </form>
    </>
  );
}
