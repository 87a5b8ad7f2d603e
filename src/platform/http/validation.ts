import { Ajv } from 'ajv';
import addFormats from 'ajv-formats';
import type { FastifySchemaCompiler } from 'fastify';

// Bodies are validated strictly (a number is not silently turned into a string); query strings and
// path parameters arrive as text, so they are coerced to the declared types.
const strict = new Ajv({
  allErrors: true,
  useDefaults: true,
  removeAdditional: true,
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
for (const ajv of [strict, coercing]) addFormats.default(ajv);

export const validatorCompiler: FastifySchemaCompiler<object> = ({ schema, httpPart }) =>
  (httpPart === 'body' ? strict : coercing).compile(schema);
