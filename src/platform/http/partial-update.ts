import type { Static, TObject } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { commonErrors } from './errors.js';

/** What every partial update answers, for the routes' OpenAPI descriptions. */
export const PARTIAL_UPDATE_RULES =
  'A field the object shows but this body does not take (its id, timestamps, …) answers 400 naming it; ' +
  'other unknown fields are ignored; a body with nothing to change answers the object as it is, unwritten.';

export interface PartialUpdateRoute<P extends TObject> {
  /** The route's path parameters, which `current` reads. */
  params?: P;
  /** The route's body schema: the fields it can change. */
  body: TObject;
  /** The object as the route answers it: its fields the body does not declare cannot be changed here. */
  view: TObject;
  /** Further fields refused by name, that the view does not show (a password, an identity provider's subject). */
  alsoReadOnly?: readonly string[];
  /** Narrows the refusal's wording: "cannot be changed through the profile". */
  via?: string;
  /** The object as it stands, as the route's GET answers it (404 and scoping included). */
  current: (request: FastifyRequest<{ Params: Static<P> }>) => Promise<unknown>;
}

/**
 * The hooks every partial update (PATCH) of an object runs, so that they all answer alike:
 * - a field the object shows but the route cannot change (an id, an immutable code, a timestamp, …)
 *   answers 400 naming it; checked before the schema, which would let it through to be ignored;
 * - any other field the body schema does not declare is dropped, as in every body, so the write and
 *   its audit event see only what they can change;
 * - a body left with nothing to change answers the object as it stands: no write, no audit event,
 *   `updated_at` untouched. (An empty body `{}` is still refused by the schema's `minProperties`.)
 */
export function partialUpdate<P extends TObject>(route: PartialUpdateRoute<P>) {
  const writable = new Set(Object.keys(route.body.properties));
  const readOnly = [
    ...Object.keys(route.view.properties).filter((field) => !writable.has(field)),
    ...(route.alsoReadOnly ?? []).filter((field) => !writable.has(field)),
  ];
  return {
    preValidation: async (request: FastifyRequest) => {
      const body = request.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) return;
      const refused = readOnly.filter((field) => Object.hasOwn(body, field));
      if (refused.length > 0) throw commonErrors.readOnlyFields(refused, route.via);
    },
    preHandler: async (request: FastifyRequest, reply: FastifyReply) => {
      const body = request.body as Record<string, unknown>;
      for (const field of Object.keys(body)) if (!writable.has(field)) delete body[field];
      if (Object.keys(body).length > 0) return;
      return reply.send(await route.current(request as FastifyRequest<{ Params: Static<P> }>));
    },
  };
}
