import type { Db } from '../../platform/db/client.js';
import { isUuid } from '../../platform/db/columns.js';
import { forbiddenKeyIn } from '../../platform/http/json-body.js';
import { bodyItemProblem } from '../../platform/http/text-guard.js';
import { lockOrganizationUserRows, type UserRow } from '../provisioning/provisioning.lookup.js';
import type { ProvisionItem } from '../provisioning/provisioning.service.js';
import { MAX_BULK_OPERATIONS } from './scim.discovery.js';
import { ScimError, scimErrors, toScimError } from './scim.errors.js';
import { createScimGroup, deleteScimGroup, groupVersion, patchScimGroup, replaceScimGroup } from './scim.groups.js';
import { readPatchBody } from './scim.patch.js';
import { fromScimUser, patchedUserFields, userVersion } from './scim.user-mapping.js';
import { provisionItemOf, provisionScimUsers, type WriteContext } from './scim.user-writes.js';
import { assertVersion, deleteScimUser, newManagerOf, unknownManagers } from './scim.users.js';

/**
 * RFC 7644 §3.7 Bulk. Operations run in request order, except that an operation referencing
 * `bulkId:x` (in its path or data, a PATCH's value filters included) runs after the operation with
 * bulkId x, even one that comes later in the request (§3.7.2: the service provider MUST try to
 * resolve it); operations whose references form a cycle fail with 409 (§3.7.1). Results come back in request order. Consecutive user writes
 * (POST /Users, PUT and PATCH /Users/{id}) that reference no bulkId go to the provisioning core as
 * one set-based call, which is what makes a large bulk fast, in one transaction holding the users
 * they change locked from the version check to the write. With `failOnErrors` = n, processing
 * stops once n operations failed: a batch is first planned (the core's dry run), so operations
 * after the n-th error are never written.
 */

export const BULK_REQUEST_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:BulkRequest';
export const BULK_RESPONSE_SCHEMA = 'urn:ietf:params:scim:api:messages:2.0:BulkResponse';

interface BulkOperation {
  /** Position in the request: results are answered in that order. */
  index: number;
  method: 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  bulkId: string | undefined;
  path: string;
  data: unknown;
  version: string | undefined;
  /**
   * Why the operation fails alone without running: text no field can store (NUL, half a surrogate
   * pair), nesting too deep to store, or a `__proto__` key (a whole body is refused for those).
   */
  refusal: string | undefined;
  /** The bulkIds its path and data reference. */
  references: string[];
}

