import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseDate, parseDateTime } from './date-time.js';

const iso = (d: Date | undefined) => d?.toISOString();

describe('parseDateTime', () => {
  it('reads RFC 3339 date-times with any offset form ajv-formats lets through', () => {
    expect(iso(parseDateTime('2026-01-31T12:30:00Z'))).toBe('2026-01-31T12:30:00.000Z');
    expect(iso(parseDateTime('2026-01-31t12:30:00.123456z'))).toBe('2026-01-31T12:30:00.123Z');
    expect(iso(parseDateTime('2026-01-31 12:30:00+01:00'))).toBe('2026-01-31T11:30:00.000Z');
    expect(iso(parseDateTime('2026-01-31T12:30:00+0130'))).toBe('2026-01-31T11:00:00.000Z');
    // `new Date` answers Invalid Date for an hours-only offset.
    expect(iso(parseDateTime('2026-01-31T12:30:00-01'))).toBe('2026-01-31T13:30:00.000Z');
  });

  it('reads a leap second at the end of a UTC day as the next second, and refuses one elsewhere', () => {
    expect(iso(parseDateTime('2016-12-31T23:59:60Z'))).toBe('2017-01-01T00:00:00.000Z');
    expect(iso(parseDateTime('2016-12-31T22:59:60-01:00'))).toBe('2017-01-01T00:00:00.000Z');
    expect(parseDateTime('2016-12-31T12:59:60Z')).toBeUndefined();
  });

  it('accepts the years 0001 to 9999 and nothing beyond, judged on the instant', () => {
    expect(iso(parseDateTime('0001-01-01T00:00:00Z'))).toBe('0001-01-01T00:00:00.000Z');
    expect(iso(parseDateTime('0099-06-01T00:00:00Z'))).toBe('0099-06-01T00:00:00.000Z');
    expect(iso(parseDateTime('9999-12-31T23:59:59.999999Z'))).toBe('9999-12-31T23:59:59.999Z');
    for (const text of [
      '0000-01-01T00:00:00Z',
      '0000-12-31T23:59:59Z',
      // Year 1 in the text, year 0 once the offset is applied, and year 10000 the other way.
      '0001-01-01T00:00:00+01:00',
      '9999-12-31T23:59:59-01:00',
      '9999-12-31T23:59:60Z',
    ]) {
      expect(parseDateTime(text), text).toBeUndefined();
    }
  });

  it('refuses what is not a calendar date-time', () => {
    for (const text of [
      'yesterday',
      '2026-01-31',
      '2026-01-31T12:30:00',
      '2026-02-29T00:00:00Z',
      '2026-13-01T00:00:00Z',
      '2026-01-31T24:00:00Z',
      '2026-01-31T12:60:00Z',
      '2026-01-31T12:30:00+24:00',
      '+010000-01-01T00:00:00Z',
      '-000001-01-01T00:00:00Z',
      '2026-01-31T12:30Z',
    ]) {
      expect(parseDateTime(text), text).toBeUndefined();
    }
    expect(iso(parseDateTime('2024-02-29T00:00:00Z'))).toBe('2024-02-29T00:00:00.000Z');
  });

  it('reads a value without an offset as UTC only when asked to (xsd:dateTime)', () => {
    expect(iso(parseDateTime('2026-01-31T12:30:00', { zoneOptional: true }))).toBe('2026-01-31T12:30:00.000Z');
  });

  it('gives back every instant of the years 0001 to 9999 that toISOString writes', () => {
    fc.assert(
      fc.property(
        fc.date({
          min: new Date('0001-01-01T00:00:00.000Z'),
          max: new Date('9999-12-31T23:59:59.999Z'),
          noInvalidDate: true,
        }),
        (d) => {
          expect(parseDateTime(d.toISOString())?.getTime()).toBe(d.getTime());
        },
      ),
    );
  });
});

describe('parseDate', () => {
  it('reads a date as its midnight UTC, in the years 0001 to 9999', () => {
    expect(iso(parseDate('0001-01-01'))).toBe('0001-01-01T00:00:00.000Z');
    expect(iso(parseDate('9999-12-31'))).toBe('9999-12-31T00:00:00.000Z');
    for (const text of ['0000-01-01', '2026-02-30', '2026-00-10', '2026-1-1', '2026-01-31T00:00:00Z']) {
      expect(parseDate(text), text).toBeUndefined();
    }
  });
});
