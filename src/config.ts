import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { passwordWeakness } from './platform/crypto/password-policy.js';
import { isEmailAddress } from './platform/email-address.js';

/** Validated runtime settings; `loadConfig` is the only reader of `process.env`. */
export interface Config {
  port: number;
  host: string;
  databaseUrl: string | undefined;
  dataDir: string;
  /** PUBLIC_URL without a trailing slash, to build URLs on. */
  publicUrl: string;
  /** PUBLIC_URL exactly as configured: access tokens' `iss` (and default `aud`), the discovery `issuer`. */
  issuer: string;
  tokenAudience: string;
  provisioningApiKey: string | undefined;
  /** When set, `/metrics` answers only `Authorization: Bearer <token>`. */
  metricsToken: string | undefined;
  adminEmail: string | undefined;
  adminPassword: string | undefined;
  masterKey: Buffer;
  /** Keys of before a rotation (MASTER_KEY_PREVIOUS): they open values sealed under them, never seal. */
  masterKeyPrevious: Buffer[];
  smtpUrl: string | undefined;
  mailFrom: string;
  trustProxy: boolean | number | string[];
  corsOrigins: string[];
  redisUrl: string | undefined;
  rateLimits: boolean;
  /** Failed logins within `lockoutWindowSeconds` that lock an account for `lockoutDurationSeconds`. */
  lockoutThreshold: number;
  lockoutWindowSeconds: number;
  lockoutDurationSeconds: number;
  accessTokenTtlSeconds: number;
  refreshTokenTtlSeconds: number;
  /** A session's greatest age: refreshes slide its expiry up to its start plus this, never beyond. */
  sessionMaxAgeSeconds: number;
  bulkMaxItems: number;
  bodyLimitBytes: number;
  logLevel: string;
  /** Request activity: tracked (on) or not; the buffer's bound, the rows per INSERT, months kept. */
  activityTracking: boolean;
  activityBufferSize: number;
  activityBatchSize: number;
  /** Whole monthly partitions older than this are dropped; 0 keeps everything. */
  activityRetentionMonths: number;
  /** Active integrations are health-checked when their last check is this old; 0 turns scheduled checks off. */
  integrationHealthIntervalSeconds: number;
  /** Seconds between scheduled syncs of users to `user_provisioning` integrations; 0: only on demand. */
  downstreamSyncIntervalSeconds: number;
  /** Days of integration request logs and health checks kept; 0 keeps everything. */
  integrationHistoryDays: number;
  /** Whether integrations may call loopback addresses (the server's own host); off for multi-tenant installations. */
  integrationsAllowLoopback: boolean;
  /** Days mail stays in the outbox once delivered, stored or failed; 0 keeps it. */
  mailOutboxRetentionDays: number;
}

/** A bad environment value; `main` prints its message as the one line that stops start-up. */
export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    problem: string,
  ) {
    super(`${variable}: ${problem}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

function intVar(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw)) throw new ConfigError(name, `must be a whole number, got "${raw}"`);
  const n = Number(raw);
  if (n < min || n > max) throw new ConfigError(name, `must be between ${min} and ${max}, got ${n}`);
  return n;
}

function urlVar(env: Env, name: string, protocols: string[]): string | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new ConfigError(name, 'is not a valid URL');
  }
  if (!protocols.includes(url.protocol)) {
    throw new ConfigError(name, `must use ${protocols.map((p) => p.replace(':', '://')).join(' or ')}`);
  }
  return raw;
}

function isCidr(value: string): boolean {
  const [addr, bits, ...rest] = value.split('/');
  if (rest.length > 0 || !addr) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d+$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}

function parseTrustProxy(raw: string | undefined): Config['trustProxy'] {
  if (raw === undefined || raw === '') return false;
  if (/^\d+$/.test(raw)) return Number(raw);
  const entries = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = entries.find((e) => !isCidr(e));
  if (bad !== undefined || entries.length === 0) {
    throw new ConfigError(
      'TRUST_PROXY',
      `must be a hop count or a comma-separated list of IPs/CIDRs, got "${bad ?? raw}"`,
    );
  }
  return entries;
}

function parseCorsOrigins(raw: string | undefined): string[] {
  if (raw === undefined || raw.trim() === '') return [];
  return raw.split(',').map((s) => {
    const origin = s.trim();
    let url: URL;
    try {
      url = new URL(origin);
    } catch {
      throw new ConfigError('CORS_ORIGINS', `"${origin}" is not an origin such as https://app.example.com`);
    }
    if (url.origin !== origin.replace(/\/$/, '')) {
      throw new ConfigError('CORS_ORIGINS', `"${origin}" must be a bare origin (scheme, host, port)`);
    }
    return url.origin;
  });
}