interface BulkResult {
  method: string;
  bulkId?: string;
  location?: string;
  version?: string;
  status: string;
  response?: unknown;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function readBulkBody(body: unknown): { operations: BulkOperation[]; failOnErrors: number | undefined } {
  if (!isObject(body)) throw scimErrors.invalidSyntax('The body must be a BulkRequest object.');
  if (!Array.isArray(body.schemas) || !body.schemas.includes(BULK_REQUEST_SCHEMA)) {
    throw scimErrors.invalidSyntax(`"schemas" must be ["${BULK_REQUEST_SCHEMA}"].`);
  }
  const failOnErrors = body.failOnErrors;
  if (failOnErrors !== undefined && (!Number.isInteger(failOnErrors) || (failOnErrors as number) < 1)) {
    throw scimErrors.invalidValue('"failOnErrors" must be a positive integer.');
  }
  const raw = body.Operations;
  if (!Array.isArray(raw) || raw.length === 0)
    throw scimErrors.invalidSyntax('"Operations" must be a non-empty array.');
  if (raw.length > MAX_BULK_OPERATIONS) {
    throw new ScimError(
      413,
      undefined,
      `A bulk request takes at most ${MAX_BULK_OPERATIONS} operations.`,
      'too_many_operations',
    );
  }
  const seen = new Set<string>();
  const operations = raw.map((op, i): BulkOperation => {
    if (!isObject(op)) throw scimErrors.invalidSyntax(`Operation ${i} must be an object.`);
    // First, so that no walk below meets a `__proto__` key or unbounded nesting.
    const unsafe = forbiddenKeyIn(op, { proto: true, constructor: false }) ?? bodyItemProblem(op, 2);
    const refusal = unsafe && `"Operations[${i}]${unsafe.field ? `.${unsafe.field}` : ''}": ${unsafe.message}`;
    const method = typeof op.method === 'string' ? op.method.toUpperCase() : '';
    if (method !== 'POST' && method !== 'PUT' && method !== 'PATCH' && method !== 'DELETE') {
      throw scimErrors.invalidSyntax(`Operation ${i}: "method" must be POST, PUT, PATCH or DELETE.`);
    }
    if (typeof op.path !== 'string' || !op.path.startsWith('/')) {
      throw scimErrors.invalidSyntax(`Operation ${i}: "path" must be a path such as "/Users".`);
    }
    const bulkId = op.bulkId;
    if (bulkId !== undefined && (typeof bulkId !== 'string' || bulkId === '')) {
      throw scimErrors.invalidSyntax(`Operation ${i}: "bulkId" must be a non-empty string.`);
    }
    if (method === 'POST' && bulkId === undefined)
      throw scimErrors.invalidSyntax(`Operation ${i}: POST needs a "bulkId".`);
    if (typeof bulkId === 'string') {
      if (seen.has(bulkId)) throw scimErrors.invalidSyntax(`bulkId "${bulkId}" is used twice.`);
      seen.add(bulkId);
    }
    if (op.version !== undefined && typeof op.version !== 'string') {
      throw scimErrors.invalidSyntax(`Operation ${i}: "version" must be a string.`);
    }
    return {
      index: i,
      method,
      bulkId,
      path: op.path,
      data: op.data,
      version: op.version as string | undefined,
      refusal,
      references: refusal
        ? []
        : [
            ...new Set([
              ...bulkIdOfPath(op.path),
              ...bulkIdsIn(op.data),
              ...(method === 'PATCH' ? bulkIdsInPatchPaths(op.data) : []),
            ]),
          ],
    };
  });
  return { operations, failOnErrors: failOnErrors as number | undefined };
}

/**
 * A failed operation's result. Its `location` is the resource it addressed (RFC 7644 §3.7.3: every
 * result has one but a failed POST's), when the path names one without a bulkId.
 */
function errorResult(op: BulkOperation, err: unknown, baseUrl: string): BulkResult {
  const { status, document } = toScimError(err);
  const addressed =
    op.method !== 'POST' && /^\/(Users|Groups)\/[^/]+\/?$/.test(op.path) && !op.path.includes('bulkId:');
  return {
    method: op.method,
    ...(op.bulkId ? { bulkId: op.bulkId } : {}),
    ...(addressed ? { location: `${baseUrl}${op.path.replace(/\/$/, '')}` } : {}),
    status: String(status),
    response: document,
  };
}

/** The x of every `bulkId:x` string in data (resolveBulkIds replaces them). */
function bulkIdsIn(value: unknown, found: string[] = []): string[] {
  if (typeof value === 'string') {
    if (value.startsWith('bulkId:')) found.push(value.slice(7));
  } else if (Array.isArray(value)) {
    for (const v of value) bulkIdsIn(v, found);
  } else if (isObject(value)) {
    for (const v of Object.values(value)) bulkIdsIn(v, found);
  }
  return found;
}

/**
 * A quoted `"bulkId:x"` in a PATCH operation's path, as in `members[value eq "bulkId:x"]`: it is
 * operation data too (RFC 7644 §3.7.2), though not a whole string value.
 */
const QUOTED_BULK_ID = /"bulkId:([^"]*)"/g;

/** The PATCH operations of a PatchOp body, as readPatchBody finds them (anything else: none). */
/** The key a PatchOp body holds its operations under (clients vary the case). */
function operationsKey(data: Record<string, unknown>): 'Operations' | 'operations' {
  return Array.isArray(data.Operations) ? 'Operations' : 'operations';
}

function patchOperationsOf(data: unknown): Record<string, unknown>[] {
  if (!isObject(data)) return [];
  const operations = data[operationsKey(data)];
  return Array.isArray(operations) ? operations.filter(isObject) : [];
}

/** The x of every `"bulkId:x"` in the paths of a PatchOp body (resolvePatchPaths replaces them). */
function bulkIdsInPatchPaths(data: unknown): string[] {
  return patchOperationsOf(data).flatMap((op) =>
    typeof op.path === 'string' ? [...op.path.matchAll(QUOTED_BULK_ID)].map((m) => m[1] as string) : [],
  );
}

