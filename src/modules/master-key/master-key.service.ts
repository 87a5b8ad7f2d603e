import { getTableName, type SQL, sql } from 'drizzle-orm';
import type { PgColumn, PgTable } from 'drizzle-orm/pg-core';
import { type Envelope, EnvelopeError } from '../../platform/crypto/envelope.js';
import { type Db, queryRows } from '../../platform/db/client.js';
import type { Actor } from '../../platform/http/auth.js';
import { recordAudit } from '../activity/audit.js';
import { codeVerifierContext, credentialsContext, oauth2TokenContext } from '../integrations/credentials.js';
import { integrationOAuth2States, integrationOAuth2Tokens, integrations } from '../integrations/integrations.table.js';
import { totpSealContext } from '../mfa/mfa.service.js';
import { mfaTotp } from '../mfa/mfa.table.js';
import { signingKeySealContext } from '../signing-keys/signing-keys.service.js';
import { signingKeys } from '../signing-keys/signing-keys.table.js';

/**
 * Every sealed column, with the context (AAD) its values were sealed with: re-sealing must use the
 * same one, or the value no longer opens where it is read. A new sealed column belongs here.
 */
interface SealedKind {
  /** The name in reports. */
  name: string;
  table: PgTable;
  /** The column that names a row: the context is built from it, and batches page on it. */
  id: PgColumn;
  columns: { column: PgColumn; context: (id: string) => string }[];
  /** Rows that may not be rewritten now (another writer relies on the sealed text being unchanged). */
  busy?: SQL;
}

const SEALED_KINDS: SealedKind[] = [
  {
    name: 'signing keys',
    table: signingKeys,
    id: signingKeys.kid,
    columns: [{ column: signingKeys.privateKeySealed, context: signingKeySealContext }],
  },
  {
    name: 'TOTP secrets',
    table: mfaTotp,
    id: mfaTotp.userId,
    columns: [{ column: mfaTotp.secretSealed, context: totpSealContext }],
  },
  {
    name: 'integration credentials',
    table: integrations,
    id: integrations.id,
    columns: [{ column: integrations.credentialsSealed, context: credentialsContext }],
  },
  {
    name: 'OAuth2 tokens',
    table: integrationOAuth2Tokens,
    id: integrationOAuth2Tokens.integrationId,
    columns: [
      { column: integrationOAuth2Tokens.accessTokenSealed, context: (id) => oauth2TokenContext(id, 'access') },
      { column: integrationOAuth2Tokens.refreshTokenSealed, context: (id) => oauth2TokenContext(id, 'refresh') },
    ],
    // A renewal in progress swaps the tokens only if the sealed access token is the one it read: a
    // re-seal under its feet would drop the new tokens after the refresh token was spent.
    busy: sql`${integrationOAuth2Tokens.renewalLeaseUntil} >= now()`,
  },
  {
    name: 'OAuth2 pending authorizations',
    table: integrationOAuth2States,
    id: integrationOAuth2States.stateHash,
    columns: [{ column: integrationOAuth2States.codeVerifierSealed, context: codeVerifierContext }],
  },
];

/** Unqualified, as SET and a SELECT list over one table want it. */
const name = (column: PgColumn) => sql.identifier(column.name);

/** Values of one kind counted by the master key that sealed them. */
export interface SealedCount {
  kind: string;
  byKey: { keyId: string; values: number }[];
}

/** Counts the sealed values of every kind per master key id; writes nothing. */
export async function countSealedSecrets(db: Db): Promise<SealedCount[]> {
  const counts: SealedCount[] = [];
  for (const kind of SEALED_KINDS) {
    const parts = kind.columns.map(
      ({ column }) =>
        sql`select split_part(${name(column)}, '.', 2) as key_id from ${kind.table} where ${name(column)} is not null`,
    );
    const rows = await queryRows<{ key_id: string; n: number | string }>(
      db,
      sql`select key_id, count(*) as n from (${sql.join(parts, sql` union all `)}) sealed group by key_id order by key_id`,
    );
    counts.push({ kind: kind.name, byKey: rows.map((r) => ({ keyId: r.key_id, values: Number(r.n) })) });
  }
  return counts;
}

/** What `resealSecrets` did to one kind of value. */
export interface ResealReport {
  kind: string;
  /** Values now sealed under the current master key. */
  resealed: number;
  /** Values rewritten by someone else between the read and the write (or in use): left to the next run. */
  changed: number;
  /** Values no configured master key opens. */
  unreadable: number;
}

