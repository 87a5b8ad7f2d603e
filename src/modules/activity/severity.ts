/** What Gatehouse stores and answers. */
export const SEVERITIES = ['info', 'warning', 'critical'] as const;
export type Severity = (typeof SEVERITIES)[number];

/** Seed 002's names, understood wherever a severity is given (tracker calls, filters). */
export const SEED_SEVERITIES = ['low', 'normal', 'high'] as const;
export type SeedSeverity = (typeof SEED_SEVERITIES)[number];

const FROM_SEED: Record<SeedSeverity, Severity> = { low: 'info', normal: 'info', high: 'warning' };

export function storedSeverity(severity: Severity | SeedSeverity): Severity {
  return (FROM_SEED as Record<string, Severity>)[severity] ?? (severity as Severity);
}