/** A PatchOp body with every `"bulkId:x"` in its paths replaced; an unknown one refuses the operation. */
function resolvePatchPaths(data: unknown, ids: Map<string, string>): unknown {
  if (!isObject(data) || patchOperationsOf(data).length === 0) return data;
  const key = operationsKey(data);
  const operations = (data[key] as unknown[]).map((op) =>
    isObject(op) && typeof op.path === 'string'
      ? {
          ...op,
          path: op.path.replace(QUOTED_BULK_ID, (quoted) => `"${resolveBulkIds(quoted.slice(1, -1), ids) as string}"`),
        }
      : op,
  );
  return { ...data, [key]: operations };
}

/** The x of a path `/Users/bulkId:x` or `/Groups/bulkId:x` (resolvePath replaces it). */
function bulkIdOfPath(path: string): string[] {
  const id = /^\/(?:Users|Groups)\/([^/]+)\/?$/.exec(path)?.[1];
  return id?.startsWith('bulkId:') ? [id.slice(7)] : [];
}

/**
 * The order operations run in: the request's, each operation preceded by the not yet run operations
 * whose bulkIds it references (a depth-first walk, so a request already in order keeps its order).
 * An operation on a cycle of references is returned in `cycles` with the cycle spelt out.
 */
function inDependencyOrder(operations: BulkOperation[]): {
  order: BulkOperation[];
  cycles: Map<BulkOperation, string>;
} {
  const cycles = new Map<BulkOperation, string>();
  if (operations.every((op) => op.references.length === 0)) return { order: operations, cycles };
  const byBulkId = new Map<string, BulkOperation>();
  for (const op of operations) if (op.bulkId !== undefined) byBulkId.set(op.bulkId, op);
  const visiting: BulkOperation[] = [];
  const placed = new Set<BulkOperation>();
  const order: BulkOperation[] = [];
  const place = (op: BulkOperation) => {
    visiting.push(op);
    for (const reference of op.references) {
      // A bulkId no operation carries is refused when the operation runs.
      const dependency = byBulkId.get(reference);
      if (dependency === undefined || placed.has(dependency)) continue;
      const start = visiting.indexOf(dependency);
      if (start === -1) {
        place(dependency);
        continue;
      }
      const cycle = visiting.slice(start);
      const spelt = [...cycle, dependency].map((o) => o.bulkId).join(' → ');
      for (const member of cycle) if (!cycles.has(member)) cycles.set(member, spelt);
    }
    visiting.pop();
    placed.add(op);
    order.push(op);
  };
  for (const op of operations) if (!placed.has(op)) place(op);
  return { order, cycles };
}

/** Replaces `bulkId:x` strings by the id created for x; an unknown one refuses the operation. */
function resolveBulkIds(value: unknown, ids: Map<string, string>): unknown {
  if (typeof value === 'string' && value.startsWith('bulkId:')) {
    const id = ids.get(value.slice(7));
    if (!id) {
      throw scimErrors.invalidValue(
        `"${value}" names no resource created in this request: no operation has that bulkId, or it failed.`,
      );
    }
    return id;
  }
  if (Array.isArray(value)) return value.map((v) => resolveBulkIds(v, ids));
  if (isObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = resolveBulkIds(v, ids);
    return out;
  }
  return value;
}

function resolvePath(path: string, ids: Map<string, string>): { type: 'Users' | 'Groups'; id: string | undefined } {
  const match = /^\/(Users|Groups)(?:\/([^/]+))?\/?$/.exec(path);
  if (!match) throw scimErrors.invalidPath(`"${path}" is not /Users, /Users/{id}, /Groups or /Groups/{id}.`);
  const raw = match[2];
  const id = raw?.startsWith('bulkId:') ? (resolveBulkIds(raw, ids) as string) : raw;
  return { type: match[1] as 'Users' | 'Groups', id };
}

/** Whether an operation can join a set-based user batch. */
function batchable(op: BulkOperation): boolean {
  if (op.refusal !== undefined || op.method === 'DELETE' || op.references.length > 0) return false;
  return op.method === 'POST' ? /^\/Users\/?$/.test(op.path) : /^\/Users\/[^/]+\/?$/.test(op.path);
}

const BATCH = 1000;

