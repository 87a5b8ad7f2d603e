import { AppError, normaliseError } from '../../platform/http/errors.js';

/** RFC 7644 §3.12: the error response schema. */
export const SCIM_ERROR_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:Error';

/** RFC 7644 §3.12 Table 9, the `scimType` values for 400 (and 409 uniqueness). */
export type ScimType =
  | 'invalidFilter'
  | 'tooMany'
  | 'uniqueness'
  | 'mutability'
  | 'invalidSyntax'
  | 'invalidPath'
  | 'noTarget'
  | 'invalidValue'
  | 'invalidVers'
  | 'sensitive';

/** A refusal that carries its SCIM `scimType`; elsewhere it renders as problem+json like any AppError. */
export class ScimError extends AppError {
  readonly scimType: ScimType | undefined;
  constructor(status: number, scimType: ScimType | undefined, detail: string, code = scimType ?? 'scim_error') {
    super(status, code, detail);
    this.name = 'ScimError';
    this.scimType = scimType;
  }
}

export const scimErrors = {
  invalidFilter: (detail: string) => new ScimError(400, 'invalidFilter', detail),
  invalidSyntax: (detail: string) => new ScimError(400, 'invalidSyntax', detail),
  invalidValue: (detail: string) => new ScimError(400, 'invalidValue', detail),
  invalidPath: (detail: string) => new ScimError(400, 'invalidPath', detail),
  noTarget: (detail: string) => new ScimError(400, 'noTarget', detail),
  mutability: (detail: string) => new ScimError(400, 'mutability', detail),
  tooMany: (detail: string) => new ScimError(400, 'tooMany', detail),
  /** RFC 7643 §4.3: a manager is another User, here one of the same organization. */
  unknownManager: (value: string) =>
    new ScimError(
      400,
      'invalidValue',
      `"manager.value" must be the id of a user of this organization; ${JSON.stringify(value.slice(0, 64))} is none.`,
    ),
  uniqueness: (detail: string) => new ScimError(409, 'uniqueness', detail),
  /** RFC 7644 §3.7.1: bulkId references that cannot be resolved because they form a cycle. */
  circularReference: (cycle: string) =>
    new ScimError(
      409,
      undefined,
      `The bulkId references ${cycle} form a cycle, so none of these operations can run.`,
      'bulk_circular_reference',
    ),
  /** RFC 7644 §3.11: a service provider that does not support /Me answers 501. */
  meUnsupported: () =>
    new ScimError(
      501,
      undefined,
      '/Me is not supported: SCIM is authenticated with an API key, which stands for no user.',
      'me_unsupported',
    ),
  notFound: (what: string, id: string) => new ScimError(404, undefined, `${what} ${id} not found.`, 'not_found'),
  /** RFC 7232 §3.1 (If-Match holds no current version) or §3.2 (If-None-Match holds it, or `*`). */
  preconditionFailed: (header: 'If-Match' | 'If-None-Match' = 'If-Match') =>
    new ScimError(
      412,
      undefined,
      header === 'If-Match'
        ? 'The resource changed: its version does not match If-Match.'
        : 'The resource is at a version If-None-Match names (or If-None-Match is *), so the request was not applied.',
      'precondition_failed',
    ),
  /** RFC 7644 §4: a filter on a discovery endpoint is refused, so no client takes the full list as its matches. */
  discoveryFilter: () =>
    new ScimError(
      403,
      undefined,
      'Discovery endpoints take no filter (RFC 7644 §4): ask without it for the whole list.',
      'filter_unsupported',
    ),
  platformKey: () =>
    new ScimError(
      403,
      undefined,
      'SCIM acts within one organization: use an API key scoped to an organization, not a platform-wide key.',
      'platform_key_refused',
    ),
};

/** The RFC 7644 §3.12 error document. `status` is a string there. */
export interface ScimErrorDocument {
  schemas: [typeof SCIM_ERROR_SCHEMA];
  status: string;
  scimType?: ScimType;
  detail: string;
}

/** AppError codes of other modules that have a natural scimType. */
const SCIM_TYPE_OF_CODE: Record<string, ScimType> = {
  validation_failed: 'invalidValue',
  invalid_profile: 'invalidValue',
  organization_not_found: 'invalidValue',
};

/**
 * The provisioning core and the database name fields as columns (scim_external_id, first_name); a
 * SCIM client knows them by their SCIM attribute names, and column names never reach it.
 */
const SCIM_NAME_OF_FIELD: Record<string, string> = {
  email: 'emails',
  username: 'userName',
  scim_external_id: 'externalId',
  external_id: 'externalId',
  first_name: 'name.givenName',
  last_name: 'name.familyName',
  is_active: 'active',
  status: 'active',
  attributes: 'the attributes kept for SCIM',
};

