import { request as httpRequest, type IncomingMessage } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { discardCap } from './body-limit.js';

const KEY = 'body-limit-test-provisioning-key';
const MiB = 1024 * 1024;

/** A chunked upload of `total` bytes (endless when Infinity); `sent()` tells how many were pulled. */
function upload(total: number) {
  let pulled = 0;
  const chunk = new Uint8Array(256 * 1024).fill(0x20);
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      if (pulled >= total) return controller.close();
      const part = total - pulled < chunk.length ? chunk.subarray(0, total - pulled) : chunk;
      pulled += part.length;
      controller.enqueue(part);
    },
  });
  return { body, sent: () => pulled };
}

/** One request on a connection of its own (no agent, no keep-alive pool). */
function onFreshConnection(url: URL, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(new URL(path, url), { agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * What Python's urllib does: write the request whole, and only then read the answer. The socket is
 * not read while writing, so an answer followed by a reset of the connection is lost, as it is for
 * such a client on a real network. Resolves with what was read, or the error that ended the writing.
 */
function writeWholeThenRead(url: URL, head: string, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(Number(url.port), url.hostname);
    socket.pause();
    let data = '';
    socket.setEncoding('utf8');
    socket.on('error', (err) => resolve(data || err.message));
    socket.write(head);
    socket.write(body, (err) => {
      if (err) return;
      socket.on('data', (chunk) => {
        data += chunk;
        // One answer is enough: the connection may be kept open after it.
        if (/\r\n\r\n[\s\S]*\}$/.test(data)) {
          socket.destroy();
          resolve(data);
        }
      });
      socket.on('end', () => resolve(data));
      socket.resume();
    });
  });
}