/** Runs a bulk request; answers the BulkResponse. */
export async function scimBulk(ctx: WriteContext, body: unknown, baseUrl: string) {
  const { operations: received, failOnErrors } = readBulkBody(body);
  const { order: operations, cycles } = inDependencyOrder(received);
  const ids = new Map<string, string>();
  const results: { index: number; result: BulkResult }[] = [];
  let errors = 0;
  let i = 0;
  while (i < operations.length && (failOnErrors === undefined || errors < failOnErrors)) {
    const batch: BulkOperation[] = [];
    const targets = new Set<string>();
    while (i + batch.length < operations.length && batch.length < BATCH) {
      const op = operations[i + batch.length] as BulkOperation;
      if (!batchable(op)) break;
      const target = op.path.split('/')[2]?.toLowerCase();
      if (target) {
        if (targets.has(target)) break;
        targets.add(target);
      }
      batch.push(op);
    }
    if (batch.length > 0) {
      const allowed = failOnErrors === undefined ? undefined : failOnErrors - errors;
      const done = await runUserBatch(ctx, batch, ids, baseUrl, allowed);
      for (const [k, result] of done.entries()) results.push({ index: (batch[k] as BulkOperation).index, result });
      errors += done.filter((r) => Number(r.status) >= 400).length;
      i += batch.length;
      if (done.length < batch.length) break;
      continue;
    }
    const op = operations[i] as BulkOperation;
    const cycle = cycles.get(op);
    const result =
      op.refusal !== undefined
        ? errorResult(op, scimErrors.invalidValue(op.refusal), baseUrl)
        : cycle !== undefined
          ? errorResult(op, scimErrors.circularReference(cycle), baseUrl)
          : await runOne(ctx, op, ids, baseUrl).catch((err) => errorResult(op, err, baseUrl));
    if (Number(result.status) >= 400) errors++;
    results.push({ index: op.index, result });
    i++;
  }
  results.sort((a, b) => a.index - b.index);
  return { schemas: [BULK_RESPONSE_SCHEMA], Operations: results.map((r) => r.result) };
}

/**
 * One set-based call for a run of user writes, in one transaction. Returns one result per operation
 * performed; with `allowed` errors left, it stops at the operation that uses up the allowance.
 */
function runUserBatch(
  ctx: WriteContext,
  batch: BulkOperation[],
  ids: Map<string, string>,
  baseUrl: string,
  allowed: number | undefined,
): Promise<BulkResult[]> {
  return ctx.db.transaction((tx) => writeUserBatch({ ...ctx, db: tx as unknown as Db }, batch, ids, baseUrl, allowed));
}

async function writeUserBatch(
  ctx: WriteContext,
  batch: BulkOperation[],
  ids: Map<string, string>,
  baseUrl: string,
  allowed: number | undefined,
): Promise<BulkResult[]> {
  const existingIds = batch.flatMap((op) => (op.method === 'POST' ? [] : [op.path.split('/')[2] as string]));
  // The users PATCHed and PUT, locked to the end of the transaction (one statement, in id order): each
  // version is checked (RFC 7644 §3.7: an operation's `version` is its If-Match), each patch applied
  // and each row planned from the row as the last writer left it, and no other write lands before
  // this one; rows of another organization are not locked at all. The core plans with the locked
  // rows instead of reading them again.
  const known = await lockOrganizationUserRows(ctx.db, existingIds.filter(isUuid), ctx.organizationId);
  const current = new Map(known.map((u) => [u.id, u]));
  const managers: (string | undefined)[] = [];
  const prepared: ({ item: ProvisionItem } | { error: unknown })[] = batch.map((op, k) => {
    try {
      const id = op.method === 'POST' ? undefined : (op.path.split('/')[2] as string).toLowerCase();
      const user = id === undefined ? undefined : current.get(id);
      if (id !== undefined && !user) throw scimErrors.notFound('User', id);
      if (user) assertVersion(user, { ifMatch: op.version });
      const fields =
        op.method === 'PATCH' && user
          ? patchedUserFields(user, readPatchBody(op.data), baseUrl)
          : fromScimUser(op.data);
      managers[k] = newManagerOf(user, fields);
      return { item: provisionItemOf(user, fields) };
    } catch (error) {
      return { error };
    }
  });
  // The managers the batch sets, checked in one query; an operation naming no user of the
  // organization fails alone.
  const unknown = await unknownManagers(
    ctx.db,
    ctx.organizationId,
    managers.filter((m) => m !== undefined),
  );
  managers.forEach((manager, k) => {
    if (manager !== undefined && unknown.has(manager)) prepared[k] = { error: scimErrors.unknownManager(manager) };
  });

  let cutoff = batch.length;
  if (allowed !== undefined) {
    // Plan first, so nothing after the allowed number of errors is written.
    const planned = await coreOutcomes(ctx, prepared, true, known);
    let failures = 0;
    for (let k = 0; k < batch.length; k++) {
      if (!planned[k]?.ok) failures++;
      if (failures >= allowed) {
        cutoff = k + 1;
        break;
      }
    }
  }
  const outcomes = await coreOutcomes(ctx, prepared.slice(0, cutoff), false, known);
  return batch.slice(0, cutoff).map((op, k) => {
    const outcome = outcomes[k] as CoreOutcome;
    if (!outcome.ok) return errorResult(op, outcome.error, baseUrl);
    const id = outcome.id;
    if (op.bulkId) ids.set(op.bulkId, id);
    return {
      method: op.method,
      ...(op.bulkId ? { bulkId: op.bulkId } : {}),
      location: `${baseUrl}/Users/${id}`,
      version: userVersion({ updatedAt: outcome.updatedAt }),
      status: op.method === 'POST' ? '201' : '200',
    };
  });
}