/** 409s of the core and of unique indexes, by code, in SCIM words. */
const UNIQUENESS_DETAIL: Record<string, string> = {
  username_taken: 'Another user of this organization already has this userName.',
  email_taken: 'Another user of this organization already has this email address as their primary "emails" value.',
  scim_external_id_taken: 'Another resource of this organization already has this externalId.',
  external_id_taken: 'Another user already has this externalId.',
  duplicate: 'Another resource already has this value.',
};

/**
 * The platform's 415 names application/json, the media type of the rest of the API; SCIM's own is
 * application/scim+json (RFC 7644 §3.1), and both are taken under /scim/v2.
 */
const MEDIA_TYPE_DETAIL = 'Send the body as application/scim+json (application/json is accepted too).';

/** A detail that names SCIM attributes only, for an error raised outside the SCIM module. */
function scimDetailOf(error: AppError): string {
  const uniqueness = UNIQUENESS_DETAIL[error.code];
  if (uniqueness) return uniqueness;
  if (error.code === 'unsupported_media_type') return MEDIA_TYPE_DETAIL;
  if (!error.errors?.length) return error.message;
  const fields = error.errors
    .map((e) => `${Object.hasOwn(SCIM_NAME_OF_FIELD, e.field) ? SCIM_NAME_OF_FIELD[e.field] : e.field}: ${e.message}`)
    .join('; ');
  // The core's validation message is itself the list of fields, in column names: said again here.
  return error.code === 'validation_failed' ? `The request is not valid. ${fields}` : `${error.message} ${fields}`;
}

/** List parameters that are integers, said so when one is refused. */
const INTEGER_PARAMETERS = new Set(['count', 'startIndex']);

/**
 * A query string refused by a route's schema. Every query parameter is text, so a value of another
 * type is a parameter given more than once (`?count=1&count=2` reads as a list): said so, naming the
 * parameter, where the validator would only say "must be string".
 */
function queryParameterDetail(err: unknown): string | undefined {
  const { validation, validationContext } = err as { validation?: unknown; validationContext?: string };
  if (validationContext !== 'querystring' || !Array.isArray(validation)) return undefined;
  const repeated = validation.find(
    (e): e is { instancePath: string } =>
      (e as { keyword?: string }).keyword === 'type' &&
      typeof (e as { instancePath?: unknown }).instancePath === 'string',
  );
  if (!repeated) return undefined;
  const name = repeated.instancePath.replace(/^\//, '');
  return INTEGER_PARAMETERS.has(name)
    ? `"${name}" must be given once, as an integer in decimal digits.`
    : `"${name}" must be given once.`;
}

/**
 * Renders any thrown value as a SCIM error; `error` is what it was normalised to (its headers, and
 * with `unexpected`, what the caller logs).
 */
export function toScimError(err: unknown): {
  status: number;
  document: ScimErrorDocument;
  error: AppError;
  unexpected: boolean;
} {
  const { error, unexpected } = normaliseError(err);
  let scimType: ScimType | undefined;
  if (error instanceof ScimError) scimType = error.scimType;
  else if (error.status === 409) scimType = 'uniqueness';
  else if (error.status === 400) scimType = SCIM_TYPE_OF_CODE[error.code] ?? 'invalidValue';
  const detail = error instanceof ScimError ? error.message : (queryParameterDetail(err) ?? scimDetailOf(error));
  // A body that is not JSON, or not an object, is a syntax error of the request (RFC 7644 §3.12).
  const fromBody = (err as { validationContext?: string }).validationContext === 'body';
  if (error.code === 'validation_failed' && (fromBody || error.errors?.some((e) => e.message.includes('JSON')))) {
    scimType = 'invalidSyntax';
  }
  return {
    status: error.status,
    error,
    unexpected,
    document: {
      schemas: [SCIM_ERROR_SCHEMA],
      status: String(error.status),
      ...(scimType ? { scimType } : {}),
      detail,
    },
  };
}

/**
 * A message's `schemas` must list its schema URN (RFC 7643 §3: "schemas" is required); URNs compare
 * case-insensitively (RFC 7643 §2.1). Otherwise 400 invalidSyntax.
 */
export function requireSchema(schemas: unknown, urn: string): void {
  const lower = urn.toLowerCase();
  if (Array.isArray(schemas) && schemas.some((s) => typeof s === 'string' && s.toLowerCase() === lower)) return;
  throw scimErrors.invalidSyntax(`"schemas" is required and must list ${urn}.`);
}
