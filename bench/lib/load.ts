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
}

/** One bounded autocannon run on loopback: `duration` seconds, `connections` keep-alive connections. */
export async function runLoad(options: {
  url: string;
  connections: number;
  duration: number;
  requests: autocannon.Request[];
  /** Requests per second across all connections (open model); unset = as fast as answers come. */
  overallRate?: number;
}): Promise<LoadResult> {
  const result = await autocannon({
    url: options.url,
    connections: options.connections,
    duration: options.duration,
    pipelining: 1,
    timeout: 10,
    requests: options.requests,
    ...(options.overallRate ? { overallRate: options.overallRate } : {}),
  });
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
  };
}