type CoreOutcome = { ok: true; id: string; updatedAt: Date } | { ok: false; error: unknown };

async function coreOutcomes(
  ctx: WriteContext,
  prepared: ({ item: ProvisionItem } | { error: unknown })[],
  dryRun: boolean,
  known: UserRow[],
): Promise<CoreOutcome[]> {
  const items: ProvisionItem[] = [];
  const slots: number[] = [];
  prepared.forEach((p, k) => {
    if ('item' in p) {
      slots.push(k);
      items.push(p.item);
    }
  });
  const outcomes = items.length > 0 ? await provisionScimUsers(ctx, items, { dryRun, known }) : [];
  const out: CoreOutcome[] = prepared.map((p) => ({ ok: false, error: 'error' in p ? p.error : undefined }));
  outcomes.forEach((o, n) => {
    const slot = slots[n] as number;
    out[slot] = o.ok
      ? { ok: true, id: o.user.id ?? '', updatedAt: o.user.updatedAt ?? new Date() }
      : { ok: false, error: o.error };
  });
  return out;
}

/** An operation on its own: group writes, deletes, and user writes that reference bulkIds. */
async function runOne(
  ctx: WriteContext,
  op: BulkOperation,
  ids: Map<string, string>,
  baseUrl: string,
): Promise<BulkResult> {
  const { type, id } = resolvePath(op.path, ids);
  const resolved = resolveBulkIds(op.data, ids);
  const data = op.method === 'PATCH' ? resolvePatchPaths(resolved, ids) : resolved;
  const base = { method: op.method, ...(op.bulkId ? { bulkId: op.bulkId } : {}) };
  if (op.method === 'POST' && id !== undefined) throw scimErrors.invalidPath('POST goes to /Users or /Groups.');
  if (op.method !== 'POST' && id === undefined) throw scimErrors.invalidPath(`${op.method} needs /${type}/{id}.`);
  const target = id as string;
  if (op.method === 'DELETE') {
    if (type === 'Users') await deleteScimUser(ctx, target, { ifMatch: op.version });
    else await deleteScimGroup(ctx, target, { ifMatch: op.version });
    return { ...base, location: `${baseUrl}/${type}/${target}`, status: '204' };
  }
  if (type === 'Groups') {
    const group =
      op.method === 'POST'
        ? await createScimGroup(ctx, data)
        : op.method === 'PUT'
          ? await replaceScimGroup(ctx, target, data, { ifMatch: op.version })
          : await patchScimGroup(ctx, target, readPatchBody(data), { ifMatch: op.version }, baseUrl);
    if (op.bulkId) ids.set(op.bulkId, group.id);
    return {
      ...base,
      location: `${baseUrl}/Groups/${group.id}`,
      version: groupVersion(group),
      status: op.method === 'POST' ? '201' : '200',
    };
  }
  const [result] = await runUserBatch(
    ctx,
    [{ ...op, data, path: id ? `/Users/${id}` : '/Users' }],
    ids,
    baseUrl,
    undefined,
  );
  return result as BulkResult;
}
