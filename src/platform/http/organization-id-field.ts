import type { FastifyRequest } from 'fastify';
import { commonErrors } from './errors.js';

/** What a create body naming its organization by id is told. */
export const ORGANIZATION_ID_REFUSED =
  'Not taken here: name the organization by its code in `organization` (the answers show both).';

/**
 * preValidation of the create routes whose body takes `organization` (a code): a body that also or
 * instead gives `organization_id`, as every answer shows it, is refused naming that field. Left to the
 * open schema it was dropped in silence, and the object went to the caller's organization or became
 * global (a role offered to every organization). Refused rather than read as a second spelling, so
 * a body has one way to name its organization and there is no precedence to get wrong, as the closed
 * integration body and the partial updates ("cannot be changed") already answer. Checked after the
 * credential and before the schema: it looks up nothing, so it tells no caller what exists.
 */
export async function refuseOrganizationId(request: FastifyRequest): Promise<void> {
  const body = request.body;
  if (body === null || typeof body !== 'object' || Array.isArray(body)) return;
  if (!Object.hasOwn(body, 'organization_id')) return;
  throw commonErrors.validation(
    [{ field: 'organization_id', message: ORGANIZATION_ID_REFUSED }],
    'organization_id is not taken: give the organization’s code in `organization`.',
  );
}
