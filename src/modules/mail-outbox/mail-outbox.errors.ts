import { AppError } from '../../platform/http/errors.js';

export const mailOutboxErrors = {
  notFound: (id: string) => new AppError(404, 'mail_not_found', `Mail ${id} was not found in the outbox.`),
};