export interface UnreadableValue {
  kind: string;
  table: string;
  id: string;
  column: string;
  reason: string;
}

/**
 * Re-seals every sealed value not under the current master key, in batches of `batchSize` rows,
 * each batch one transaction. A value is replaced only if it still holds the text read
 * (compare-and-swap), so running servers may keep writing; values already current are not read.
 * Safe to run again: a second run finds nothing to do. A value no key opens is reported through
 * `onUnreadable` and left as it is.
 */
export async function resealSecrets(
  db: Db,
  envelope: Envelope,
  options: { batchSize?: number; onUnreadable?: (value: UnreadableValue) => void } = {},
): Promise<ResealReport[]> {
  const batchSize = options.batchSize ?? 500;
  // Key ids are hex, so the prefix holds no LIKE wildcard.
  const current = `v1.${envelope.currentKeyId}.%`;
  const reports: ResealReport[] = [];
  for (const kind of SEALED_KINDS) {
    const report: ResealReport = { kind: kind.name, resealed: 0, changed: 0, unreadable: 0 };
    const table = getTableName(kind.table);
    const stale = sql.join(
      kind.columns.map(({ column }) => sql`(${name(column)} is not null and ${name(column)} not like ${current})`),
      sql` or `,
    );
    let after: string | undefined;
    for (;;) {
      const rows = await db.transaction(async (tx) => {
        const batch = await queryRows<Record<string, string | null> & { id: string }>(
          tx,
          sql`select ${name(kind.id)} as id, ${sql.join(
            kind.columns.map(({ column }) => name(column)),
            sql`, `,
          )}
              from ${kind.table}
              where (${stale}) ${after === undefined ? sql`` : sql`and ${name(kind.id)} > ${after}`}
              order by ${name(kind.id)} limit ${batchSize}`,
        );
        for (const row of batch) {
          const next = new Map<PgColumn, string | null>();
          let readable = true;
          for (const { column, context } of kind.columns) {
            const sealed = row[column.name] ?? null;
            if (sealed === null || !envelope.needsReseal(sealed)) {
              next.set(column, sealed);
              continue;
            }
            try {
              next.set(column, envelope.seal(envelope.open(sealed, context(row.id)), context(row.id)));
            } catch (err) {
              if (!(err instanceof EnvelopeError)) throw err;
              readable = false;
              report.unreadable += 1;
              options.onUnreadable?.({ kind: kind.name, table, id: row.id, column: column.name, reason: err.message });
            }
          }
          if (!readable) continue;
          const rewritten = kind.columns.filter(({ column }) => next.get(column) !== (row[column.name] ?? null));
          const updated = await queryRows(
            tx,
            sql`update ${kind.table}
                set ${sql.join(
                  rewritten.map(({ column }) => sql`${name(column)} = ${next.get(column)}`),
                  sql`, `,
                )}
                where ${name(kind.id)} = ${row.id}
                  and ${sql.join(
                    kind.columns.map(
                      ({ column }) => sql`${name(column)} is not distinct from ${row[column.name] ?? null}`,
                    ),
                    sql` and `,
                  )}
                  ${kind.busy ? sql`and not coalesce(${kind.busy}, false)` : sql``}
                returning 1 as one`,
          );
          if (updated.length > 0) report.resealed += rewritten.length;
          else report.changed += rewritten.length;
        }
        return batch;
      });
      const last = rows.at(-1);
      if (!last || rows.length < batchSize) break;
      after = last.id;
    }
    reports.push(report);
  }
  return reports;
}

/**
 * Records a reseal run that re-sealed values (`master_key.resealed`, with the counts per kind and
 * the id of the master key they are now under). Each batch committed on its own, so the event
 * follows the run; a run that re-sealed nothing changed nothing and records nothing.
 */
export async function recordReseal(db: Db, envelope: Envelope, reports: ResealReport[], actor: Actor): Promise<void> {
  const total = (field: 'resealed' | 'changed' | 'unreadable') => reports.reduce((n, r) => n + r[field], 0);
  const resealed = total('resealed');
  if (resealed === 0) return;
  await recordAudit(db, {
    type: 'master_key.resealed',
    category: 'system',
    organizationId: null,
    actor,
    description: `${resealed} secrets sealed again under master key ${envelope.currentKeyId}`,
    details: {
      key_id: envelope.currentKeyId,
      resealed,
      changed: total('changed'),
      unreadable: total('unreadable'),
      kinds: reports.map(({ kind, resealed, changed, unreadable }) => ({ kind, resealed, changed, unreadable })),
    },
    severity: 'warning',
  });
}
