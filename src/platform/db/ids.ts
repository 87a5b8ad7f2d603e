import { randomFillSync } from 'node:crypto';
import { V7Generator } from 'uuidv7';

/**
 * Row ids are UUIDv7: time-ordered, so inserts append to the primary key's index and keyset cursors
 * follow creation order. The library's `uuidv7()` refills 8 words from the system's random source
 * at a time, about every fourth id; at thousands of ids a second (request rows, a bulk call's users
 * and their audit events) that system call stood out in CPU profiles (for request tracking it was
 * the largest part of what tracking cost the request path). This source refills 1,024
 * words at once, from the same cryptographic generator.
 */
const generator = new V7Generator(
  (() => {
    const words = new Uint32Array(1024);
    let next = words.length;
    return {
      nextUint32(): number {
        if (next === words.length) {
          randomFillSync(words);
          next = 0;
        }
        return words[next++] as number;
      },
    };
  })(),
);

/** A new UUIDv7, as text. */
export function newId(): string {
  return generator.generate().toString();
}

/** A new UUIDv7 as its 16 bytes, for a binary COPY. */
export function newIdBytes(): Uint8Array {
  return generator.generate().bytes;
}

/**
 * The smallest UUIDv7 of a moment: ids are time-ordered (their first 48 bits are the Unix time in
 * milliseconds), so "older than" is an id range on the primary key and needs no index of its own.
 */
export function firstIdAt(ms: number): string {
  const hex = Math.max(0, Math.floor(ms)).toString(16).padStart(12, '0');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7000-8000-000000000000`;
}

const V7 = /^([0-9a-f]{8})-([0-9a-f]{4})-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;

/**
 * The millisecond a UUIDv7 was made (RFC 9562 §5.7: its first 48 bits), or undefined for any other
 * uuid. The generator keeps ids increasing, so this may run a little ahead of the clock, never behind.
 */
export function idTimeOf(id: string): Date | undefined {
  const m = V7.exec(id);
  return m ? new Date(Number.parseInt(`${m[1]}${m[2]}`, 16)) : undefined;
}
