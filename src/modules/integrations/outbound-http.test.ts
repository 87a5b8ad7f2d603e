import type { LookupAddress } from 'node:dns';
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { joinUrl, type ResolveHost, sendOutbound } from './outbound-http.js';

describe('joinUrl', () => {
  it('joins below the base URL, keeping its path', () => {
    expect(joinUrl('https://api.example.com/v1/', '/users/bulk').toString()).toBe(
      'https://api.example.com/v1/users/bulk',
    );
    expect(joinUrl('https://api.example.com', '/status').toString()).toBe('https://api.example.com/status');
  });

  it('refuses a path that would leave the base URL’s host', () => {
    expect(() => joinUrl('https://api.example.com', '//elsewhere.example/x')).toThrowError(
      expect.objectContaining({ status: 400, errors: [expect.objectContaining({ field: 'path' })] }),
    );
  });
});

const LOOPBACK: LookupAddress = { address: '127.0.0.1', family: 4 };
const METADATA: LookupAddress = { address: '169.254.169.254', family: 4 };

/** A resolver standing in for DNS: each look-up of a name takes the next answer, the last one repeating. */
function scriptedResolver(...answers: LookupAddress[][]): ResolveHost & { lookups: string[] } {
  const lookups: string[] = [];
  return Object.assign(
    async (hostname: string) => {
      lookups.push(hostname);
      return answers[Math.min(lookups.length, answers.length) - 1] ?? [];
    },
    { lookups },
  );
}

describe('sendOutbound', () => {
  const seen: { url: string; headers: IncomingHttpHeaders }[] = [];
  let server: Server;
  let port: number;

  beforeAll(async () => {
    server = createServer((req, res) => {
      seen.push({ url: req.url ?? '', headers: req.headers });
      if (req.url === '/large') {
        res.end('x'.repeat(200_000));
        return;
      }
      if (req.url === '/stalls') {
        // The head and a first part of the body, then nothing: the timeout covers the body too.
        res.writeHead(200).write('partial');
        return;
      }
      res.writeHead(200).end('ok');
    });
    port = await new Promise<number>((resolve) =>
      server.listen(0, '127.0.0.1', () => resolve((server.address() as AddressInfo).port)),
    );
  });
  afterAll(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );

  const options = (resolve: ResolveHost) => ({ timeoutMs: 2_000, maxBodyBytes: 1024, resolve });
  const get = { method: 'GET', headers: {} };

  it('connects to the address the name resolves to, sending the name as the Host', async () => {
    const resolve = scriptedResolver([LOOPBACK]);
    const result = await sendOutbound(new URL(`http://service.test:${port}/hello`), get, options(resolve));
    expect(result).toMatchObject({ ok: true, status: 200, body: 'ok' });
    expect(seen.at(-1)).toMatchObject({ url: '/hello', headers: { host: `service.test:${port}` } });
    expect(resolve.lookups).toEqual(['service.test']);
  });

  it('refuses, when connecting, a name that resolves to a link-local address', async () => {
    const resolve = scriptedResolver([METADATA]);
    const result = await sendOutbound(new URL(`http://metadata.test:${port}/`), get, options(resolve));
    expect(result).toMatchObject({ ok: false, failure: 'blocked' });
    expect(result.ok || result.message).toContain('metadata.test');
    expect(resolve.lookups).toEqual(['metadata.test']);
  });

  it('refuses a name with a blocked address among allowed ones, without connecting', async () => {
    const before = seen.length;
    const resolve = scriptedResolver([LOOPBACK, METADATA]);
    const result = await sendOutbound(new URL(`http://mixed.test:${port}/`), get, options(resolve));
    expect(result).toMatchObject({ ok: false, failure: 'blocked' });
    expect(seen.length).toBe(before);
  });

  it('judges the answer each connection uses: a name rebound to a blocked address is refused', async () => {
    // The first answer is allowed and connected to; the name is then rebound, as an attacker's DNS
    // server would between a check and the connection, and the next call is refused.
    const resolve = scriptedResolver([LOOPBACK], [METADATA]);
    const before = seen.length;
    const first = await sendOutbound(new URL(`http://rebind.test:${port}/one`), get, options(resolve));
    expect(first).toMatchObject({ ok: true, status: 200 });
    const second = await sendOutbound(new URL(`http://rebind.test:${port}/two`), get, options(resolve));
    expect(second).toMatchObject({ ok: false, failure: 'blocked' });
    expect(seen.slice(before).map((s) => s.url)).toEqual(['/one']);
  });

  it('refuses a blocked address literal without a look-up', async () => {
    const resolve = scriptedResolver([LOOPBACK]);
    for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://[::ffff:169.254.169.254]/']) {
      expect(await sendOutbound(new URL(url), get, options(resolve))).toMatchObject({ ok: false, failure: 'blocked' });
    }
    expect(resolve.lookups).toEqual([]);
  });

  it('reports a name that does not resolve as a network failure', async () => {
    const result = await sendOutbound(new URL(`http://nowhere.test:${port}/`), get, options(scriptedResolver([])));
    expect(result).toMatchObject({ ok: false, failure: 'network' });
    expect(result.ok || result.message).toContain('ENOTFOUND');
  });

  it('reads at most maxBodyBytes of an answer', async () => {
    const result = await sendOutbound(new URL(`http://127.0.0.1:${port}/large`), get, options(scriptedResolver()));
    expect(result).toMatchObject({ ok: true, status: 200 });
    expect(result.ok && result.body.length).toBe(1024);
  });

  it('times out a body that stops arriving', async () => {
    const result = await sendOutbound(new URL(`http://127.0.0.1:${port}/stalls`), get, {
      timeoutMs: 300,
      maxBodyBytes: 1024,
    });
    expect(result).toMatchObject({ ok: false, failure: 'timeout', message: 'No answer within 300 ms.' });
  });
});
