import { createCipheriv, createDecipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';

/**
 * Secrets at rest (signing keys, integration credentials) sealed with AES-256-GCM under MASTER_KEY.
 *
 * Sealed form: `v1.<key id>.<iv>.<ciphertext>.<tag>` (base64url parts). The key id is derived from
 * the master key itself, so a keyring of the current and previous master keys can open anything
 * sealed under either, and `needsReseal` finds what to re-encrypt after a rotation (`gatehouse reseal`).
 * The optional context is authenticated but not stored: a value sealed for one row (say
 * `signing_keys:<kid>`) does not open when copied into another.
 */

const VERSION = 'v1';
const IV_BYTES = 12; // the GCM nonce size NIST SP 800-38D recommends
const TAG_BYTES = 16;

export class EnvelopeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EnvelopeError';
  }
}

/** A short public name for a master key: safe to store, reveals nothing about the key. */
export function masterKeyId(key: Buffer): string {
  return createHash('sha256').update('gatehouse envelope key id\0').update(key).digest('hex').slice(0, 12);
}

export interface Envelope {
  /** Encrypts under the current master key. */
  seal(plaintext: string | Buffer, context?: string): string;
  /** Decrypts with whichever key of the ring sealed it; throws EnvelopeError on any tampering. */
  open(sealed: string, context?: string): Buffer;
  openText(sealed: string, context?: string): string;
  /** True when sealed under an older master key. */
  needsReseal(sealed: string): boolean;
  /** The id of the key `seal` uses. */
  readonly currentKeyId: string;
  /** True when `keyId` names a key of the ring (current or previous). */
  hasKey(keyId: string): boolean;
  /**
   * A keyed digest of `value` for values kept only to be compared, never read back (recovery codes):
   * `<key id>.<hex HMAC-SHA-256>` under a key derived from the current master key for `purpose`.
   */
  digest(purpose: string, value: string): string;
  /** `digest` under every key of the ring, current first: what a value stored before a rotation may hold. */
  digestsUnderRing(purpose: string, value: string): string[];
}

/** An envelope over the current master key and, for reading only, previous ones. */
export function createEnvelope(current: Buffer, previous: Buffer[] = []): Envelope {
  const ring = new Map<string, Buffer>();
  for (const key of [current, ...previous]) {
    if (key.length !== 32) throw new EnvelopeError('a master key must be 32 bytes');
    ring.set(masterKeyId(key), key);
  }
  const currentId = masterKeyId(current);
  // HKDF (RFC 5869) with the purpose as its info: a digest key is never the sealing key itself, and
  // one purpose's digests say nothing of another's.
  const digestKeys = new Map<string, Buffer>();
  const digestUnder = (keyId: string, purpose: string, value: string): string => {
    const name = `${keyId}\0${purpose}`;
    let digestKey = digestKeys.get(name);
    if (!digestKey) {
      digestKey = Buffer.from(
        hkdfSync('sha256', ring.get(keyId) as Buffer, Buffer.alloc(0), `gatehouse digest\0${purpose}`, 32),
      );
      digestKeys.set(name, digestKey);
    }
    return `${keyId}.${createHmac('sha256', digestKey).update(value).digest('hex')}`;
  };

  const open = (sealed: string, context = ''): Buffer => {
    const parts = sealed.split('.');
    if (parts.length !== 5 || parts[0] !== VERSION) throw new EnvelopeError('not a sealed value');
    const [, keyId, ivText, dataText, tagText] = parts as [string, string, string, string, string];
    const key = ring.get(keyId);
    if (!key) throw new EnvelopeError(`sealed under unknown master key ${keyId}`);
    const iv = Buffer.from(ivText, 'base64url');
    const tag = Buffer.from(tagText, 'base64url');
    if (iv.length !== IV_BYTES || tag.length !== TAG_BYTES) throw new EnvelopeError('not a sealed value');
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(Buffer.from(`${VERSION}.${keyId}.${context}`));
    decipher.setAuthTag(tag);
    try {
      return Buffer.concat([decipher.update(Buffer.from(dataText, 'base64url')), decipher.final()]);
    } catch {
      throw new EnvelopeError('sealed value failed authentication (tampered, or another context)');
    }
  };

  return {
    seal(plaintext, context = '') {
      const key = ring.get(currentId) as Buffer;
      const iv = randomBytes(IV_BYTES);
      const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: TAG_BYTES });
      // The version and key id are authenticated too, so neither can be swapped.
      cipher.setAAD(Buffer.from(`${VERSION}.${currentId}.${context}`));
      const data = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return [
        VERSION,
        currentId,
        iv.toString('base64url'),
        data.toString('base64url'),
        cipher.getAuthTag().toString('base64url'),
      ].join('.');
    },
    open,
    openText: (sealed, context) => open(sealed, context).toString('utf8'),
    needsReseal: (sealed) => sealed.split('.')[1] !== currentId,
    currentKeyId: currentId,
    hasKey: (keyId) => ring.has(keyId),
    digest: (purpose, value) => digestUnder(currentId, purpose, value),
    digestsUnderRing: (purpose, value) => [...ring.keys()].map((keyId) => digestUnder(keyId, purpose, value)),
  };
}

/** The master keys of a configuration: `MASTER_KEY` seals, `MASTER_KEY_PREVIOUS` only opens. */
export interface MasterKeys {
  masterKey: Buffer;
  masterKeyPrevious: Buffer[];
}

const envelopes = new WeakMap<MasterKeys, Envelope>();

/**
 * The envelope of a configuration, built once per config object: every caller that seals or opens
 * a secret gets it here, so a key listed in MASTER_KEY_PREVIOUS opens values everywhere at once.
 */
export function envelopeFor(keys: MasterKeys): Envelope {
  let envelope = envelopes.get(keys);
  if (!envelope) {
    envelope = createEnvelope(keys.masterKey, keys.masterKeyPrevious);
    envelopes.set(keys, envelope);
  }
  return envelope;
}
