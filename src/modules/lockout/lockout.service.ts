import { and, eq } from 'drizzle-orm';
import type { Db } from '../../platform/db/client.js';
import type { Actor } from '../../platform/http/auth.js';
import { recordAudit } from '../activity/audit.js';
import { invalidateUserState } from '../auth/auth.service.js';
import { organizationErrors } from '../organizations/organizations.errors.js';
import { holdActiveOrganization } from '../organizations/organizations.queries.js';
import { userErrors } from '../users/users.errors.js';
import { findUserById } from '../users/users.queries.js';
import { users } from '../users/users.table.js';
import { clearLockout } from './lockout.queries.js';

/**
 * An administrator's unlock: forgets the failed logins, lifts a lock from failed logins at once,
 * and turns an administrator-set `locked` status back into `active` (other statuses stay). A user
 * of a deactivated organization answers 409 organization_inactive and stays as they are.
 * `scopeOrganizationId` (when given) confines the look-up to that organization.
 */
export async function unlockAccount(
  db: Db,
  userId: string,
  scopeOrganizationId?: string,
  actor?: Actor,
): Promise<{ userId: string; status: string }> {
  const user = await findUserById(db, userId, scopeOrganizationId);
  if (!user) throw userErrors.notFound(userId);
  return db.transaction(async (tx) => {
    // Held to commit, as every other write to a user: an unlock must not turn a user of a deactivated
    // organization active, and a deactivation racing this one waits for it (and then ends its sessions).
    if (!(await holdActiveOrganization(tx, user.organizationId))) {
      throw organizationErrors.inactive(user.organizationCode);
    }
    await clearLockout(tx, user);
    const [row] = await tx
      .update(users)
      .set({ status: 'active' })
      .where(and(eq(users.id, user.id), eq(users.status, 'locked')))
      .returning({ status: users.status });
    if (row) await invalidateUserState(tx, user.id);
    await recordAudit(tx, {
      type: 'auth.unlocked',
      category: 'authentication',
      organizationId: user.organizationId,
      userId: user.id,
      actor,
      description: 'Account unlocked by an administrator',
      details: { status: { from: user.status, to: row?.status ?? user.status } },
      objectType: 'user',
      objectId: user.id,
    });
    return { userId: user.id, status: row?.status ?? user.status };
  });
}
