import autocannon from 'autocannon';

export interface LoadResult {
  /** Successful (2xx) responses per second over the whole run. */
  okPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  requests: number;
  non2xx: number;
  errors: number;
  seconds: number;
  /** e.g. { "200": 51234, "401": 3 } */
  statuses: Record<string, number>;
  /** With `exactLatency`: each response's own latency in milliseconds, fractional (autocannon's histogram keeps whole ones). */
  latenciesMs?: number[];
}

/** The q-quantile (0 < q ≤ 1) of latencies, nearest rank; NaN for none. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
}

/** One bounded autocannon run on loopback: `duration` seconds, `connections` keep-alive connections. */
export async function runLoad(options: {
  url: string;
  connections: number;
  duration: number;
  requests: autocannon.Request[];
  /** Requests per second across all connections (open model); unset = as fast as answers come. */
  overallRate?: number;
  /** Keep every response's latency (`latenciesMs`). */
  exactLatency?: boolean;
}): Promise<LoadResult> {
  const instance = autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.duration,
    pipelining: 1,
    timeout: 10,
    requests: options.requests,
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
  });
  const latencies: number[] = [];
  if (options.exactLatency) {
    instance.on('response', (_client: unknown, _status: number, _bytes: number, ms: number) => {
      latencies.push(ms);
    });
  }
  const result = await instance;
  const statuses: Record<string, number> = {};
  for (const [code, { count }] of Object.entries(result.statusCodeStats ?? {})) statuses[code] = Number(count);
  const requests = Object.values(statuses).reduce((a, b) => a + b, 0);
  return {
    okPerSecond: result['2xx'] / result.duration,
    p50Ms: result.latency.p50,
    p99Ms: result.latency.p99,
    requests,
    non2xx: result.non2xx,
    errors: result.errors,
    seconds: result.duration,
    statuses,
    ...(options.exactLatency ? { latenciesMs: latencies } : {}),
  };
}
