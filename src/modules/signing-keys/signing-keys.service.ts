import { and, isNull, ne, sql } from 'drizzle-orm';
import {
  type CryptoKey,
  calculateJwkThumbprint,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  importJWK,
  type JWK,
  type JWTPayload,
  jwtVerify,
  SignJWT,
} from 'jose';
import type { Config } from '../../config.js';
import { envelopeFor } from '../../platform/crypto/envelope.js';
import type { Db } from '../../platform/db/client.js';
import type { Actor } from '../../platform/http/auth.js';
import { ALL_TOPICS, onInvalidation, publishInvalidation } from '../../platform/invalidation.js';
import { type AuditEvent, recordAudit } from '../activity/audit.js';
import { findActiveSigningKey, listPublishedSigningKeys } from './signing-keys.queries.js';
import { type SigningKey, signingKeys } from './signing-keys.table.js';

export const SIGNING_ALGORITHM = 'ES256';
// Every node takes the same advisory lock, so nodes starting together create one key, not several.
const SIGNING_KEY_LOCK = 0x6b65_7973;
// A retired key stays published past the access-token TTL by this much: other nodes may sign with
// it until they hear of the rotation, and verifiers' clocks drift.
const RETIRED_KEY_SKEW_SECONDS = 300;
// A verifier seeing an unknown kid reloads from the database at most this often (a forged kid must
// not turn every request into a query).
const UNKNOWN_KID_RELOAD_INTERVAL_MS = 5_000;
// Periodic reload, in case a rotation notice was missed.
const PERIODIC_RELOAD_MS = 5 * 60_000;

const TOPIC = 'signing_keys';

/** The context (AAD) a signing key's private half is sealed with: it binds the value to its row. */
export function signingKeySealContext(kid: string): string {
  return `signing_keys:${kid}`;
}

async function generateSigningKeyRow(config: Config): Promise<typeof signingKeys.$inferInsert> {
  const { publicKey, privateKey } = await generateKeyPair(SIGNING_ALGORITHM, { extractable: true });
  const publicJwk = await exportJWK(publicKey);
  // RFC 7638 thumbprint: stable, derived from the key, and unique without coordination.
  const kid = await calculateJwkThumbprint(publicJwk);
  const privateJwk = await exportJWK(privateKey);
  return {
    kid,
    algorithm: SIGNING_ALGORITHM,
    publicJwk: { ...publicJwk, kid, alg: SIGNING_ALGORITHM, use: 'sig' },
    privateKeySealed: envelopeFor(config).seal(JSON.stringify(privateJwk), signingKeySealContext(kid)),
  };
}

