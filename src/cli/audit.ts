import type { Command } from 'commander';
import { sealAuditEvents, verifyAuditChain } from '../modules/activity/audit-seal.js';
import { withDatabase } from './context.js';

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
    .action(async () => {
      const result = await withDatabase((database) => verifyAuditChain(database.db));
      if (result.ok) {
        const anchor =
          result.anchor && result.anchor.prevHash !== '0'.repeat(64)
            ? ` (from seal ${result.anchor.sealId}; earlier seals expired with their partitions)`
            : '';
        console.log(`audit trail intact: ${result.seals} seal(s), ${result.rows} event(s)${anchor}`);
        return;
      }
      const p = result.problem;
      if (!p) return;
      console.error(
        `gatehouse: audit trail broken in seal ${p.sealId} (transactions ${p.fromXid}..${p.toXid - 1}, ` +
          `events ${p.firstTimestamp ?? '?'} to ${p.lastTimestamp ?? '?'}): rows ${p.kind} after sealing — ${p.detail}`,
      );
      process.exitCode = 1;
    });
}
