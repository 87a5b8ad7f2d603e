/**
 * Graceful stop on SIGTERM/SIGINT: `stop` finishes in-flight work and closes resources, then the
 * process exits 0. A second signal gets Node's default (immediate exit), and a stop stuck past
 * 20 s exits 1, so an orchestrator never waits forever.
 */
export function stopOnSignals(
  log: { info(details: object, message: string): void },
  what: string,
  stop: () => Promise<void>,
): void {
  const shutdown = (signal: string) => {
    log.info({ signal }, `${what} shutting down`);
    setTimeout(() => process.exit(1), 20_000).unref();
    stop()
      .then(() => process.exit(0))
      .catch((err) => {
        console.error(err);
        process.exit(1);
      });
  };
  process.once('SIGTERM', () => shutdown('SIGTERM'));
  process.once('SIGINT', () => shutdown('SIGINT'));
}
