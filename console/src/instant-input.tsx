import { DateTimeInput, type DateTimeInputProps } from 'react-admin';

/**
 * The browser's local date and time as an RFC 3339 instant, the form the API takes: the input's own
 * value (`2027-01-01T10:00`) names no zone, and the server refuses it. Empty stays empty (null).
 */
export function toInstant(value: string | null | undefined): string | null {
  if (!value) return null;
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** A date-time input whose value goes to the server: in forms and in list filters alike. */
export function InstantInput(props: DateTimeInputProps) {
  return <DateTimeInput parse={toInstant} {...props} />;
}
