import { commonErrors, DATE_TIME_MESSAGE } from './errors.js';

/**
 * Date-times read from requests, in one place: the `date-time` and `date` formats of every route
 * schema (validation.ts), the values they validated (`instantOf`), SCIM filter values and list
 * cursors all go through `parseDateTime` / `parseDate`.
 *
 * Only instants from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z are accepted, checked on the
 * instant (an offset can carry 0001-01-01T00:00:00+01:00 into year 0), because:
 * - PostgreSQL's timestamptz has no year 0 (the year before 1 is 1 BC) and does not read the
 *   expanded years JavaScript writes beyond 9999 (`+010000-01-01T…`): either failed the query, a 500;
 * - RFC 3339 §5.6 writes the year in four digits, so 0000 is the only such year left out;
 * - JavaScript's Date (±275,760 years) represents every instant in between.
 */
const MIN_INSTANT = -62_135_596_800_000; // 0001-01-01T00:00:00.000Z
const MAX_INSTANT = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z

/** RFC 3339 §5.6 date-time (`T`, `t` or a space between date and time), offsets as ajv-formats reads them. */
const DATE_TIME =
  /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$/;
const DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

function daysIn(year: number, month: number): number {
  if (month === 2) return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0) ? 29 : 28;
  return [4, 6, 9, 11].includes(month) ? 30 : 31;
}

/** Milliseconds since the epoch of a UTC calendar time; years below 100 stay as written (Date.UTC would add 1900). */
function utc(year: number, month: number, day: number, hour = 0, minute = 0, second = 0, ms = 0): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, ms);
  return d.getTime();
}

function withinRange(time: number): Date | undefined {
  return time >= MIN_INSTANT && time <= MAX_INSTANT ? new Date(time) : undefined;
}

/**
 * The instant of an RFC 3339 date-time, or undefined when it is not one or lies outside years
 * 0001–9999. With `zoneOptional` (xsd:dateTime, RFC 7643 §2.3.5), a value without an offset is
 * read as UTC. A leap second (23:59:60 UTC, which RFC 3339 allows and Date cannot hold) is read as
 * the next second begins, as PostgreSQL reads it. Digits below the millisecond are dropped.
 */
export function parseDateTime(text: string, options: { zoneOptional?: boolean } = {}): Date | undefined {
  const m = DATE_TIME.exec(text);
  if (!m) return undefined;
  const n = (group: number) => Number(m[group] ?? 0);
  const [year, month, day, hour, minute, second] = [n(1), n(2), n(3), n(4), n(5), n(6)];
  const fraction = m[7];
  const zulu = m[8];
  const sign = m[9];
  if (!zulu && !sign && !options.zoneOptional) return undefined;
  const offsetHours = n(10);
  const offsetMinutes = n(11);
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 60 || offsetHours > 23 || offsetMinutes > 59) return undefined;
  const ms = fraction ? Number(fraction.slice(0, 3).padEnd(3, '0')) : 0;
  const offset = (sign === '-' ? -1 : 1) * (offsetHours * 60 + offsetMinutes) * 60_000;
  const time = utc(year, month, day, hour, minute, second, ms) - offset;
  if (second === 60) {
    // RFC 3339 §5.7: a leap second ends a UTC day, 23:59:60Z.
    const before = new Date(time - 1000);
    if (before.getUTCHours() !== 23 || before.getUTCMinutes() !== 59) return undefined;
  }
  return withinRange(time);
}

/** Midnight UTC of an RFC 3339 full-date, or undefined when it is not one or lies outside years 0001–9999. */
export function parseDate(text: string): Date | undefined {
  const m = DATE.exec(text);
  if (!m) return undefined;
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (month < 1 || month > 12 || day < 1 || day > daysIn(year, month)) return undefined;
  return withinRange(utc(year, month, day));
}

/**
 * The instant of a query or body value its schema validated as `date-time` or `date` (a date alone
 * is its midnight UTC). Never `new Date(text)`: it does not read every offset RFC 3339 allows.
 */
export function instantOf(text: string, field: string): Date {
  const at = parseDateTime(text) ?? parseDate(text);
  if (!at) throw commonErrors.validation([{ field, message: DATE_TIME_MESSAGE }]);
  return at;
}
