import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';
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
}

export const validatorCompiler: FastifySchemaCompiler<object> = ({ schema, httpPart }) =>
  (httpPart === 'body' ? strict : coercing).compile(schema);
