import { eq, isNull, sql } from 'drizzle-orm';
import { createLocalJWKSet, decodeProtectedHeader, type JSONWebKeySet, jwtVerify } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedOrganization, seedUser, TEST_PASSWORD } from '../../../test/seed.js';
import { startTestApp, type TestApp, testConfig } from '../../../test/test-app.js';
import { publishInvalidation } from '../../platform/invalidation.js';
import { rotateSigningKey, SigningKeyStore } from './signing-keys.service.js';
import { signingKeys } from './signing-keys.table.js';

describe('signing keys', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await startTestApp();
  });
  afterAll(() => t.close());

  const jwks = async () => (await t.request({ method: 'GET', url: '/.well-known/jwks.json' })).json() as JSONWebKeySet;
  const kids = async () => (await jwks()).keys.map((k) => k.kid);
  const validate = (access: string) =>
    t.request({ method: 'GET', url: '/api/v1/users/validate-token/', headers: { authorization: `Bearer ${access}` } });
  async function login(): Promise<string> {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    const res = await t.request({
      method: 'POST',
      url: '/api/token/',
      payload: { email: user.email, password: TEST_PASSWORD },
    });
    expect(res.statusCode).toBe(200);
    return res.json().access as string;
  }

  it('creates one active ES256 key at start and publishes only its public half', async () => {
    const active = await t.database.db.select().from(signingKeys).where(isNull(signingKeys.retiredAt));
    expect(active).toHaveLength(1);
    // The private key is stored sealed under MASTER_KEY, never as a readable JWK.
    expect(active[0]?.privateKeySealed).toMatch(/^v1\./);
    expect(active[0]?.privateKeySealed).not.toContain('"d"');

    const res = await t.request({ method: 'GET', url: '/.well-known/jwks.json' });
    expect(res.statusCode).toBe(200);
    const { keys } = res.json() as JSONWebKeySet;
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig', kid: active[0]?.kid });
    expect(keys[0]).not.toHaveProperty('d');
  });

  it('serves an OpenID discovery document naming issuer, JWKS and token endpoint', async () => {
    const res = await t.request({ method: 'GET', url: '/.well-known/openid-configuration' });
    expect(res.statusCode).toBe(200);
    const doc = res.json();
    expect(doc).toMatchObject({
      issuer: 'http://gatehouse.test',
      jwks_uri: 'http://gatehouse.test/.well-known/jwks.json',
      token_endpoint: 'http://gatehouse.test/api/token/',
      id_token_signing_alg_values_supported: ['ES256'],
      grant_types_supported: expect.arrayContaining(['password', 'refresh_token']),
    });
    expect(doc).not.toHaveProperty('authorization_endpoint');
  });

  it('issues tokens whose iss is PUBLIC_URL exactly as configured, a trailing slash included', async () => {
    const slashed = await startTestApp({ PUBLIC_URL: 'https://id.example.test/' });
    try {
      const doc = (await slashed.request({ method: 'GET', url: '/.well-known/openid-configuration' })).json();
      expect(doc).toMatchObject({
        issuer: 'https://id.example.test/',
        jwks_uri: 'https://id.example.test/.well-known/jwks.json',
      });
      const org = await seedOrganization(slashed);
      const user = await seedUser(slashed, org.id);
      const login = await slashed.request({
        method: 'POST',
        url: '/api/token/',
        payload: { email: user.email, password: TEST_PASSWORD },
      });
      const keySet = (await slashed.request({ method: 'GET', url: '/.well-known/jwks.json' })).json() as JSONWebKeySet;
      const { payload } = await jwtVerify(login.json().access, createLocalJWKSet(keySet), {
        issuer: 'https://id.example.test/',
        audience: 'https://id.example.test/',
      });
      expect(payload.iss).toBe('https://id.example.test/');
      const validated = await slashed.request({
        method: 'GET',
        url: '/api/v1/users/validate-token/',
        headers: { authorization: `Bearer ${login.json().access}` },
      });
      expect(validated.statusCode).toBe(200);
    } finally {
      await slashed.close();
    }
  });

  it('keeps the old kid in the JWKS after rotation, so tokens it signed still verify, and signs new ones with the new key', async () => {
    const before = await login();
    const oldKid = decodeProtectedHeader(before).kid;

    const rotation = await rotateSigningKey(t.database.db, t.config);
    expect(rotation.retired.map((r) => r.kid)).toEqual([oldKid]);
    const minPublish = Date.now() + t.config.accessTokenTtlSeconds * 1000;
    expect(rotation.retired[0]?.publishUntil.getTime()).toBeGreaterThan(minPublish);

    expect(await kids()).toEqual(expect.arrayContaining([oldKid, rotation.kid]));
    const after = await login();
    expect(decodeProtectedHeader(after).kid).toBe(rotation.kid);

    const keySet = createLocalJWKSet(await jwks());
    for (const token of [before, after]) {
      await jwtVerify(token, keySet, { issuer: 'http://gatehouse.test', audience: 'http://gatehouse.test' });
      expect((await validate(token)).statusCode).toBe(200);
    }
  });

  it('drops a retired key from the JWKS once its publication window has passed, and its tokens stop', async () => {
    const token = await login();
    const oldKid = decodeProtectedHeader(token).kid as string;
    await rotateSigningKey(t.database.db, t.config);
    await t.database.db
      .update(signingKeys)
      .set({ publishUntil: sql`now() - interval '1 second'` })
      .where(eq(signingKeys.kid, oldKid));
    await publishInvalidation(t.database.db, 'signing_keys', oldKid);

    expect(await kids()).not.toContain(oldKid);
    expect((await validate(token)).statusCode).toBe(401);
  });

  it('picks up a key rotated on another node when a token names a kid it does not know', async () => {
    // This store stops listening, like a node whose notification was lost.
    const deaf = await SigningKeyStore.open(t.database.db, t.config);
    deaf.close();
    const { kid } = await rotateSigningKey(t.database.db, t.config);
    const other = await SigningKeyStore.open(t.database.db, t.config);
    other.close();
    const token = await other.sign({ iss: t.config.publicUrl, aud: t.config.tokenAudience, sub: 'someone' }, 60);
    expect(decodeProtectedHeader(token).kid).toBe(kid);
    expect(deaf.activeKid).not.toBe(kid);

    const payload = await deaf.verify(token, { issuer: t.config.publicUrl, audience: t.config.tokenAudience });
    expect(payload?.sub).toBe('someone');
    // The reload also made the new key the one this node signs with.
    expect(deaf.activeKid).toBe(kid);
  });

  it('refuses to start with a MASTER_KEY that did not seal the active key, saying what to do', async () => {
    const otherMasterKey = testConfig();
    await expect(SigningKeyStore.open(t.database.db, otherMasterKey)).rejects.toThrow(
      /cannot be opened with this MASTER_KEY.*gatehouse keys rotate/,
    );
  });

  it('answers an unknown kid without reloading more than once per interval', async () => {
    const store = await SigningKeyStore.open(t.database.db, t.config);
    store.close();
    const forged = (kid: string) =>
      `${Buffer.from(JSON.stringify({ alg: 'ES256', kid })).toString('base64url')}.${Buffer.from('{}').toString('base64url')}.c2ln`;
    const opts = { issuer: t.config.publicUrl, audience: t.config.tokenAudience };
    expect(await store.verify(forged('nope-1'), opts)).toBeUndefined();
    // A fresh key rotated now is not seen: the reload budget was spent on the forged kid.
    const { kid } = await rotateSigningKey(t.database.db, t.config);
    const signer = await SigningKeyStore.open(t.database.db, t.config);
    signer.close();
    const token = await signer.sign({ iss: opts.issuer, aud: opts.audience, sub: 'x' }, 60);
    expect(decodeProtectedHeader(token).kid).toBe(kid);
    expect(await store.verify(token, opts)).toBeUndefined();
  });
});
