import type { Static, TObject, TSchema } from '@fastify/type-provider-typebox';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { commonErrors } from './errors.js';

/** What every partial update answers, for the routes' OpenAPI descriptions. */
export const PARTIAL_UPDATE_RULES =
  'A field the object shows but this body does not take (its id, code, …) answers 400 naming it when its value ' +
  'differs from the stored one (sent back unchanged, it is ignored); timestamps and counts the server keeps are ' +
  'ignored, and so are unknown fields unless the body schema is closed (`additionalProperties: false`), which ' +
  'refuses them by name; a body with nothing to change answers the object as it is, unwritten.';

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
 *   answers 400 naming it when the body gives it another value than the stored one; checked before
 *   the schema, which would let it through to be ignored. Sent back unchanged it is ignored: clients
 *   PATCH back the object they read (Django REST Framework ignores read-only fields in input).
 *   Timestamps and counts the server keeps are not compared (a copy read a moment ago may already
 *   be stale). Both are dropped before the schema, so that a closed one does not refuse them;
 * - any other field the body schema does not declare is refused by a closed schema, dropped by an
 *   open one (as in every body), so the write and its audit event see only what they can change;
 * - a body left with nothing to change answers the object as it stands: no write, no audit event,
 *   `updated_at` untouched. (An empty body `{}` is still refused by the schema's `minProperties`.)
 */
export function partialUpdate<P extends TObject>(route: PartialUpdateRoute<P>) {
  const writable = new Set(Object.keys(route.body.properties));
  const shown = Object.keys(route.view.properties).filter((field) => !writable.has(field));
  const readOnly = [
    ...Object.entries(route.view.properties)
      .filter(([field, schema]) => !writable.has(field) && !isKeptByServer(schema))
      .map(([field]) => field),
    ...(route.alsoReadOnly ?? []).filter((field) => !writable.has(field)),
  ];
  // The object as read for the comparison, kept for the "nothing to change" answer of the same request.
  const read = new WeakMap<FastifyRequest, unknown>();
  const current = async (request: FastifyRequest) => {
    if (!read.has(request)) read.set(request, await route.current(request as FastifyRequest<{ Params: Static<P> }>));
    return read.get(request);
  };
  return {
    preValidation: async (request: FastifyRequest, reply: FastifyReply) => {
      const body = request.body;
      if (body === null || typeof body !== 'object' || Array.isArray(body)) return;
      const sent = body as Record<string, unknown>;
      const named = readOnly.filter((field) => Object.hasOwn(sent, field));
      if (named.length > 0) {
        // Read only when a read-only field is there; a missing object answers its 404 here.
        const stored = (await current(request)) as Record<string, unknown>;
        // As JSON, so that a stored Date equals the timestamp text it is shown as.
        const refused = named.filter((field) => JSON.stringify(stored[field]) !== JSON.stringify(sent[field]));
        if (refused.length > 0) throw commonErrors.readOnlyFields(refused, route.via);
      }
      const given = Object.keys(sent).length;
      for (const field of shown) delete sent[field];
      // Only what the object shows, sent back: nothing to change (an empty body is the schema's to refuse).
      if (given > 0 && Object.keys(sent).length === 0) return reply.send(await current(request));
    },
    preHandler: async (request: FastifyRequest, reply: FastifyReply) => {
      const body = request.body as Record<string, unknown>;
      for (const field of Object.keys(body)) if (!writable.has(field)) delete body[field];
      if (Object.keys(body).length > 0) return;
      return reply.send(await current(request));
    },
  };
}

/** A timestamp or a count in a view: values the server moves on by itself (date-time strings, numbers). */
function isKeptByServer(schema: TSchema): boolean {
  const members = (schema.anyOf as TSchema[] | undefined) ?? [schema];
  return members.some((m) => m.format === 'date-time' || m.type === 'integer' || m.type === 'number');
}
