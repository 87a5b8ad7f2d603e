import type { FastifyBaseLogger } from 'fastify';
import { unreachableDatabaseReason } from './db/client.js';

/** What a background loop (a listener, a writer, a reload) reports about its attempts. */
export interface OutageLog {
  /** An attempt failed; `reason` says, in a few words, that the database cannot be reached. */
  failed(err: unknown, reason?: string): void;
  succeeded(): void;
}

/**
 * Logs a background loop's outage once, not once per attempt: the first failure because the
 * database cannot be reached is one warning without a stack (the reason in a few words), the first
 * success after it one info line. Any other error is handed to `otherError` each time, since it
 * may need someone's attention.
 */
export function createOutageLog(
  log: Pick<FastifyBaseLogger, 'warn' | 'info'>,
  loop: string,
  otherError: (err: unknown) => void,
): OutageLog {
  let failing = false;
  return {
    failed(err, reason = unreachableDatabaseReason(err)) {
      if (reason === undefined) {
        otherError(err);
        return;
      }
      if (failing) return;
      failing = true;
      log.warn({ reason }, `${loop}: the database cannot be reached`);
    },
    succeeded() {
      if (!failing) return;
      failing = false;
      log.info(`${loop}: the database is reachable again`);
    },
  };
}
