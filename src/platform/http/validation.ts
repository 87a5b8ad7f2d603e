import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';
import { isEmailAddress } from '../email-address.js';
import { parseDate, parseDateTime } from './date-time.js';

// Bodies are validated strictly (a number is not silently turned into a string); query strings and
// path parameters arrive as text, so they are coerced to the declared types. A body schema that
// closes an object (`additionalProperties: false`) refuses a field it does not know, naming it: a
// misspelt credential or setting dropped in silence would answer success for a change not made.
// Objects left open take extra fields, as the seeds' serializers do.
const strict = new Ajv({
  allErrors: true,
  useDefaults: true,
  removeAdditional: false,
  coerceTypes: false,
  strict: false,
});
const coercing = new Ajv({
  allErrors: true,
  useDefaults: true,
  removeAdditional: true,
  coerceTypes: 'array',
  strict: false,
});
for (const ajv of [strict, coercing]) {
  addFormats.default(ajv);
  // ajv-formats checks the text only: year 0000, a leap second or a `+01` offset passed, and then
  // failed in the database or in `new Date` as a 500. These read the instant and bound it.
  ajv.addFormat('date-time', { type: 'string', validate: (text: string) => parseDateTime(text) !== undefined });
  ajv.addFormat('date', { type: 'string', validate: (text: string) => parseDate(text) !== undefined });
  // ajv-formats' address is ASCII throughout; Django's clients send domains such as bücher.example.
  ajv.addFormat('email', { type: 'string', validate: isEmailAddress });
}

type Validate = ReturnType<typeof coercing.compile>;

/**
 * Query strings spell booleans as their clients do: Python's requests sends `True` for True. Ajv
 * coerces only `true` and `false`, so the declared boolean parameters are read case-insensitively.
 */
function withCaselessBooleans(schema: { properties?: Record<string, { type?: unknown }> }, validate: Validate) {
  const names = Object.entries(schema.properties ?? {}).flatMap(([name, p]) => (p.type === 'boolean' ? [name] : []));
  if (names.length === 0) return validate;
  const caseless = ((data: unknown) => {
    if (typeof data === 'object' && data !== null) {
      const query = data as Record<string, unknown>;
      for (const name of names) {
        const value = query[name];
        if (typeof value !== 'string') continue;
        const lower = value.toLowerCase();
        if (lower === 'true' || lower === 'false') query[name] = lower;
      }
    }
    return validate(data);
  }) as Validate;
  // Fastify reads the errors from the function it called.
  Object.defineProperty(caseless, 'errors', { get: () => validate.errors });
  return caseless;
}

export const validatorCompiler: FastifySchemaCompiler<object> = ({ schema, httpPart }) => {
  if (httpPart === 'body') return strict.compile(schema);
  const validate = coercing.compile(schema);
  return httpPart === 'querystring' ? withCaselessBooleans(schema as never, validate) : validate;
};
