import type { Command } from 'commander';
import { sealAuditEvents, verifyAuditChain } from '../modules/activity/audit-seal.js';
import { fail, withDatabase } from './context.js';

/** `gatehouse audit seal|verify`: the tamper evidence of audit events, from the command line. */
export function registerAuditCommands(program: Command): void {
  const audit = program.command('audit').description('Seal and verify the audit trail');

  audit
    .command('seal')
    .description('Seal the audit events committed since the last seal (the scheduled job does this every 5 minutes)')
    .action(async () => {
      const seal = await withDatabase((database) => sealAuditEvents(database.db));
      console.log(seal ? `seal ${seal.id}: ${seal.rowCount} event(s), hash ${seal.hash}` : 'nothing new to seal');
    });

  audit
    .command('verify')
    .description('Recompute the seal chain; names the first range where a sealed row was edited, inserted or deleted')
    .option(
      '--expect <id:hash>',
      'a seal printed by an earlier verify, kept elsewhere: fails if it is no longer in the chain (seals removed from the end)',
    )
    .action(async (options: { expect?: string }) => {
      const expect = options.expect === undefined ? undefined : parseExpectedSeal(options.expect);
      const result = await withDatabase((database, config) =>
        verifyAuditChain(database.db, { expect, retentionMonths: config.activityRetentionMonths }),
      );
      if (result.ok) {
        const expired = result.expired > 0 ? ` (${result.expired} seal(s) of expired partitions: links checked)` : '';
        console.log(`audit trail intact: ${result.seals} seal(s), ${result.rows} event(s)${expired}`);
        if (result.latest) console.log(`latest seal: ${result.latest.sealId}:${result.latest.hash}`);
        return;
      }
      const p = result.problem;
      if (!p) return;
      const range =
        p.toXid > 0
          ? ` (transactions ${p.fromXid}..${p.toXid - 1}, events ${p.firstTimestamp ?? '?'} to ${p.lastTimestamp ?? '?'})`
          : '';
      const what =
        p.kind === 'chain_broken'
          ? 'chain broken'
          : p.kind === 'seal_altered'
            ? 'seal altered'
            : `rows ${p.kind} after sealing`;
      console.error(`gatehouse: audit trail broken in seal ${p.sealId}${range}: ${what} — ${p.detail}`);
      process.exitCode = 1;
    });
}

/** `--expect 42:3fa9…`: a seal id and its 64-hex-digit hash. */
function parseExpectedSeal(value: string): { sealId: number; hash: string } {
  const match = /^(\d{1,15}):([0-9a-f]{64})$/.exec(value.trim());
  if (!match) fail('audit verify: --expect takes <seal id>:<hash>, as "latest seal" prints it.', 2);
  return { sealId: Number(match[1]), hash: match[2] as string };
}
