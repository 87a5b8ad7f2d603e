import { availableParallelism } from 'node:os';
import { type Algorithm, hash, verify } from '@node-rs/argon2';
import { AppError } from '../http/errors.js';
import { argon2PhcOf, verifyLegacyPassword } from './legacy-hashes.js';

// OWASP Password Storage Cheat Sheet, argon2id: m=19 MiB, t=2, p=1 (~13 ms per hash on this hardware).
// `Algorithm` is an ambient const enum, which isolatedModules cannot inline; 2 is Argon2id.
const ARGON2ID = 2 as Algorithm;
const OPTIONS = { algorithm: ARGON2ID, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

// More concurrent hashes than cores only lengthens every login and multiplies memory (19 MiB each);
// past the cap, callers queue, and a caller that cannot start within the deadline gets a 503.
const MAX_CONCURRENT = Math.max(1, availableParallelism());
const QUEUE_DEADLINE_MS = 2_000;
// A queue this long cannot drain within the deadline anyway (~13 ms per hash per core).
const MAX_QUEUED = MAX_CONCURRENT * 200;
const RETRY_AFTER_SECONDS = '2';

let running = 0;
const queue: Array<() => void> = [];

function serverBusy(): AppError {
  return new AppError(503, 'server_busy', 'The server is busy checking passwords; retry shortly.', {
    headers: { 'retry-after': RETRY_AFTER_SECONDS },
  });
}

function acquireSlot(): Promise<void> {
  if (running < MAX_CONCURRENT) {
    running++;
    return Promise.resolve();
  }
  if (queue.length >= MAX_QUEUED) return Promise.reject(serverBusy());
  return new Promise<void>((resolve, reject) => {
    const grant = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      const at = queue.indexOf(grant);
      if (at !== -1) queue.splice(at, 1);
      reject(serverBusy());
    }, QUEUE_DEADLINE_MS);
    queue.push(grant);
  });
}

function releaseSlot(): void {
  // The slot passes straight to the next waiter, so `running` never dips and lets a newcomer jump the queue.
  const next = queue.shift();
  if (next) next();
  else running--;
}

async function withSlot<T>(work: () => Promise<T>): Promise<T> {
  await acquireSlot();
  try {
    return await work();
  } finally {
    releaseSlot();
  }
}

/**
 * Passwords are hashed in Unicode normal form NFKC (NIST SP 800-63B, 5.1.1.2): "é" typed as one code
 * point on one keyboard and as "e" plus a combining accent on another is the same password.
 */
function normalized(password: string): string {
  return password.normalize('NFKC');
}

/** Hashes a password (NFKC) with argon2id on the libuv thread pool; 503 server_busy when the hash queue is full. */
export function hashPassword(password: string): Promise<string> {
  return withSlot(() => hash(normalized(password), OPTIONS));
}

/**
 * Checks a password against a stored hash: an argon2 PHC string (the parameters come from the hash,
 * also in Django's `argon2$…` form), in NFKC and then, if that differs, as typed (hashes made before
 * normalisation, Django's), or an imported legacy hash (legacy-hashes.ts), as typed, as Django checks
 * it. A hash this code cannot read is a non-match, never an error.
 */
export function verifyPassword(storedHash: string, password: string): Promise<boolean> {
  return withSlot(async () => {
    const phc = argon2PhcOf(storedHash);
    if (phc === undefined) return verifyLegacyPassword(storedHash, password);
    try {
      const form = normalized(password);
      if (await verify(phc, form)) return true;
      // A hash made before passwords were normalised holds the text as it was typed.
      return form !== password && (await verify(phc, password));
    } catch {
      return false;
    }
  });
}

let dummyHash: Promise<string> | undefined;

/**
 * Spends the same time as checking a real account's password and always answers false: used for
 * unknown users and accounts without a password, so response time does not reveal which accounts exist.
 */
export async function verifyDummyPassword(password: string): Promise<false> {
  await verifyPassword(await prepareDummyHash(), password);
  return false;
}

/**
 * Computes the dummy hash ahead of the first login, so the first unknown account does not take
 * a hash longer than a known one. Hashed once per process with the same parameters as real hashes.
 */
export function prepareDummyHash(): Promise<string> {
  dummyHash ??= hash('gatehouse dummy password, never a real credential', OPTIONS);
  return dummyHash;
}

/** True when a stored hash was made with other parameters than today's, so a login should upgrade it. */
export function needsRehash(storedHash: string): boolean {
  return !storedHash.startsWith(
    `$argon2id$v=19$m=${OPTIONS.memoryCost},t=${OPTIONS.timeCost},p=${OPTIONS.parallelism}$`,
  );
}