describe('a body over the limit, on a real socket', () => {
  let t: TestApp;
  let base: URL;
  let limit: number;
  const bulk = () => new URL('/api/provisioning/users/bulk', base);
  const headers = { 'x-api-key': KEY, 'content-type': 'application/json' };

  beforeAll(async () => {
    t = await startTestApp({ PROVISIONING_API_KEY: KEY });
    base = new URL(await t.app.listen({ host: '127.0.0.1', port: 0 }));
    limit = t.config.bodyLimitBytes;
  });
  afterAll(() => t.close());

  async function expect413(res: Response) {
    expect(res.status).toBe(413);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(await res.json()).toMatchObject({
      status: 413,
      code: 'payload_too_large',
      errors: [{ field: 'body', message: expect.stringContaining(`${limit} bytes`) }],
    });
  }

  it('reaches fetch, which sends the whole body before reading, for a declared length', async () => {
    const res = await fetch(bulk(), { method: 'POST', headers, body: new Uint8Array(limit + MiB).fill(0x20) });
    await expect413(res);
    // The connection was kept in order: the pool's next request and a fresh connection both work.
    expect((await fetch(new URL('/health', base))).status).toBe(200);
    expect(await onFreshConnection(base, '/health')).toBe(200);
  });

  it('reaches a client that reads only once its whole body is written, for a declared length and chunked', async () => {
    const path = '/api/provisioning/users/bulk';
    const common = `POST ${path} HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${KEY}\r\nContent-Type: application/json\r\n`;
    const body = Buffer.alloc(limit + MiB, 0x20);
    const declared = await writeWholeThenRead(base, `${common}Content-Length: ${body.length}\r\n\r\n`, body);
    expect(declared).toMatch(/^HTTP\/1\.1 413 /);
    expect(declared).toContain('"payload_too_large"');

    const chunks = Buffer.concat([Buffer.from(`${body.length.toString(16)}\r\n`), body, Buffer.from('\r\n0\r\n\r\n')]);
    const chunked = await writeWholeThenRead(base, `${common}Transfer-Encoding: chunked\r\n\r\n`, chunks);
    expect(chunked).toMatch(/^HTTP\/1\.1 413 /);
    expect(chunked).toContain('"payload_too_large"');
  });

  it('reaches fetch for a chunked body that runs over the limit', async () => {
    const { body } = upload(limit + MiB);
    const res = await fetch(bulk(), { method: 'POST', headers, body, duplex: 'half' } as RequestInit);
    await expect413(res);
    expect(await onFreshConnection(base, '/health')).toBe(200);
  });

  it('still takes a chunked body within the limit', async () => {
    const res = await fetch(bulk(), {
      method: 'POST',
      headers,
      body: new Blob(['[]']).stream(),
      duplex: 'half',
    } as RequestInit);
    expect(res.status).not.toBe(413);
    expect(res.status).toBeLessThan(500);
  });

  it('stops reading a chunked body at the cap and closes the connection, without holding it', async () => {
    const { body, sent } = upload(Number.POSITIVE_INFINITY);
    const started = Date.now();
    const outcome = await fetch(bulk(), { method: 'POST', headers, body, duplex: 'half' } as RequestInit).then(
      (res) => res.status,
      (err: Error) => err.message,
    );
    // The answer may or may not reach a client that is still sending; the connection ends either way.
    expect([413, 'fetch failed']).toContain(outcome);
    expect(Date.now() - started).toBeLessThan(15_000);
    // What was pulled is the cap plus what the socket buffers held, not the endless stream.
    expect(sent()).toBeGreaterThan(discardCap(limit));
    expect(sent()).toBeLessThan(discardCap(limit) + 32 * MiB);
    expect(await onFreshConnection(base, '/health')).toBe(200);
  });

  it('refuses a declared length beyond the cap at once, and closes the connection', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(base.port), base.hostname, () => {
        socket.write(
          `POST /api/provisioning/users/bulk HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${KEY}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${10 * discardCap(limit)}\r\n\r\n`,
        );
        socket.write(Buffer.alloc(64 * 1024, 0x20));
      });
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk) => {
        data += chunk;
      });
      socket.on('end', () => resolve(data));
      socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? resolve(data) : reject(err)));
    });
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(answer.toLowerCase()).toContain('connection: close');
    expect(answer).toContain('"payload_too_large"');
    expect(await onFreshConnection(base, '/health')).toBe(200);
  });

  it('answers Expect: 100-continue with 413 for a declared length over the limit, without a 100', async () => {
    const result = await new Promise<{ status: number; continued: boolean; body: string }>((resolve, reject) => {
      let continued = false;
      const req = httpRequest(bulk(), {
        method: 'POST',
        agent: false,
        headers: { ...headers, expect: '100-continue', 'content-length': String(limit + 1) },
      });
      req.on('continue', () => {
        continued = true;
        req.end(Buffer.alloc(limit + 1, 0x20));
      });
      req.on('response', (res: IncomingMessage) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          body += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, continued, body }));
      });
      req.on('error', reject);
    });
    expect(result.continued).toBe(false);
    expect(result.status).toBe(413);
    expect(JSON.parse(result.body)).toMatchObject({ status: 413, code: 'payload_too_large' });
  });

  it('answers Expect: 100-continue with 100 for a body within the limit, then reads it', async () => {
    const result = await new Promise<{ status: number; continued: boolean }>((resolve, reject) => {
      let continued = false;
      const body = '[]';
      const req = httpRequest(bulk(), {
        method: 'POST',
        agent: false,
        headers: { ...headers, expect: '100-continue', 'content-length': String(body.length) },
      });
      req.on('continue', () => {
        continued = true;
        req.end(body);
      });
      req.on('response', (res: IncomingMessage) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, continued }));
      });
      req.on('error', reject);
    });
    expect(result.continued).toBe(true);
    expect(result.status).not.toBe(413);
    expect(result.status).toBeLessThan(500);
  });

  it('keeps the connection usable after an answer given without reading a chunked body', async () => {
    const answers = await new Promise<string>((resolve, reject) => {
      const socket = connect(Number(base.port), base.hostname, () => {
        socket.write(
          `POST /api/provisioning/users/bulk HTTP/1.1\r\nHost: x\r\nX-Api-Key: ${KEY}\r\n` +
            `Content-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n${MiB.toString(16)}\r\n`,
        );
        // More than the parser's stream buffers before its reading stops.
        socket.write(Buffer.alloc(MiB, 0x20));
        socket.write('\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      });
      let data = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk) => {
        data += chunk;
      });
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
    });
    expect(answers).toMatch(/^HTTP\/1\.1 415 /);
    expect(answers).toMatch(/\}HTTP\/1\.1 200 /);
  });

  it('gives a caller without credentials its 401 on a body over the limit too', async () => {
    const res = await fetch(bulk(), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: new Uint8Array(limit + MiB).fill(0x20),
    });
    expect(res.status).toBe(401);
    expect(await res.json()).toMatchObject({ code: 'not_authenticated' });
  });
});
