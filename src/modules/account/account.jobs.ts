import { registerJobHandler } from '../../platform/jobs/registry.js';
import {
  PASSWORD_RESET_JOB,
  sendPasswordResetMails,
  sendVerificationMails,
  VERIFICATION_RESEND_JOB,
} from './account.service.js';

registerJobHandler<{ email: string; organization: string | null }>(
  PASSWORD_RESET_JOB,
  (job, ctx) => sendPasswordResetMails(ctx.db, ctx.config, job.data),
  { retryLimit: 3 },
);

registerJobHandler<{ email: string; organization: string | null }>(
  VERIFICATION_RESEND_JOB,
  (job, ctx) => sendVerificationMails(ctx.db, ctx.config, job.data),
  { retryLimit: 3 },
);
