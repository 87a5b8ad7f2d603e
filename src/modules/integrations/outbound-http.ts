import type { LookupAddress } from 'node:dns';
import { lookup } from 'node:dns/promises';
import { request as httpRequest, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { AppError } from '../../platform/http/errors.js';
import { integrationErrors } from './integrations.errors.js';
import { type AddressRules, isRefusedAddress } from './refused-addresses.js';

/*
 * Calls from Gatehouse to integrations. A self-hosted installation legitimately talks to services
 * on its own network (an on-premises SMS gateway, a local mail relay), so private and loopback
 * addresses are allowed (loopback unless INTEGRATIONS_ALLOW_LOOPBACK=off). What is refused: any scheme but http/https, credentials inside the URL,
 * and hosts resolving to link-local (169.254.0.0/16, fe80::/10: cloud metadata endpoints live
 * there), unspecified or multicast addresses, or the cloud metadata addresses outside link-local,
 * also spelt as IPv6 addresses that carry them (see refused-addresses.ts), judged on the address each
 * connection is made to.
 * Redirects are never followed, so a service cannot bounce a call to an address it could not name
 * directly.
 */

/** An absolute http(s) URL without a fragment, or a 400 naming `field`. */
export function webUrlOf(raw: string, field: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw integrationErrors.invalidUrl(field, 'Not a valid absolute URL.');
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw integrationErrors.invalidUrl(field, 'Only http:// and https:// URLs are allowed.');
  }
  // `hash` is empty for a bare "#", which the URL still keeps.
  if (url.hash || url.href.includes('#')) throw integrationErrors.invalidUrl(field, 'A URL fragment is not allowed.');
  return url;
}

/**
 * Checks a URL an integration is configured with; throws a 400 naming `field`. `query: false`
 * refuses a query string, for URLs that calls are built on or that are compared exactly.
 */
export function checkIntegrationUrl(
  raw: string,
  field: string,
  rules: AddressRules,
  options: { query?: boolean } = {},
): string {
  const url = webUrlOf(raw, field);
  if (url.username || url.password) {
    throw integrationErrors.invalidUrl(field, 'Put credentials in `credentials`, not in the URL.');
  }
  // `search` is empty for a bare "?", which the URL still keeps.
  if (options.query === false && (url.search || url.href.includes('?'))) {
    throw integrationErrors.invalidUrl(field, 'must not hold a query string; give credentials in `credentials`.');
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if ((isIP(host) && isRefusedAddress(host, rules)) || (!rules.loopback && isLoopbackName(host))) {
    throw integrationErrors.invalidUrl(
      field,
      rules.loopback
        ? 'Link-local, unspecified, multicast and cloud metadata addresses are not allowed, nor IPv6 addresses that carry them.'
        : 'Loopback, link-local, unspecified, multicast and cloud metadata addresses are not allowed, nor IPv6 addresses that carry them.',
    );
  }
  return url.toString();
}

/**
 * RFC 6761 §6.3: localhost names are loopback whatever DNS says; other names are judged on connect.
 * A name with its trailing dot is the same absolute name (RFC 1034 §3.1), and `localhost.localdomain`
 * is how many hosts files name loopback. The URL parser has already lowered the case.
 */
function isLoopbackName(host: string): boolean {
  const name = host.endsWith('.') ? host.slice(0, -1) : host;
  return name === 'localhost' || name.endsWith('.localhost') || name === 'localhost.localdomain';
}

/**
 * What a path below an integration's base URL may be: "/" not followed by another "/" (that would
 * name another host), and no backslash (the URL parser reads it as a slash, so "/\host" is "//host")
 * or control character (the parser drops tabs and line breaks, which could join up "/" and "/") anywhere.
 * The schema of `health_check_path` and `joinUrl` both use it, so what is stored can be called.
 */
export const PATH_PATTERN = '^/(?!/)[^\\\\\\u0000-\\u001f\\u007f]*$';
export const PATH_RULE = 'Must begin with a single "/", without backslashes or control characters.';
const PATH = new RegExp(PATH_PATTERN, 'u');

/**
 * Joins the base URL and a path beginning with "/", keeping any path the base URL has; a path
 * `PATH_PATTERN` refuses, or one that climbs above the base URL's path, is a 400 naming `field`.
 */
export function joinUrl(baseUrl: string, path: string, field = 'path'): URL {
  if (!PATH.test(path)) {
    throw integrationErrors.invalidUrl(field, PATH_RULE);
  }
  const base = new URL(baseUrl);
  const basePath = base.pathname.endsWith('/') ? base.pathname.slice(0, -1) : base.pathname;
  const target = new URL(`${basePath}${path}`, base.origin);
  // A path like "//other.example/x" would be read as another host: the integration's credentials go
  // to the host its base URL names, or nowhere.
  if (target.origin !== base.origin)
    throw integrationErrors.invalidUrl(field, `"${path}" leaves the integration's host.`);
  // Dot segments ("..", also written "%2e%2e") are resolved by the parser: what they reach must still
  // lie below the base URL's path, which may be all an integration's owner meant to grant.
  if (basePath !== '' && target.pathname !== basePath && !target.pathname.startsWith(`${basePath}/`))
    throw integrationErrors.invalidUrl(field, `"${path}" leaves the base URL's path (${basePath}).`);
  return target;
}

/** Resolves a host name to every address it has; tests pass their own to map names without DNS. */
export type ResolveHost = (hostname: string) => Promise<LookupAddress[]>;

const resolveWithSystem: ResolveHost = (hostname) => lookup(hostname, { all: true, verbatim: true });

/**
 * The `lookup` of each outbound connection. The address rules are applied here, to the answer the
 * socket then connects to, rather than in a look-up of its own before the call: a name whose DNS
 * answer changes between a check and the connection (DNS rebinding) cannot slip past. A name with
 * any blocked address is refused whole.
 */
function guardedLookup(resolve: ResolveHost, rules: AddressRules): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname).then(
      (addresses) => {
        const wanted = options.family === 4 || options.family === 6 ? options.family : 0;
        const usable = addresses.filter((a) => wanted === 0 || a.family === wanted);
        if (addresses.some((a) => isRefusedAddress(a.address, rules))) {
          callback(integrationErrors.blockedAddress(hostname), '', 0);
        } else if (usable.length === 0) {
          callback(Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' }), '', 0);
        } else if (options.all) {
          callback(null, usable);
        } else {
          const [first] = usable as [LookupAddress];
          callback(null, first.address, first.family);
        }
      },
      (err: NodeJS.ErrnoException) => callback(err, '', 0),
    );
  };
}