// The sender's own address, which needs no more than a domain part: the default is gatehouse@localhost.
const SENDER = /^[^\s@]+@[^\s@]+$/;

/** A base64 32-byte key, or undefined when `raw` is not exactly that (no lenient decoding). */
function decodeKey(raw: string): Buffer | undefined {
  const key = Buffer.from(raw, 'base64');
  if (key.length !== 32 || key.toString('base64').replace(/=+$/, '') !== raw.trim().replace(/=+$/, ''))
    return undefined;
  return key;
}

/**
 * Creates DATA_DIR (and its parents) when missing. A path that cannot be a folder (a file in the
 * way, no permission) stops start-up with one line naming the variable, as any bad value does,
 * rather than as a bare mkdir error.
 */
export function createDataDir(dataDir: string): void {
  try {
    makeDirectories(resolve(dataDir));
  } catch (err) {
    const { code, message } = err as NodeJS.ErrnoException;
    // Node's text is "ENOTDIR: not a directory, mkdir '…'": the middle part says what is wrong.
    const reason =
      code === 'EEXIST' ? 'a file of that name is in the way' : (/^\w+: ([^,]+)/.exec(message)?.[1] ?? message);
    throw new ConfigError('DATA_DIR', `cannot create ${dataDir}: ${reason}`);
  }
}

/**
 * `mkdir -p`, one level at a time. Node's `mkdirSync(…, {recursive: true})` retries for ever when the
 * parent exists but refuses children with ENOENT (as /proc does), hanging start-up; this answers the
 * error instead. A folder another process creates meanwhile is fine; a file in the way is EEXIST.
 */
function makeDirectories(dir: string): void {
  const missing: string[] = [];
  for (let at = dir; !existsSync(at); at = dirname(at)) {
    missing.unshift(at);
    if (dirname(at) === at) break;
  }
  for (const each of missing) {
    try {
      mkdirSync(each);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || !statSync(each).isDirectory()) throw err;
    }
  }
  if (!statSync(dir).isDirectory()) {
    throw Object.assign(new Error(`EEXIST: file already exists, mkdir '${dir}'`), { code: 'EEXIST' });
  }
}

function parseMasterKey(env: Env, dataDir: string, embedded: boolean): Buffer {
  const raw = env.MASTER_KEY;
  if (raw !== undefined && raw !== '') {
    const key = decodeKey(raw);
    if (!key) throw new ConfigError('MASTER_KEY', 'must be the base64 encoding of exactly 32 bytes');
    return key;
  }
  if (!embedded) throw new ConfigError('MASTER_KEY', 'is required when DATABASE_URL is set (every node must share it)');
  // Embedded mode keeps a generated key beside the database so a restart can read its own secrets.
  const file = join(dataDir, 'master.key');
  const readKey = () => {
    const key = Buffer.from(readFileSync(file, 'utf8').trim(), 'base64');
    if (key.length !== 32) throw new ConfigError('MASTER_KEY', `${file} does not hold a base64 32-byte key`);
    return key;
  };
  if (existsSync(file)) return readKey();
  createDataDir(dataDir);
  const key = randomBytes(32);
  // Written whole under a name of its own, then linked into place: two processes starting on a new
  // DATA_DIR at once (a server and a CLI command) never read a half-written file, and the one whose
  // link fails uses the key the other put there.
  const draft = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(draft, `${key.toString('base64')}\n`, { mode: 0o600 });
  try {
    linkSync(draft, file);
    return key;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    return readKey();
  } finally {
    rmSync(draft, { force: true });
  }
}

