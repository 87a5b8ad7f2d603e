import type { Db } from '../../platform/db/client.js';
import type { UserActor } from '../../platform/http/auth.js';
import type { OutboxMail } from '../../platform/mail/outbox.table.js';
import { recordAudit } from '../activity/audit.js';
import { findOutboxMail } from './mail-outbox.queries.js';

/**
 * Reads one outbox mail with its bodies and records who read it, in one transaction: the bodies carry
 * reset and invitation links (bearer secrets of the recipient), so a body never leaves without its
 * audit row.
 */
export async function readOutboxMail(db: Db, actor: UserActor, id: string): Promise<OutboxMail | undefined> {
  return db.transaction(async (tx) => {
    const mail = await findOutboxMail(tx, id);
    if (!mail) return undefined;
    await recordAudit(tx, {
      type: 'mail.viewed',
      category: 'system',
      // Outbox rows belong to no organization: the event is the installation's, like the mail.
      organizationId: null,
      actor,
      description: `Outbox mail to ${mail.toAddress} read`,
      details: { to: mail.toAddress, subject: mail.subject, status: mail.status },
      severity: 'warning',
      objectType: 'mail',
      objectId: mail.id,
      tags: ['mail'],
    });
    return mail;
  });
}
