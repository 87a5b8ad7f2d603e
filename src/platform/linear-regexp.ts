import type { CodeOptions } from 'ajv';
import { RE2JS } from 're2js';

/**
 * A regular expression engine for Ajv (`code: { regExp: linearRegExp }`) that matches in time linear
 * in the input: RE2 semantics, so no backtracking. JavaScript's own engine backtracks, and a pattern
 * such as `^(a+)+$` against a few dozen characters holds the event loop for minutes; any schema whose
 * patterns come from a client must be compiled with this engine.
 *
 * The pattern is JavaScript syntax, translated for RE2 (`\u00e9`, `(?<name>…)`). What RE2 cannot
 * match in linear time (backreferences, lookaround) throws a `SyntaxError` at compile time, which
 * Ajv passes on from `compile()`.
 */
export const linearRegExp: NonNullable<CodeOptions['regExp']> = Object.assign(
  (pattern: string, _flags: string) => {
    let compiled: RE2JS;
    try {
      compiled = RE2JS.compile(RE2JS.translateRegExp(pattern));
    } catch (err) {
      throw new UnsupportedPatternError(pattern, (err as Error).message);
    }
    return {
      test: (input: string) => compiled.test(input),
      // Ajv shares one compiled pattern per distinct toString() within a schema.
      toString: () => `/${pattern}/`,
    };
  },
  // Only used by Ajv's standalone code generation, which is never used here.
  { code: 'linearRegExp' },
);

/** A pattern RE2 refuses; names the pattern so the caller can say which one. */
export class UnsupportedPatternError extends SyntaxError {
  constructor(
    readonly pattern: string,
    reason: string,
  ) {
    super(`pattern ${JSON.stringify(pattern)} is not supported (${reason.replace(/^error parsing regexp: /, '')})`);
    this.name = 'UnsupportedPatternError';
  }
}
