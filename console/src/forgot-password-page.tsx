import { Alert, Button, Link, Typography } from '@mui/material';
import { Link as RouterLink } from 'react-router-dom';
import { EmailLinkFields, useEmailLinkRequest } from './email-link-request';
import { PublicPage, SignInButton } from './public-page';

/** The one answer to every accepted request: whether an account uses the address is never told. */
const SENT = 'If an account uses this address, a link is on its way.';

/**
 * Where a person who forgot their password, or whose link is spent, asks for a new link. The server
 * accepts every well-formed request alike (202) and mails only existing accounts, later, in a job;
 * the page adds nothing that could tell one address from another.
 */
export function ForgotPasswordPage() {
  const { sent, setSent, fieldErrors, formError, busy, submit } = useEmailLinkRequest('/api/v1/users/password-reset/');

  if (sent) {
    return (
      <PublicPage title="Forgot your password?">
        <Alert severity="success">{SENT}</Alert>
        <Typography variant="body2" color="text.secondary" sx={{ mt: 2 }}>
          The link works once, for 1 hour. No mail? Check the address, or your spam folder, and ask again.
        </Typography>
        <SignInButton />{' '}
        <Button variant="outlined" sx={{ mt: 2 }} onClick={() => setSent(false)}>
          Ask again
        </Button>
      </PublicPage>
    );
  }
  return (
    <PublicPage title="Forgot your password?">
      <Typography variant="body2" color="text.secondary">
        Enter the email address of your account: a link to set a new password will be mailed to it.
      </Typography>
      {/* noValidate: the server judges the address, and its answer is shown under the field. */}
      <form onSubmit={submit} aria-label="Ask for a password reset link" noValidate>
        <EmailLinkFields idPrefix="forgot" fieldErrors={fieldErrors} autoFocus />
        {formError && <Alert severity="error">{formError}</Alert>}
        <Button type="submit" variant="contained" fullWidth disabled={busy} sx={{ mt: 2 }}>
          Send the link
        </Button>
      </form>
      <Link component={RouterLink} to="/login" variant="body2" sx={{ display: 'block', mt: 2 }}>
        Back to sign in
      </Link>
    </PublicPage>
  );
}