interface GuardedRequest {
  method: string;
  headers: Record<string, string>;
  body?: string | undefined;
}

interface GuardedOptions {
  timeoutMs: number;
  /** The installation's address rules (INTEGRATIONS_ALLOW_LOOPBACK). */
  rules: AddressRules;
  maxBodyBytes: number;
  /** Only tests pass one; calls resolve through the system resolver. */
  resolve?: ResolveHost | undefined;
}

interface GuardedResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** Reads at most `maxBytes` of a response body; leaving the loop early destroys the stream, so the rest is never buffered. */
async function readBounded(response: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response as AsyncIterable<Buffer>) {
    chunks.push(chunk);
    size += chunk.byteLength;
    if (size >= maxBytes) break;
  }
  return Buffer.concat(chunks).subarray(0, maxBytes);
}

/**
 * One HTTP exchange under the address rules: the host is checked on the address the socket
 * connects to, redirects are answers like any other (node:http never follows them), the whole
 * exchange including the body is bounded by `timeoutMs`, and at most `maxBodyBytes` are read.
 * Throws the `integration_address_blocked` AppError for a refused host, a TimeoutError when time
 * runs out, and the socket's error otherwise.
 */
export async function requestGuarded(
  url: URL,
  init: GuardedRequest,
  options: GuardedOptions,
): Promise<GuardedResponse> {
  const host = url.hostname.replace(/^\[|\]$/g, '');
  // An address literal is connected to without a look-up, so it is judged here.
  if (isIP(host) && isRefusedAddress(host, options.rules)) throw integrationErrors.blockedAddress(host);
  const signal = AbortSignal.timeout(options.timeoutMs);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  try {
    return await new Promise<GuardedResponse>((resolve, reject) => {
      const request = send(
        url,
        {
          method: init.method,
          headers: { 'user-agent': 'Gatehouse', ...init.headers },
          // A fresh connection per call: a pooled socket would skip the look-up, and so the check.
          agent: false,
          lookup: guardedLookup(options.resolve ?? resolveWithSystem, options.rules),
          signal,
        },
        (response) => {
          readBounded(response, options.maxBodyBytes).then(
            (body) => resolve({ status: response.statusCode ?? 0, headers: response.headers, body }),
            reject,
          );
        },
      );
      request.on('error', reject);
      request.end(init.body);
    });
  } catch (err) {
    // Once the time is up, whatever the socket reports (an abort, a reset mid-body) is the timeout.
    if (signal.aborted) throw signal.reason;
    throw err;
  }
}

export type OutboundFailure = 'timeout' | 'network' | 'blocked';

export type OutboundResult =
  | { ok: true; status: number; body: string; durationMs: number }
  | { ok: false; failure: OutboundFailure; message: string; durationMs: number };

/**
 * One HTTP call with a timeout, never following redirects. Failures to reach the service are
 * returned, not thrown, so callers can record them.
 */
export async function sendOutbound(url: URL, init: GuardedRequest, options: GuardedOptions): Promise<OutboundResult> {
  const started = performance.now();
  const elapsed = () => Math.round(performance.now() - started);
  try {
    const response = await requestGuarded(url, init, options);
    return { ok: true, status: response.status, body: response.body.toString('utf8'), durationMs: elapsed() };
  } catch (err) {
    if (err instanceof AppError && err.code === 'integration_address_blocked') {
      return { ok: false, failure: 'blocked', message: err.message, durationMs: elapsed() };
    }
    const name = (err as { name?: string }).name;
    if (name === 'TimeoutError' || name === 'AbortError') {
      return {
        ok: false,
        failure: 'timeout',
        message: `No answer within ${options.timeoutMs} ms.`,
        durationMs: elapsed(),
      };
    }
    const { code, message } = err as { code?: string; message?: string };
    return {
      ok: false,
      failure: 'network',
      message: `Request failed: ${code ?? message ?? 'request failed'}`,
      durationMs: elapsed(),
    };
  }
}
