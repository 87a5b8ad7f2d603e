import { describe, expect, it } from 'vitest';
import { idTimeOf, newId } from './ids.js';

describe('newId', () => {
  it('answers distinct, increasing UUIDv7s across many refills of its random words', () => {
    const ids = Array.from({ length: 5000 }, () => newId());
    expect(new Set(ids).size).toBe(ids.length);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect([...ids].sort()).toEqual(ids);
    // The timestamp field is the current time in milliseconds.
    const millis = Number.parseInt(ids.at(-1)?.replace(/-/g, '').slice(0, 12) ?? '', 16);
    expect(Math.abs(millis - Date.now())).toBeLessThan(5000);
  });

  it('draws the random part from fresh words: no two ids share their last 62 bits', () => {
    const tails = new Set(Array.from({ length: 3000 }, () => newId().slice(19)));
    expect(tails.size).toBe(3000);
  });
});

describe('idTimeOf', () => {
  it('reads the millisecond a UUIDv7 was made, and nothing from other uuids', () => {
    const before = Date.now();
    const id = newId();
    const at = idTimeOf(id)?.getTime() ?? 0;
    expect(at).toBeGreaterThanOrEqual(before);
    expect(at - Date.now()).toBeLessThan(1000);
    expect(idTimeOf('0190a000-0000-7000-8000-000000000000')?.toISOString()).toBe('2024-07-11T04:14:32.960Z');
    expect(idTimeOf('6f1c2b8e-4c1a-4d4e-9a6b-1f2e3d4c5b6a')).toBeUndefined();
    expect(idTimeOf('not-a-uuid')).toBeUndefined();
  });
});
