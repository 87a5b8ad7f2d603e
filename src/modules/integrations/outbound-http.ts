import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { integrationErrors } from './integrations.errors.js';

/**
 * Calls from Gatehouse to integrations. A self-hosted installation legitimately talks to services
 * on its own network (an on-premises SMS gateway, a local mail relay), so private and loopback
 * addresses are allowed. What is refused: any scheme but http/https, credentials inside the URL,
 * and hosts resolving to link-local (169.254.0.0/16, fe80::/10: cloud metadata endpoints live
 * there), unspecified or multicast addresses. Redirects are never followed, so a service cannot
 * bounce a call to an address it could not name directly.
 */
const BLOCKED = new BlockList();
BLOCKED.addSubnet('169.254.0.0', 16, 'ipv4');
BLOCKED.addSubnet('0.0.0.0', 8, 'ipv4');
BLOCKED.addSubnet('224.0.0.0', 4, 'ipv4');
BLOCKED.addSubnet('fe80::', 10, 'ipv6');
BLOCKED.addSubnet('ff00::', 8, 'ipv6');
BLOCKED.addAddress('::', 'ipv6');

/** Checks a URL an integration is configured with; throws a 400 naming `field`. */
export function checkIntegrationUrl(raw: string, field: string): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw integrationErrors.invalidUrl(field, 'Not a valid absolute URL.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw integrationErrors.invalidUrl(field, 'Only http:// and https:// URLs are allowed.');
  }
  if (url.username || url.password) {
    throw integrationErrors.invalidUrl(field, 'Put credentials in `credentials`, not in the URL.');
  }
  if (url.hash) throw integrationErrors.invalidUrl(field, 'A URL fragment is not allowed.');
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (isIP(host) && isBlocked(host)) {
    throw integrationErrors.invalidUrl(field, 'Link-local, unspecified and multicast addresses are not allowed.');
  }
  return url.toString();
}

/** Joins the base URL and a path beginning with "/", keeping any path the base URL has. */
export function joinUrl(baseUrl: string, path: string): URL {
  const base = new URL(baseUrl);
  const basePath = base.pathname.endsWith('/') ? base.pathname.slice(0, -1) : base.pathname;
  const target = new URL(`${basePath}${path}`, base.origin);
  // A path like "//other.example/x" would be read as another host: the integration's credentials go
  // to the host its base URL names, or nowhere.
  if (target.origin !== base.origin)
    throw integrationErrors.invalidUrl('path', `"${path}" leaves the integration's host.`);
  return target;
}

function isBlocked(address: string): boolean {
  // An IPv4 address written as IPv4-mapped IPv6 is judged as IPv4.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address)?.[1];
  if (mapped) return BLOCKED.check(mapped, 'ipv4');
  const family = isIP(address);
  return family === 0 ? true : BLOCKED.check(address, family === 4 ? 'ipv4' : 'ipv6');
}

/** Refuses a host that resolves to a blocked address (checked before each call). */
export async function checkHostAllowed(url: URL): Promise<void> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const addresses = isIP(host) ? [{ address: host }] : await lookup(host, { all: true, verbatim: true });
  if (addresses.length === 0 || addresses.some((a) => isBlocked(a.address))) {
    throw integrationErrors.blockedAddress(host);
  }
}

export type OutboundFailure = 'timeout' | 'network' | 'blocked';

export type OutboundResult =
  | { ok: true; status: number; body: string; durationMs: number }
  | { ok: false; failure: OutboundFailure; message: string; durationMs: number };

/** Reads at most `maxBytes` of a response body; the rest is discarded, not buffered. */
async function readBounded(response: Response, maxBytes: number): Promise<string> {
  if (!response.body) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  while (size < maxBytes) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.byteLength;
  }
  await reader.cancel().catch(() => undefined);
  return Buffer.concat(chunks).subarray(0, maxBytes).toString('utf8');
}

/**
 * One HTTP call with a timeout, never following redirects. Failures to reach the service are
 * returned, not thrown, so callers can record them.
 */
export async function sendOutbound(
  url: URL,
  init: { method: string; headers: Record<string, string>; body?: string | undefined },
  options: { timeoutMs: number; maxBodyBytes: number },
): Promise<OutboundResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  try {
    await checkHostAllowed(url);
  } catch (err) {
    const message = err instanceof Error ? err.message : 'host refused';
    return { ok: false, failure: 'blocked', message, durationMs: elapsed() };
  }
  try {
    const response = await fetch(url, {
      method: init.method,
      headers: init.headers,
      body: init.body,
      redirect: 'manual',
      signal: AbortSignal.timeout(options.timeoutMs),
    });
    const body = await readBounded(response, options.maxBodyBytes);
    return { ok: true, status: response.status, body, durationMs: elapsed() };
  } catch (err) {
    const name = (err as { name?: string }).name;
    if (name === 'TimeoutError' || name === 'AbortError') {
      return {
        ok: false,
        failure: 'timeout',
        message: `No answer within ${options.timeoutMs} ms.`,
        durationMs: elapsed(),
      };
    }
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const message = cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : 'request failed');
    return { ok: false, failure: 'network', message: `Request failed: ${message}`, durationMs: elapsed() };
  }
}
