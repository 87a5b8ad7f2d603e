import { Agent, request } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

export interface PacedResult {
  /** Each request's latency in fractional milliseconds, from the moment it was due to its last byte. */
  latenciesMs: number[];
  /**
   * How late each request left the generator, in fractional milliseconds: the generator's own share of
   * `latenciesMs` (its timer firing late, or its thread not scheduled), which is not the server's.
   */
  sendLagsMs: number[];
  sent: number;
  ok: number;
  /** Answers other than 2xx and failed requests. */
  failed: number;
}

/**
 * An open-model load at a fixed rate: request i is due at start + i / rate, whether or not earlier
 * ones have been answered, and its latency counts from that moment (so time spent waiting for a free
 * connection, or for a generator that fell behind, is in it rather than hidden). Requests due by a
 * timer tick are sent together; ticks are about a millisecond apart, so no burst is larger than a
 * millisecond's share. autocannon's `overallRate` sends each connection's share of a second back to
 * back instead, which puts bursts, not the server, in the tail.
 */
export async function runPaced(options: {
  url: string;
  path: string;
  headers: Record<string, string>;
  /** Requests per second. */
  rate: number;
  duration: number;
  connections: number;
}): Promise<PacedResult> {
  const target = new URL(options.url);
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections });
  const latenciesMs: number[] = [];
  const sendLagsMs: number[] = [];
  let ok = 0;
  let failed = 0;
  const pending = new Set<Promise<void>>();
  const send = (due: number) => {
    sendLagsMs.push(performance.now() - due);
    const done = new Promise<void>((resolve) => {
      const req = request(
        {
          host: target.hostname,
          port: target.port,
          path: options.path,
          method: 'GET',
          headers: options.headers,
          agent,
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            latenciesMs.push(performance.now() - due);
            if (res.statusCode !== undefined && res.statusCode >= 200 && res.statusCode < 300) ok++;
            else failed++;
            resolve();
          });
        },
      );
      req.on('error', () => {
        failed++;
        resolve();
      });
      req.end();
    });
    pending.add(done);
    void done.then(() => pending.delete(done));
  };
  const start = performance.now();
  const total = Math.floor(options.rate * options.duration);
  let next = 0;
  while (next < total) {
    const now = performance.now();
    while (next < total && start + (next * 1000) / options.rate <= now) {
      send(start + (next * 1000) / options.rate);
      next++;
    }
    await sleep(1);
  }
  await Promise.all(pending);
  agent.destroy();
  return { latenciesMs, sendLagsMs, sent: total, ok, failed };
}
