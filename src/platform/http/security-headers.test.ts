import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../../test/test-app.js';

const CONSOLE = 'https://console.example.com';

describe('security headers of answers made before routing', () => {
  let t: TestApp;
  let base: URL;
  beforeAll(async () => {
    t = await startTestApp({ CORS_ORIGINS: CONSOLE });
    base = new URL(await t.app.listen({ host: '127.0.0.1', port: 0 }));
  });
  afterAll(() => t.close());

  /** The status and headers of the answer to `request` sent as it is on a new connection. */
  const exchange = (request: string) =>
    new Promise<{ status: number; headers: Map<string, string> }>((resolve, reject) => {
      const socket = connect(Number(base.port), base.hostname, () => socket.write(request));
      let data = '';
      socket.on('data', (chunk) => {
        data += chunk;
      });
      socket.on('end', () => {
        const [statusLine, ...lines] = (data.split('\r\n\r\n')[0] ?? '').split('\r\n');
        const headers = new Map<string, string>();
        for (const line of lines) {
          const colon = line.indexOf(':');
          headers.set(line.slice(0, colon).toLowerCase(), line.slice(colon + 1).trim());
        }
        resolve({ status: Number(statusLine?.split(' ')[1]), headers });
      });
      socket.on('error', reject);
    });

  const get = (target: string, extra = '') =>
    exchange(`GET ${target} HTTP/1.1\r\nHost: x\r\nOrigin: ${CONSOLE}\r\n${extra}Connection: close\r\n\r\n`);

  /** What a 404 carries besides what describes its own body and connection. */
  async function headersOfA404(): Promise<Map<string, string>> {
    const notFound = await get('/api/v1/nothing-here/');
    expect(notFound.status).toBe(404);
    for (const name of ['date', 'content-type', 'content-length', 'connection', 'keep-alive']) {
      notFound.headers.delete(name);
    }
    expect(notFound.headers.get('x-content-type-options')).toBe('nosniff');
    expect(notFound.headers.get('access-control-allow-origin')).toBe(CONSOLE);
    return notFound.headers;
  }

  it('carries on 400 bad_url and an undecodable query the headers a 404 carries', async () => {
    const expected = await headersOfA404();
    for (const target of ['/api/v1/users/%FF/', '/api/v1/users/?search=%FF', '/api/v1/users/%', '/scim/v2/Users/%FF']) {
      const refused = await get(target);
      expect(refused.status, target).toBe(400);
      for (const [name, value] of expected) expect(refused.headers.get(name), `${target} ${name}`).toBe(value);
    }
  });

  it('carries on 431 (headers too large) the headers a 404 carries', async () => {
    const expected = await headersOfA404();
    const refused = await get('/api/v1/users/', `X-Big: ${'a'.repeat(20_000)}\r\n`);
    expect(refused.status).toBe(431);
    for (const [name, value] of expected) expect(refused.headers.get(name), name).toBe(value);
  });

  it('names no origin that CORS_ORIGINS does not list', async () => {
    const refused = await exchange(
      'GET /api/v1/users/%FF/ HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example.com\r\nConnection: close\r\n\r\n',
    );
    expect(refused.status).toBe(400);
    expect(refused.headers.get('x-frame-options')).toBe('SAMEORIGIN');
    expect(refused.headers.has('access-control-allow-origin')).toBe(false);
  });
});