/** Makes sure an active signing key exists (start-up); safe when several nodes start at once. */
export async function ensureSigningKey(db: Db, config: Config): Promise<string> {
  return db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${SIGNING_KEY_LOCK})`);
    const active = await findActiveSigningKey(tx);
    if (active) return active.kid;
    const [row] = await tx
      .insert(signingKeys)
      .values(await generateSigningKeyRow(config))
      .returning();
    return (row as SigningKey).kid;
  });
}

export interface RotationResult {
  kid: string;
  retired: { kid: string; publishUntil: Date }[];
}

/** The audit event of a rotation: key ids and dates, never key material. */
function signingKeyRotatedEvent(rotation: RotationResult, actor: Actor | undefined): AuditEvent {
  return {
    type: 'signing_key.rotated',
    category: 'system',
    organizationId: null,
    ...(actor ? { actor } : {}),
    description: `Signing key ${rotation.kid} made active`,
    details: {
      kid: rotation.kid,
      algorithm: SIGNING_ALGORITHM,
      retired: rotation.retired.map((r) => ({ kid: r.kid, published_until: r.publishUntil.toISOString() })),
    },
    severity: 'warning',
    objectType: 'signing_key',
    objectId: rotation.kid,
  };
}

/**
 * Makes a new key active. The previous ones are retired but stay in the JWKS until every access
 * token they signed has expired (access-token TTL plus a skew). Every node is told to reload.
 * The audit event names `actor` (omitted: the system).
 */
export async function rotateSigningKey(db: Db, config: Config, actor?: Actor): Promise<RotationResult> {
  const result = await db.transaction(async (tx) => {
    await tx.execute(sql`select pg_advisory_xact_lock(${SIGNING_KEY_LOCK})`);
    const [created] = await tx
      .insert(signingKeys)
      .values(await generateSigningKeyRow(config))
      .returning();
    const kid = (created as SigningKey).kid;
    const retired = await tx
      .update(signingKeys)
      .set({
        retiredAt: sql`now()`,
        publishUntil: sql`now() + make_interval(secs => ${config.accessTokenTtlSeconds + RETIRED_KEY_SKEW_SECONDS})`,
      })
      .where(and(isNull(signingKeys.retiredAt), ne(signingKeys.kid, kid)))
      .returning({ kid: signingKeys.kid, publishUntil: signingKeys.publishUntil });
    const rotation = { kid, retired: retired.map((r) => ({ kid: r.kid, publishUntil: r.publishUntil as Date })) };
    await recordAudit(tx, signingKeyRotatedEvent(rotation, actor));
    return rotation;
  });
  // After commit, so no node reloads before the new key is visible.
  await publishInvalidation(db, TOPIC, result.kid);
  return result;
}

/** A published key: JWK members plus the three Gatehouse always sets. */
export type PublicJwk = JWK & { kid: string; alg: string; use: string; kty: string };

interface LoadedKey {
  kid: string;
  publicJwk: PublicJwk;
  verifyKey: CryptoKey;
  publishUntil: number;
}

export interface AccessTokenVerifyOptions {
  issuer: string;
  audience: string;
}

/**
 * This node's copy of the signing keys: the active private key for signing, the published public
 * keys for verifying and for the JWKS. Reloaded when a rotation is announced, when a token names an
 * unknown kid (rate-limited), and every few minutes.
 */
export class SigningKeyStore {
  private active: { kid: string; signKey: CryptoKey } | undefined;
  private published = new Map<string, LoadedKey>();
  private loading: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private lastUnknownKidReload = 0;
  private readonly timer: NodeJS.Timeout;
  private readonly unsubscribe: Array<() => void>;

  private constructor(
    private readonly db: Db,
    private readonly config: Config,
    private readonly onError: (err: unknown) => void,
    onReloaded: () => void,
  ) {
    const reloadSoon = () => {
      this.reload().then(onReloaded, onError);
    };
    this.unsubscribe = [
      onInvalidation(TOPIC, reloadSoon),
      onInvalidation(ALL_TOPICS, (e) => e === 'reset' && reloadSoon()),
    ];
    this.timer = setInterval(reloadSoon, PERIODIC_RELOAD_MS);
    this.timer.unref();
  }

  /**
   * Ensures an active key exists, loads the keys and keeps them current until `close()`; a
   * background reload reports its failure to `onError`, its success to `onReloaded`.
   */
  static async open(
    db: Db,
    config: Config,
    onError: (err: unknown) => void = () => {},
    onReloaded: () => void = () => {},
  ): Promise<SigningKeyStore> {
    await ensureSigningKey(db, config);
    const store = new SigningKeyStore(db, config, onError, onReloaded);
    await store.reload();
    return store;
  }

  close(): void {
    clearInterval(this.timer);
    for (const off of this.unsubscribe) off();
  }

  /**
   * Reloads from the database. Callers during a load share the next one, not the running one: the
   * running load may have read the table before the change that prompted this call.
   */
  reload(): Promise<void> {
    if (!this.loading) {
      this.loading = this.load().finally(() => {
        this.loading = undefined;
      });
      return this.loading;
    }
    this.queued ??= this.loading
      .catch(() => {})
      .then(() => {
        this.queued = undefined;
        return this.reload();
      });
    return this.queued;
  }

  private async load(): Promise<void> {
    const rows = await listPublishedSigningKeys(this.db);
    const published = new Map<string, LoadedKey>();
    for (const row of rows) {
      const known = this.published.get(row.kid);
      const publishUntil = row.publishUntil ? row.publishUntil.getTime() : Number.POSITIVE_INFINITY;
      if (known) {
        published.set(row.kid, { ...known, publishUntil });
        continue;
      }
      const publicJwk = row.publicJwk as PublicJwk;
      published.set(row.kid, {
        kid: row.kid,
        publicJwk,
        verifyKey: (await importJWK(publicJwk, row.algorithm)) as CryptoKey,
        publishUntil,
      });
    }
    // The newest unretired key signs (rows come newest first).
    const activeRow = rows.find((r) => r.retiredAt === null);
    if (activeRow && activeRow.kid !== this.active?.kid) {
      let sealedJwk: string;
      try {
        sealedJwk = envelopeFor(this.config).openText(activeRow.privateKeySealed, signingKeySealContext(activeRow.kid));
      } catch (err) {
        throw new Error(
          `the active signing key ${activeRow.kid} cannot be opened with this MASTER_KEY (${(err as Error).message}); ` +
            'list the key it was sealed under in MASTER_KEY_PREVIOUS, or run `gatehouse keys rotate` to make a new one',
          { cause: err },
        );
      }
      const privateJwk = JSON.parse(sealedJwk) as JWK;
      this.active = { kid: activeRow.kid, signKey: (await importJWK(privateJwk, activeRow.algorithm)) as CryptoKey };
    }
    this.published = published;
  }

  /** Waits for a reload in progress (a rotation just announced), so answers reflect it. */
  async settled(): Promise<void> {
    const pending = this.queued ?? this.loading;
    if (pending) await pending.catch(() => {});
  }

  get activeKid(): string | undefined {
    return this.active?.kid;
  }

  /** The JWKS document: public keys that are active or still within their publication window. */
  jwks(now = Date.now()): { keys: PublicJwk[] } {
    const keys: PublicJwk[] = [];
    for (const key of this.published.values()) if (key.publishUntil > now) keys.push(key.publicJwk);
    return { keys };
  }

  /** Signs a JWT with the active key; `kid` names it in the header. */
  async sign(claims: JWTPayload, ttlSeconds: number, nowSeconds = Math.floor(Date.now() / 1000)): Promise<string> {
    const active = this.active;
    if (!active) throw new Error('no active signing key is loaded');
    return new SignJWT(claims)
      .setProtectedHeader({ alg: SIGNING_ALGORITHM, kid: active.kid, typ: 'JWT' })
      .setIssuedAt(nowSeconds)
      .setExpirationTime(nowSeconds + ttlSeconds)
      .sign(active.signKey);
  }

  /**
   * Verifies signature, issuer, audience and expiry; answers the payload, or undefined for any
   * token that is not valid. An unknown kid triggers one (rate-limited) reload, so a key rotated
   * on another node is picked up.
   */
  async verify(token: string, options: AccessTokenVerifyOptions): Promise<JWTPayload | undefined> {
    let kid: unknown;
    try {
      kid = decodeProtectedHeader(token).kid;
    } catch {
      return undefined;
    }
    if (typeof kid !== 'string') return undefined;
    let key = this.published.get(kid);
    if (!key) {
      const now = Date.now();
      if (now - this.lastUnknownKidReload < UNKNOWN_KID_RELOAD_INTERVAL_MS) return undefined;
      this.lastUnknownKidReload = now;
      try {
        await this.reload();
      } catch (err) {
        this.onError(err);
        return undefined;
      }
      key = this.published.get(kid);
      if (!key) return undefined;
    }
    if (key.publishUntil <= Date.now()) return undefined;
    try {
      const { payload } = await jwtVerify(token, key.verifyKey, {
        algorithms: [SIGNING_ALGORITHM],
        issuer: options.issuer,
        audience: options.audience,
        requiredClaims: ['exp', 'iat', 'sub'],
      });
      return payload;
    } catch {
      return undefined;
    }
  }
}
