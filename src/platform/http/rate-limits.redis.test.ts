import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hasRedisServer, type RedisServer, startRedisServer } from '../../../test/redis-server.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';

/** Cheap requests (400: empty body) count against the per-IP budget; they go to the nodes in turn. */
async function burn(nodes: TestApp[], url: string, n: number, remoteAddress: string) {
  const codes: number[] = [];
  for (let i = 0; i < n; i++) {
    const node = nodes[i % nodes.length] as TestApp;
    codes.push((await node.request({ method: 'POST', url, payload: {}, remoteAddress })).statusCode);
  }
  return codes;
}

// Two nodes of one installation: two apps with the same REDIS_URL.
describe.skipIf(!hasRedisServer())('rate limits shared through Redis (REDIS_URL)', () => {
  let redis: RedisServer;
  let a: TestApp;
  let b: TestApp;
  beforeAll(async () => {
    redis = await startRedisServer();
    a = await startTestApp({ RATE_LIMITS: 'on', REDIS_URL: redis.url });
    b = await startTestApp({ RATE_LIMITS: 'on', REDIS_URL: redis.url });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await redis?.stop();
  });

  it('counts one client IP across nodes: half the login budget on each node spends it all', async () => {
    const codes = await burn([a, b], '/api/token/', 30, '198.51.100.10');
    expect(codes.every((c) => c === 400)).toBe(true);
    for (const node of [a, b]) {
      const res = await node.request({
        method: 'POST',
        url: '/api/token/',
        payload: {},
        remoteAddress: '198.51.100.10',
      });
      expect(res.statusCode).toBe(429);
      expect(res.json()).toMatchObject({ status: 429, code: 'rate_limited' });
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
      expect(Number(res.headers['retry-after'])).toBeLessThanOrEqual(60);
    }
  });

  it('keeps each budget its own counter in Redis: a spent login budget leaves refresh and registration open', async () => {
    await burn([a, b], '/api/v1/users/login/', 31, '198.51.100.11');
    expect((await burn([b], '/api/token/refresh/', 1, '198.51.100.11'))[0]).toBe(400);
    expect((await burn([a], '/api/v1/users/register/', 1, '198.51.100.11'))[0]).toBe(400);
    const refresh = await burn([a, b], '/api/token/refresh/', 120, '198.51.100.12');
    expect(refresh.every((c) => c === 400)).toBe(true);
    expect((await burn([a], '/api/token/refresh/', 1, '198.51.100.12'))[0]).toBe(429);
  });

  it('counts login attempts per identifier across nodes and IPs, and keeps the identifier out of Redis', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 11; i++) {
      const node = i % 2 === 0 ? a : b;
      const res = await node.request({
        method: 'POST',
        url: '/api/token/',
        payload: { email: 'Shared.Target@Example.com', password: `guess ${i}` },
        remoteAddress: `192.0.2.${100 + i}`,
      });
      codes.push(res.statusCode);
    }
    expect(codes.slice(0, 10).every((c) => c === 401)).toBe(true);
    expect(codes[10]).toBe(429);

    const keys = await redis.client.keys('gatehouse:rate:*');
    expect(keys.some((k) => k.startsWith('gatehouse:rate:identifier:'))).toBe(true);
    expect(keys.some((k) => k.startsWith('gatehouse:rate:password:') && k.endsWith('198.51.100.10'))).toBe(true);
    expect(keys.join('\n').toLowerCase()).not.toContain('example.com');
    // Counters expire with their window.
    for (const key of keys) {
      const ttl = await redis.client.pttl(key);
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);
    }
  });

  it('falls back to per-node counters while Redis is down: still limited, never a 5xx', async () => {
    await redis.stop();
    const codes = await burn([a], '/api/token/', 31, '198.51.100.13');
    expect(codes.slice(0, 30).every((c) => c === 400)).toBe(true);
    expect(codes[30]).toBe(429);
    // The other node keeps its own count meanwhile.
    expect((await burn([b], '/api/token/', 1, '198.51.100.13'))[0]).toBe(400);
  });
});
