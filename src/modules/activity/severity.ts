/** What Gatehouse stores and answers. */
export type Severity = 'info' | 'warning' | 'critical';

/** Seed 002's names, understood wherever a severity is given (tracker calls, filters). */
export type SeedSeverity = 'low' | 'normal' | 'high';

const FROM_SEED: Record<SeedSeverity, Severity> = { low: 'info', normal: 'info', high: 'warning' };

export function storedSeverity(severity: Severity | SeedSeverity): Severity {
  return (FROM_SEED as Record<string, Severity>)[severity] ?? (severity as Severity);
}
