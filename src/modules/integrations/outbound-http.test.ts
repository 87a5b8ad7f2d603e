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

  const options = (resolve: ResolveHost) => ({
    timeoutMs: 2_000,
    maxBodyBytes: 1024,
    resolve,
    rules: { loopback: true },
  });
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

  it('refuses, when connecting, a name that resolves to loopback where loopback is not allowed', async () => {
    const noLoopback = { ...options(scriptedResolver([LOOPBACK])), rules: { loopback: false } };
    const result = await sendOutbound(new URL(`http://service.test:${port}/hello`), get, noLoopback);
    expect(result).toMatchObject({ ok: false, failure: 'blocked' });
    const mapped = {
      ...options(scriptedResolver([{ address: '::ffff:127.0.0.1', family: 6 }])),
      rules: { loopback: false },
    };
    expect(await sendOutbound(new URL(`http://service.test:${port}/hello`), get, mapped)).toMatchObject({
      ok: false,
      failure: 'blocked',
    });
    const literal = await sendOutbound(new URL(`http://127.0.0.1:${port}/hello`), get, noLoopback);
    expect(literal).toMatchObject({ ok: false, failure: 'blocked' });
    expect((await sendOutbound(new URL(`http://127.0.0.1:${port}/hello`), get, options(scriptedResolver()))).ok).toBe(
      true,
    );
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

  // IPv6 spellings that carry a refused IPv4 address (RFC 4291 §2.5.5, RFC 6052, RFC 6145, RFC 3056,
  // RFC 4380) reach it through a translator or tunnel; and cloud metadata services' own IPv6 addresses.
  const EMBEDDED = [
    '64:ff9b::a9fe:a9fe', // NAT64, well-known prefix
    '64:ff9b::169.254.169.254',
    '64:ff9b:1:a9fe:a9:fe00::', // NAT64, local-use prefix /48 (RFC 8215)
    '64:ff9b:1::a9fe:a9fe', // …of length /96
    '::a9fe:a9fe', // IPv4-compatible
    '::ffff:0:a9fe:a9fe', // IPv4-translated
    '::ffff:a9fe:a9fe', // IPv4-mapped, in hex
    '2002:a9fe:a9fe::', // 6to4
    '2001:0:4136:e378:8000:63bf:5601:5601', // Teredo, client 169.254.169.254 (obfuscated)
    '::ffff:0:0:1', // 0.0.0.1 translated
    '64:ff9b::e000:1', // 224.0.0.1 through NAT64
    'fd00:ec2::254', // AWS instance metadata
    'fd20:ce::254', // Google Cloud metadata
    '::ffff:6464:64c8', // Alibaba Cloud metadata (100.100.100.200), IPv4-mapped
    '64:ff9b::100.100.100.200', // …through NAT64
    '2001:0:4136:e378:8000:63bf:9b9b:9b37', // …as a Teredo client
    '::ffff:168.63.129.16', // Azure wire server, IPv4-mapped
    '2002:a83f:8110::', // …through 6to4
  ];

  it('refuses, when connecting, a name that resolves to the Alibaba Cloud or Azure metadata address', async () => {
    for (const address of ['100.100.100.200', '168.63.129.16']) {
      const resolve = scriptedResolver([{ address, family: 4 }]);
      const result = await sendOutbound(new URL(`http://cloud.test:${port}/`), get, options(resolve));
      expect(result, address).toMatchObject({ ok: false, failure: 'blocked' });
      expect(resolve.lookups).toEqual(['cloud.test']);
    }
  });

  it('refuses those addresses in any IPv4 spelling without a look-up', async () => {
    const resolve = scriptedResolver([LOOPBACK]);
    for (const host of [
      '100.100.100.200',
      '0x646464c8',
      '0144.0144.0144.0310',
      '168.63.129.16',
      '2822734096',
      '0250.077.0201.020',
    ]) {
      const result = await sendOutbound(new URL(`http://${host}/`), get, options(resolve));
      expect(result, host).toMatchObject({ ok: false, failure: 'blocked' });
    }
    expect(resolve.lookups).toEqual([]);
  });

  it('refuses, when connecting, a name that resolves to an IPv6 spelling of a refused address', async () => {
    for (const address of EMBEDDED) {
      const resolve = scriptedResolver([{ address, family: 6 }]);
      const result = await sendOutbound(new URL(`http://embedded.test:${port}/`), get, options(resolve));
      expect(result, address).toMatchObject({ ok: false, failure: 'blocked' });
      expect(resolve.lookups).toEqual(['embedded.test']);
    }
  });

  it('refuses such an address literal without a look-up', async () => {
    const resolve = scriptedResolver([LOOPBACK]);
    for (const address of EMBEDDED) {
      const result = await sendOutbound(new URL(`http://[${address}]/`), get, options(resolve));
      expect(result, address).toMatchObject({ ok: false, failure: 'blocked' });
    }
    expect(resolve.lookups).toEqual([]);
  });

  it('still connects where an IPv6 spelling carries an allowed address, and to loopback', async () => {
    // A private address through NAT64 is as allowed as the address itself; only the answer differs here.
    for (const address of ['::1', '::ffff:127.0.0.1']) {
      const resolve = scriptedResolver([{ address, family: 6 }]);
      const result = await sendOutbound(new URL(`http://allowed.test:${port}/`), get, options(resolve));
      expect(result, address).not.toMatchObject({ failure: 'blocked' });
    }
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
      rules: { loopback: true },
    });
    expect(result).toMatchObject({ ok: false, failure: 'timeout', message: 'No answer within 300 ms.' });
  });
});
