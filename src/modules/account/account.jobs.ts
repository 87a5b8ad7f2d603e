import { registerJobHandler } from '../../platform/jobs/registry.js';
import { PASSWORD_RESET_JOB, sendPasswordResetMails } from './account.service.js';

registerJobHandler<{ email: string; organization: string | null }>(
  PASSWORD_RESET_JOB,
  (job, ctx) => sendPasswordResetMails(ctx.db, ctx.config, job.data),
  { retryLimit: 3 },
);