/**
 * MASTER_KEY_PREVIOUS: comma-separated keys that only open values sealed before a rotation. The
 * current key, and a key listed twice, are dropped rather than refused, so the same list can be
 * rolled out to every node before and after MASTER_KEY changes. A bad entry is named by position,
 * never echoed: it is a secret.
 */
function parsePreviousMasterKeys(raw: string | undefined, current: Buffer): Buffer[] {
  if (raw === undefined || raw.trim() === '') return [];
  const keys: Buffer[] = [];
  const entries = raw.split(',').map((s) => s.trim());
  for (const [index, entry] of entries.entries()) {
    if (entry === '') continue;
    const key = decodeKey(entry);
    if (!key) {
      throw new ConfigError(
        'MASTER_KEY_PREVIOUS',
        `entry ${index + 1} must be the base64 encoding of exactly 32 bytes (comma-separated keys)`,
      );
    }
    if (!key.equals(current) && !keys.some((k) => k.equals(key))) keys.push(key);
  }
  return keys;
}

/** Reads and validates the environment; throws ConfigError naming the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const port = intVar(env, 'PORT', 8080, 0, 65535);
  const host = env.HOST || '127.0.0.1';
  if (isIP(host) === 0 && !/^[a-zA-Z0-9.-]+$/.test(host)) throw new ConfigError('HOST', `"${host}" is not an address`);
  const databaseUrl = urlVar(env, 'DATABASE_URL', ['postgres:', 'postgresql:']);
  const dataDir = resolve(env.DATA_DIR || './data');
  const issuer =
    urlVar(env, 'PUBLIC_URL', ['http:', 'https:']) ?? `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
  const publicUrl = issuer.replace(/\/+$/, '');
  const tokenAudience = env.TOKEN_AUDIENCE || issuer;

  const adminEmail = env.ADMIN_EMAIL || undefined;
  if (adminEmail !== undefined && !isEmailAddress(adminEmail))
    throw new ConfigError('ADMIN_EMAIL', 'is not an email address');
  const adminPassword = env.ADMIN_PASSWORD || undefined;
  if (adminPassword !== undefined) {
    const weakness = passwordWeakness(adminPassword, { email: adminEmail });
    if (weakness) throw new ConfigError('ADMIN_PASSWORD', `breaks the password policy: ${weakness}`);
  }
  if ((adminEmail === undefined) !== (adminPassword === undefined)) {
    throw new ConfigError(adminEmail ? 'ADMIN_PASSWORD' : 'ADMIN_EMAIL', 'ADMIN_EMAIL and ADMIN_PASSWORD go together');
  }
  const provisioningApiKey = env.PROVISIONING_API_KEY || undefined;
  if (provisioningApiKey !== undefined && provisioningApiKey.length < 16) {
    throw new ConfigError('PROVISIONING_API_KEY', 'must be at least 16 characters');
  }

  const metricsToken = env.METRICS_TOKEN || undefined;
  if (metricsToken !== undefined && metricsToken.length < 16) {
    throw new ConfigError('METRICS_TOKEN', 'must be at least 16 characters');
  }

  const refreshTokenTtlSeconds = intVar(env, 'REFRESH_TOKEN_TTL', 30 * 86_400, 300, 365 * 86_400);
  const sessionMaxAgeSeconds = intVar(env, 'SESSION_MAX_AGE', 90 * 86_400, 300, 3650 * 86_400);
  if (sessionMaxAgeSeconds < refreshTokenTtlSeconds) {
    throw new ConfigError('SESSION_MAX_AGE', `must be at least REFRESH_TOKEN_TTL (${refreshTokenTtlSeconds})`);
  }

  const mailFrom = env.MAIL_FROM || 'gatehouse@localhost';
  if (!SENDER.test(mailFrom.replace(/^.*<([^>]+)>\s*$/, '$1')))
    throw new ConfigError('MAIL_FROM', 'is not an email address');

  const rateLimitsRaw = (env.RATE_LIMITS || 'on').toLowerCase();
  if (rateLimitsRaw !== 'on' && rateLimitsRaw !== 'off') throw new ConfigError('RATE_LIMITS', 'must be "on" or "off"');

  const logLevel = env.LOG_LEVEL || 'info';
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new ConfigError('LOG_LEVEL', 'must be one of fatal, error, warn, info, debug, trace, silent');
  }

  const activityTrackingRaw = (env.ACTIVITY_TRACKING || 'on').toLowerCase();
  if (activityTrackingRaw !== 'on' && activityTrackingRaw !== 'off')
    throw new ConfigError('ACTIVITY_TRACKING', 'must be "on" or "off"');

  const allowLoopbackRaw = (env.INTEGRATIONS_ALLOW_LOOPBACK || 'on').toLowerCase();
  if (allowLoopbackRaw !== 'on' && allowLoopbackRaw !== 'off')
    throw new ConfigError('INTEGRATIONS_ALLOW_LOOPBACK', 'must be "on" or "off"');

  const masterKey = parseMasterKey(env, dataDir, databaseUrl === undefined);

  return {
    port,
    host,
    databaseUrl,
    dataDir,
    publicUrl,
    issuer,
    tokenAudience,
    provisioningApiKey,
    metricsToken,
    adminEmail,
    adminPassword,
    masterKey,
    masterKeyPrevious: parsePreviousMasterKeys(env.MASTER_KEY_PREVIOUS, masterKey),
    smtpUrl: urlVar(env, 'SMTP_URL', ['smtp:', 'smtps:']),
    mailFrom,
    trustProxy: parseTrustProxy(env.TRUST_PROXY),
    corsOrigins: parseCorsOrigins(env.CORS_ORIGINS),
    redisUrl: urlVar(env, 'REDIS_URL', ['redis:', 'rediss:']),
    rateLimits: rateLimitsRaw === 'on',
    lockoutThreshold: intVar(env, 'LOCKOUT_THRESHOLD', 5, 1, 1000),
    lockoutWindowSeconds: intVar(env, 'LOCKOUT_WINDOW', 15 * 60, 1, 7 * 86_400),
    lockoutDurationSeconds: intVar(env, 'LOCKOUT_DURATION', 15 * 60, 1, 7 * 86_400),
    accessTokenTtlSeconds: intVar(env, 'ACCESS_TOKEN_TTL', 900, 30, 86_400),
    refreshTokenTtlSeconds,
    sessionMaxAgeSeconds,
    bulkMaxItems: intVar(env, 'BULK_MAX_ITEMS', 10_000, 1, 1_000_000),
    bodyLimitBytes: intVar(env, 'BODY_LIMIT', 10 * 1024 * 1024, 1024, 1024 * 1024 * 1024),
    logLevel,
    activityTracking: activityTrackingRaw === 'on',
    activityBufferSize: intVar(env, 'ACTIVITY_BUFFER_SIZE', 10_000, 100, 1_000_000),
    activityBatchSize: intVar(env, 'ACTIVITY_BATCH_SIZE', 500, 1, 2_000),
    activityRetentionMonths: intVar(env, 'ACTIVITY_RETENTION_MONTHS', 12, 0, 1200),
    integrationHealthIntervalSeconds: intVar(env, 'INTEGRATION_HEALTH_INTERVAL_SECONDS', 300, 0, 7 * 86_400),
    integrationHistoryDays: intVar(env, 'INTEGRATION_HISTORY_DAYS', 30, 0, 36_500),
    integrationsAllowLoopback: allowLoopbackRaw === 'on',
    mailOutboxRetentionDays: intVar(env, 'MAIL_OUTBOX_RETENTION_DAYS', 30, 0, 36_500),
    downstreamSyncIntervalSeconds: intVar(env, 'DOWNSTREAM_SYNC_INTERVAL_SECONDS', 300, 0, 7 * 86_400),
  };
}
