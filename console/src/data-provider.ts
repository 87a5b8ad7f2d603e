import { type DataProvider, type GetListParams, HttpError, type Identifier, type RaRecord } from 'react-admin';
import { api, type Problem, problemMessage, query } from './http';

/** Where each console resource lives in the REST API. */
const paths: Record<string, string> = {
  users: '/api/v1/users/',
  organizations: '/api/v1/organizations/',
  roles: '/api/v1/roles/',
  permissions: '/api/v1/permissions/',
  modules: '/api/v1/modules/',
  'api-keys': '/api/v1/api-keys/',
  activities: '/api/v1/activities/',
  'activity-stats': '/api/v1/activity-stats/',
  'active-users': '/api/v1/activities/active-users/',
  'user-sessions': '/api/v1/user-sessions/',
  'user-types': '/api/v1/user-types/',
  integrations: '/api/v1/integrations/',
  'mail-outbox': '/api/v1/mail-outbox/',
  // The role picker lists its own way (below); the role it holds is read by id here.
  'assignable-roles': '/api/v1/roles/',
};

/** Lists below one record: the API nests them under the parent's path. */
const nestedPaths: Record<string, (parentId: string) => string> = {
  'integration-health-checks': (id) => `/api/v1/integrations/${id}/health-checks/`,
  'integration-logs': (id) => `/api/v1/integrations/${id}/logs/`,
};

/**
 * The columns each list's API sorts by (`sort=field` or `sort=-field`); the lists mark every other
 * column `sortable={false}`, so a header offers only an order the answer follows.
 */
const sortParams: Record<string, Record<string, string>> = {
  users: { email: 'email', date_joined: 'date_joined' },
};

function pathOf(resource: string): string {
  const path = paths[resource];
  if (!path) throw new Error(`Unknown resource ${resource}`);
  return path;
}

interface Page<T> {
  results: T[];
  next?: string | null;
}

/** The largest page the API answers (a larger `limit` is read as this). */
const API_MAX_PAGE_SIZE = 500;

/**
 * The API pages with opaque cursors, react-admin with page numbers: the cursor that leads to each
 * page is remembered per list (resource, filters, sort, page size), page number → cursor (the first
 * page needs none). A page whose cursor is unknown (a reloaded or shared URL) is walked to from the
 * nearest known page before it, at most this many pages: further, the list goes back to page 1 and
 * says why, as it does for a page past the end (react-admin goes to page 1 on a page without rows).
 */
const MAX_WALKED_PAGES = 50;
const cursors = new Map<string, Map<number, string>>();

function listKey(resource: string, params: GetListParams): string {
  return JSON.stringify([resource, params.filter, params.sort, params.pagination?.perPage]);
}

type ListNotice = (message: string) => void;
const listNoticeListeners = new Set<ListNotice>();

/** Calls `listener` with what a list wants said (a page it could not show); answers the unsubscribe. */
export function onListNotice(listener: ListNotice): () => void {
  listNoticeListeners.add(listener);
  return () => listNoticeListeners.delete(listener);
}

function noticeList(message: string): void {
  for (const listener of listNoticeListeners) listener(message);
}

/**
 * The cursor of `page` (undefined for the first), walked to from the nearest page before it whose
 * cursor is known, each request as large as the API answers but ending on a page boundary, so each
 * `next` it yields starts a page and is remembered. Null when the list ends before that page or the
 * page is too far to walk to.
 */
async function cursorTo(
  known: Map<number, string>,
  path: string,
  filter: Record<string, unknown>,
  page: number,
  perPage: number,
): Promise<string | undefined | null> {
  if (page <= 1) return undefined;
  const cached = known.get(page);
  if (cached !== undefined) return cached;
  let from = page - 1;
  while (from > 1 && !known.has(from)) from--;
  if (page - from > MAX_WALKED_PAGES) {
    noticeList(`Page ${page} is too far to reach from a link (at most ${MAX_WALKED_PAGES} pages): back to page 1.`);
    return null;
  }
  const pagesPerRequest = Math.max(1, Math.floor(API_MAX_PAGE_SIZE / perPage));
  let cursor = known.get(from);
  while (from < page) {
    const pages = Math.min(pagesPerRequest, page - from);
    const body = await api<Page<unknown>>(`${path}${query({ ...filter, limit: pages * perPage, cursor })}`);
    if (!body.next) {
      noticeList(`The list has no page ${page}: back to page 1.`);
      return null;
    }
    from += pages;
    cursor = body.next;
    known.set(from, cursor);
  }
  return cursor;
}

/** One page of a `{results, next}` list, found through the cursors remembered under `key`. */
async function cursorPage(
  key: string,
  path: string,
  filter: Record<string, unknown>,
  pagination: { page: number; perPage: number } | undefined,
) {
  const perPage = pagination?.perPage ?? 25;
  const page = pagination?.page ?? 1;
  const known = cursors.get(key) ?? new Map<number, string>();
  cursors.set(key, known);
  const cursor = await cursorTo(known, path, filter, page, perPage);
  if (cursor === null) return { data: [], pageInfo: { hasNextPage: false, hasPreviousPage: false } };
  const body = await api<Page<Record<string, unknown>>>(`${path}${query({ ...filter, limit: perPage, cursor })}`);
  const rows = body.results;
  const next = body.next ?? null;
  if (next) known.set(page + 1, next);
  return {
    // Rows without an id of their own: active users by user, statistics by period and organization.
    data: withIds(rows, (row) =>
      row.user_id !== undefined
        ? String(row.user_id)
        : row.period_start !== undefined
          ? `${row.period_start}/${row.organization_id ?? ''}`
          : JSON.stringify(row),
    ),
    pageInfo: { hasNextPage: next !== null, hasPreviousPage: page > 1 },
    // On the last page the count is known without a COUNT(*): the pager can then say "1-3 of 3".
    ...(next === null ? { total: (page - 1) * perPage + rows.length } : {}),
  };
}

/**
 * The pickers' resources. Permissions and modules are keyed by code, the value grants take. Roles to
 * assign are keyed by id: a code may name an organization's role and a global one alike, and the
 * assignment route takes an id as exactly that role. The catalog routes have no search, and the
 * catalog is small, so it is read whole (bounded) and searched here.
 */
const codeResources = {
  'permission-codes': '/api/v1/permissions/',
  'module-codes': '/api/v1/modules/',
} as const;
type CodeResource = keyof typeof codeResources;
type PickerResource = CodeResource | 'assignable-roles';
const MAX_CATALOG_PAGES = 20;

function isCodeResource(resource: string): resource is CodeResource {
  return resource in codeResources;
}

function isPickerResource(resource: string): resource is PickerResource {
  return isCodeResource(resource) || resource === 'assignable-roles';
}

async function readAll(path: string, filter: Record<string, unknown>): Promise<Record<string, unknown>[]> {
  const rows: Record<string, unknown>[] = [];
  let cursor: string | undefined;
  for (let page = 0; page < MAX_CATALOG_PAGES; page++) {
    const body = await api<Page<Record<string, unknown>>>(
      `${path}${query({ ...filter, limit: API_MAX_PAGE_SIZE, cursor })}`,
    );
    rows.push(...body.results);
    if (!body.next) break;
    cursor = body.next;
  }
  return rows;
}

/** The catalog of one picker for one filter. */
async function pickerCatalog(resource: PickerResource, filter: Record<string, unknown>): Promise<RaRecord[]> {
  // Every keystroke in a picker asks again; the catalog is read once a while, and afresh after any change.
  const { q: _q, ...rest } = filter;
  const key = `${resource} ${JSON.stringify(rest)}`;
  const cached = catalogCache.get(key);
  if (cached && cached.until > Date.now()) return cached.rows;
  const rows = resource === 'assignable-roles' ? readAssignableRoles(rest) : readCatalog(resource, rest);
  catalogCache.set(key, { until: Date.now() + CATALOG_TTL_MS, rows });
  rows.catch(() => catalogCache.delete(key));
  return rows;
}

const CATALOG_TTL_MS = 60_000;
const catalogCache = new Map<string, { until: number; rows: Promise<RaRecord[]> }>();

/** A code picker's catalog, first row per code. */
async function readCatalog(resource: CodeResource, filter: Record<string, unknown>): Promise<RaRecord[]> {
  const byCode = new Map<string, RaRecord>();
  for (const row of await readAll(codeResources[resource], filter)) {
    const code = String(row.code);
    if (!byCode.has(code)) byCode.set(code, { ...row, id: code });
  }
  return [...byCode.values()].sort((a, b) => String(a.id).localeCompare(String(b.id)));
}

/**
 * The roles the signed-in user may hand out to a user of `organization` (code): that organization's
 * and the global ones, one entry per role, by code and then the organization's before the global one.
 */
async function readAssignableRoles(filter: Record<string, unknown>): Promise<RaRecord[]> {
  const { organization, ...rest } = filter;
  const path = pathOf('assignable-roles');
  const wanted = { ...rest, assignable: true };
  const rows =
    typeof organization === 'string' && organization !== ''
      ? [
          ...(await readAll(path, { ...wanted, organization })),
          ...(await readAll(path, { ...wanted, organization: 'global' })),
        ]
      : await readAll(path, wanted);
  return (rows as RaRecord[]).sort(
    (a, b) =>
      String(a.code).localeCompare(String(b.code)) || Number(a.organization === null) - Number(b.organization === null),
  );
}

async function pickerChoices(resource: PickerResource, params: GetListParams) {
  const search = String(params.filter?.q ?? '')
    .trim()
    .toLowerCase();
  const all = await pickerCatalog(resource, params.filter ?? {});
  const matching = search
    ? all.filter((row) => `${row.code ?? row.id} ${row.name ?? ''}`.toLowerCase().includes(search))
    : all;
  const perPage = params.pagination?.perPage ?? 25;
  const page = params.pagination?.page ?? 1;
  return { data: matching.slice((page - 1) * perPage, page * perPage), total: matching.length };
}

/** Rows without an `id` of their own get one, as react-admin keys rows by id. */
function withIds<T extends Record<string, unknown>>(rows: T[], idOf: (row: T) => Identifier): (T & RaRecord)[] {
  return rows.map((row) => ({ ...row, id: (row.id as Identifier | undefined) ?? idOf(row) }));
}

/**
 * Only the fields the form changed, so a PATCH never rewrites what another admin just edited. Values
 * go as the inputs parsed them: null for an emptied nullable field, '' for a string one (StringInput).
 */
function changes(data: Record<string, unknown>, previous: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    if (JSON.stringify(value) !== JSON.stringify(previous[key])) out[key] = value;
  }
  return out;
}

/** A create form holds every input, filled or not: the API reads an absent field as "default", '' as a value. */
function filled(data: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(data).filter(([, value]) => value !== '' && value !== null && value !== undefined),
  );
}

/**
 * API fields whose form input has another name: an integration's secrets are typed into
 * `new_credentials` (its record's `credentials` holds only which are set).
 */
const inputNames: Record<string, (field: string) => string> = {
  integrations: (field) => field.replace(/^credentials\./, 'new_credentials.'),
};

/**
 * Whether a field of a refused write has an input in the form that sent it: the request carried a
 * value for it, and one an input holds (a text, a number, a list), not a group such as `credentials`.
 */
function hasInput(sent: Record<string, unknown>, field: string): boolean {
  let value: unknown = sent;
  for (const part of field.split('.')) {
    if (typeof value !== 'object' || value === null) return false;
    value = (value as Record<string, unknown>)[part];
  }
  return value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value));
}

/** The input of a refused field, by the fields the request carried (above), named as the form names them. */
function defaultInputOf(resource: string, sent: Record<string, unknown>): (field: string) => string | undefined {
  const inputName = inputNames[resource] ?? ((field: string) => field);
  return (field) => (hasInput(sent, field) ? inputName(field) : undefined);
}

/** A user type's schema is one JSON input: whatever the server finds wrong inside it is said there. */
function userTypeInputOf(sent: Record<string, unknown>): (field: string) => string | undefined {
  const fallback = defaultInputOf('user-types', sent);
  return (field) =>
    (field === 'schema' || field.startsWith('schema.')) && sent.schema !== undefined ? 'schema' : fallback(field);
}

/**
 * A profile refusal names the profile as the request held it: `profile.<path>` on the typed routes,
 * `attributes.profile.<path>` on the users routes. The form holds each key the type's schema names at
 * `attributes.profile.<key>`, an object or a list whole (a JSON input). Only keys the request carried
 * have an input.
 */
function profileInputOf(sent: Record<string, unknown>, profile: Record<string, unknown>) {
  const fallback = defaultInputOf('users', sent);
  return (field: string): string | undefined => {
    const prefix = ['attributes.profile.', 'profile.'].find((p) => field.startsWith(p));
    if (prefix === undefined) return fallback(field);
    const key = field.slice(prefix.length).split('.')[0] ?? '';
    return key in profile ? `attributes.profile.${key}` : undefined;
  };
}

/** The inputs of a create form's refused fields: a user's profile keys and a type's schema have their own. */
function createdInputOf(resource: string, sent: Record<string, unknown>) {
  if (resource === 'users') return profileInputOf(sent, profileOf(sent));
  return resource === 'user-types' ? userTypeInputOf(sent) : undefined;
}

/**
 * A write refused because the session ended. react-admin signs out on a 401 and then reports the
 * write as done ("Element updated"), losing the form: marked `keepPage`, the error is left to fail the
 * write (authProvider.checkError), so the page keeps what was typed and the next read signs out.
 */
function sessionEnded(error: HttpError): HttpError {
  return new HttpError('Your session has ended: sign in again (in another tab, to keep this page), then retry.', 401, {
    ...(error.body ?? {}),
    errors: {},
    keepPage: true,
  });
}

/** A write's error, a 401 marked as above. */
function writeError(error: unknown): unknown {
  return error instanceof HttpError && error.status === 401 ? sessionEnded(error) : error;
}

/**
 * A refused save as react-admin's form takes it: each field error under its input, and the server's
 * detail (with the errors no input can show) as `root.serverError`, the form's notification. An error
 * set on a field without an input would never be cleared, and the form would refuse every later Save.
 */
function formError(
  error: unknown,
  resource: string,
  sent: Record<string, unknown>,
  inputOf: (field: string) => string | undefined = defaultInputOf(resource, sent),
): unknown {
  if (!(error instanceof HttpError)) return error;
  if (error.status === 401) return sessionEnded(error);
  const problem = (error.body ?? {}) as Problem;
  if (!Array.isArray(problem.errors) || problem.errors.length === 0) {
    return new HttpError(error.message, error.status, { ...problem, errors: {} });
  }
  const errors: Record<string, unknown> = {};
  const elsewhere: string[] = [];
  for (const { field, message } of problem.errors) {
    const input = field ? inputOf(field) : undefined;
    if (input) errors[input] ??= message;
    else elsewhere.push(field && field !== 'body' ? `${field}: ${message}` : message);
  }
  errors.root = { serverError: [error.message, ...elsewhere].join(' ') };
  return new HttpError(error.message, error.status, { ...problem, errors });
}

/**
 * A list's refusal as its notification shows it (react-admin shows the error's message): the filter
 * the server refused named with its reason. A 401 is left as it is, to sign out.
 */
function listError(error: unknown): unknown {
  if (!(error instanceof HttpError) || error.status === 401) return error;
  return new HttpError(problemMessage(error), error.status, error.body);
}

/** Creates one record; a role assignment is posted under its user and keyed as the removal route takes it. */
async function create(resource: string, record: Record<string, unknown>): Promise<{ data: RaRecord }> {
  catalogCache.clear();
  if (resource === 'user-roles') {
    const { user_id, ...body } = record as { user_id: string; role: string; is_primary?: boolean };
    const row = await api<Record<string, unknown>>(`/api/v1/users/${encodeURIComponent(user_id)}/roles/`, {
      method: 'POST',
      body,
    });
    return { data: { ...row, id: `${user_id}/${row.role_id}` } as RaRecord };
  }
  if (resource === 'users') return { data: await createUser(record) };
  return { data: await api<RaRecord>(pathOf(resource), { method: 'POST', body: filled(record) }) };
}

type Profile = Record<string, unknown>;

function profileOf(record: Record<string, unknown> | undefined): Profile {
  const profile = (record?.attributes as { profile?: unknown } | undefined)?.profile;
  return typeof profile === 'object' && profile !== null && !Array.isArray(profile) ? (profile as Profile) : {};
}

/** A profile as a form filled it: an emptied input is no value. */
function filledProfile(profile: Profile): Profile {
  return Object.fromEntries(
    Object.entries(profile).filter(([, value]) => value !== null && value !== '' && value !== undefined),
  );
}

/** The profile keys the form changed, an emptied one as null (which removes it on the typed route). */
function profileChanges(profile: Profile, previous: Profile): Profile {
  const out: Profile = {};
  for (const key of new Set([...Object.keys(profile), ...Object.keys(previous)])) {
    const value = profile[key] === '' || profile[key] === undefined ? null : profile[key];
    if (JSON.stringify(value) !== JSON.stringify(previous[key] ?? null)) out[key] = value;
  }
  return out;
}

/** The type `code` as the server resolves it for a user of `organization`: its own first, then a global one. */
async function userTypeOf(organization: unknown, code: string): Promise<Record<string, unknown> | undefined> {
  const types = await readAll(paths['user-types'] as string, typeof organization === 'string' ? { organization } : {});
  return (
    types.find((type) => type.code === code && type.organization === organization) ??
    types.find((type) => type.code === code && type.organization === null)
  );
}

/** The keys of a profile its type's schema names (all of them when the schema names none). */
function keysOfType(profile: Profile, type: Record<string, unknown> | undefined): Profile {
  const properties = (type?.schema as { properties?: unknown } | undefined)?.properties;
  if (typeof properties !== 'object' || properties === null) return profile;
  return Object.fromEntries(Object.entries(profile).filter(([key]) => key in properties));
}

/**
 * A new user, with the profile of the type picked: the admin route takes the type and the profile in
 * `attributes` and checks it against the type's schema as the typed route does, and also takes the
 * status and flags the typed route has no field for.
 */
async function createUser(record: Record<string, unknown>): Promise<RaRecord> {
  const { attributes: _attributes, ...fields } = record;
  const body = filled(fields);
  if (typeof body.user_type === 'string') {
    const type = await userTypeOf(body.organization, body.user_type);
    const profile = keysOfType(filledProfile(profileOf(record)), type);
    if (Object.keys(profile).length > 0) body.attributes = { profile };
  }
  return api<RaRecord>(pathOf('users'), { method: 'POST', body });
}

/** The fields the typed route's partial update takes besides `profile`. */
const TYPED_USER_FIELDS = new Set(['email', 'username', 'first_name', 'last_name', 'status', 'is_active']);

/**
 * Saves the user form. A typed user's profile goes through the typed route (`/api/v1/users/<plural>/`),
 * the changed keys only (merged there onto the stored profile, so another administrator's change of
 * another key stays), with the fields that route takes in the same request; the rest (flags, password)
 * then through the admin route. A change of type goes through the admin route, the only one that
 * changes it, with the profile keys of the new type, checked there against its schema.
 */
async function updateUser(id: Identifier, data: Record<string, unknown>, previous: Record<string, unknown>) {
  const path = `${pathOf('users')}${encodeURIComponent(String(id))}/`;
  const { attributes: _attributes, ...body } = changes(data, previous);
  if ('user_type' in body) {
    const code = body.user_type;
    if (typeof code === 'string' && code !== '') {
      const type = await userTypeOf(previous.organization, code);
      body.attributes = {
        ...(previous.attributes as object),
        profile: keysOfType(filledProfile(profileOf(data)), type),
      };
    }
    try {
      return await api<RaRecord>(path, { method: 'PATCH', body });
    } catch (error) {
      throw formError(error, 'users', body, profileInputOf(body, profileOf(body)));
    }
  }
  const profile = profileChanges(profileOf(data), profileOf(previous));
  const code = previous.user_type;
  if (Object.keys(profile).length > 0 && typeof code === 'string') {
    const type = await userTypeOf(previous.organization, code);
    if (!type)
      throw new HttpError(`User type "${code}" is not readable: its profile cannot be saved.`, 400, { errors: {} });
    const typed: Record<string, unknown> = { profile };
    for (const field of TYPED_USER_FIELDS) {
      if (field in body) {
        typed[field] = body[field];
        delete body[field];
      }
    }
    try {
      await api(`${pathOf('users')}${encodeURIComponent(String(type.plural))}/${encodeURIComponent(String(id))}/`, {
        method: 'PATCH',
        body: typed,
      });
    } catch (error) {
      throw formError(error, 'users', typed, profileInputOf(typed, profile));
    }
  }
  if (Object.keys(body).length === 0) return api<RaRecord>(path);
  try {
    return await api<RaRecord>(path, { method: 'PATCH', body });
  } catch (error) {
    throw formError(error, 'users', body);
  }
}

/** The most ids the users list takes in one request. */
const MAX_IDS_PER_REQUEST = 100;

/**
 * Users by id through the list's `id` filter: one request for the users a page names, and a user the
 * caller may not read (another organization's superuser acting in theirs, a deleted one) is simply
 * absent, where reading each by id would answer 404. Their references show the id. A refusal of the
 * list itself leaves every reference so; an ended session still signs out.
 */
async function usersById(ids: Identifier[]): Promise<RaRecord[]> {
  const rows: RaRecord[] = [];
  const wanted = [...new Set(ids.map(String))];
  for (let at = 0; at < wanted.length; at += MAX_IDS_PER_REQUEST) {
    const chunk = wanted.slice(at, at + MAX_IDS_PER_REQUEST);
    try {
      const body = await api<Page<RaRecord>>(`${pathOf('users')}${query({ id: chunk, limit: chunk.length })}`);
      rows.push(...body.results);
    } catch (error) {
      if (error instanceof HttpError && error.status === 401) throw error;
      return rows;
    }
  }
  return rows;
}

// Records are the API's JSON objects; react-admin's per-call generics add nothing checkable here.
export const dataProvider = {
  async getList(resource, params) {
    if (isPickerResource(resource)) return pickerChoices(resource, params);
    const filter: Record<string, unknown> = { ...params.filter };
    if (filter.q !== undefined) {
      filter.search = filter.q;
      delete filter.q;
    }
    const sorts = sortParams[resource];
    if (sorts && params.sort) {
      // An order the API does not keep (a hand-edited URL) falls back to the list's first one.
      const sort = sorts[params.sort.field];
      filter.sort = sort === undefined ? Object.values(sorts)[0] : params.sort.order === 'DESC' ? `-${sort}` : sort;
    }
    try {
      return await cursorPage(listKey(resource, params), pathOf(resource), filter, params.pagination);
    } catch (error) {
      throw listError(error);
    }
  },

  async getOne(resource, params) {
    const data = await api<RaRecord>(`${pathOf(resource)}${encodeURIComponent(String(params.id))}/`);
    return { data };
  },

  async getMany(resource, params) {
    if (isCodeResource(resource)) {
      const wanted = new Set(params.ids.map(String));
      return { data: (await pickerCatalog(resource, {})).filter((row) => wanted.has(String(row.id))) };
    }
    if (resource === 'users') return { data: await usersById(params.ids) };
    // A record that cannot be read (deleted, or out of reach: 404 or 403) is left out, and its
    // reference shows the id instead; an ended session still signs out.
    const settled = await Promise.allSettled(
      params.ids.map((id) => api<RaRecord>(`${pathOf(resource)}${encodeURIComponent(String(id))}/`)),
    );
    const signedOut = settled.find((r) => r.status === 'rejected' && (r.reason as HttpError).status === 401);
    if (signedOut) throw (signedOut as PromiseRejectedResult).reason;
    return { data: settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])) };
  },

  async getManyReference(resource, params) {
    const id = encodeURIComponent(String(params.id));
    if (resource === 'user-roles') {
      // The user page shows every role: all their pages, read at the largest page size. Assignments
      // are keyed by user and role id, which the removal route takes as it takes a code: a user may
      // hold a global role and their organization's of the same code.
      const list = await readAll(`/api/v1/users/${id}/roles/`, {});
      const data = list.map((row) => ({ ...row, id: `${params.id}/${row.role_id}`, user_id: params.id }));
      return { data, total: data.length };
    }
    const nested = nestedPaths[resource];
    if (nested) {
      const key = JSON.stringify([resource, params.id, params.filter, params.pagination?.perPage]);
      return cursorPage(key, nested(id), { ...params.filter }, params.pagination);
    }
    const body = await api<Page<RaRecord>>(
      `${pathOf(resource)}${query({ ...params.filter, [params.target]: params.id, limit: 100 })}`,
    );
    return { data: body.results, pageInfo: { hasNextPage: Boolean(body.next), hasPreviousPage: false } };
  },

  async create(resource, params) {
    try {
      return (await create(resource, params.data)) as never;
    } catch (error) {
      throw formError(error, resource, params.data, createdInputOf(resource, params.data));
    }
  },

  async update(resource, params) {
    catalogCache.clear();
    if (resource === 'users' && Object.keys(changes(params.data, params.previousData ?? {})).length > 0) {
      return { data: await updateUser(params.id, params.data, params.previousData ?? {}) } as never;
    }
    const body = changes(params.data, params.previousData ?? {});
    const path = `${pathOf(resource)}${encodeURIComponent(String(params.id))}/`;
    if (Object.keys(body).length === 0) return { data: params.previousData } as never;
    try {
      const data = await api<RaRecord>(path, { method: 'PATCH', body });
      return { data } as never;
    } catch (error) {
      // The fields sent are those an input changed: a record field without an input is never among them.
      throw formError(error, resource, body, resource === 'user-types' ? userTypeInputOf(body) : undefined);
    }
  },

  async updateMany(resource, params) {
    catalogCache.clear();
    await Promise.all(
      params.ids.map((id) =>
        api(`${pathOf(resource)}${encodeURIComponent(String(id))}/`, { method: 'PATCH', body: params.data }),
      ),
    ).catch((error) => {
      throw writeError(error);
    });
    return { data: params.ids };
  },

  async delete(resource, params) {
    catalogCache.clear();
    // Role assignments are removed under their user, by role id.
    const [userId, role] = String(params.id).split('/');
    const path =
      resource === 'user-roles'
        ? `/api/v1/users/${encodeURIComponent(userId ?? '')}/roles/${encodeURIComponent(role ?? '')}/`
        : `${pathOf(resource)}${encodeURIComponent(String(params.id))}/`;
    await api(path, { method: 'DELETE' }).catch((error) => {
      throw writeError(error);
    });
    return { data: params.previousData ?? { id: params.id } } as never;
  },

  async deleteMany(resource, params) {
    catalogCache.clear();
    for (const id of params.ids) {
      await api(`${pathOf(resource)}${encodeURIComponent(String(id))}/`, { method: 'DELETE' }).catch((error) => {
        throw writeError(error);
      });
    }
    return { data: params.ids };
  },
} as DataProvider;

/** Deactivation has its own route (it ends the user's sessions too); reactivation is a status change. */
export async function setUserActive(id: Identifier, active: boolean): Promise<RaRecord> {
  const path = `/api/v1/users/${encodeURIComponent(String(id))}/`;
  return active
    ? api<RaRecord>(path, { method: 'PATCH', body: { status: 'active' } })
    : api<RaRecord>(`${path}deactivate/`, { method: 'POST' });
}

/** Integrations are switched off and on by their own routes (calls are refused while off). */
export async function setIntegrationActive(id: Identifier, active: boolean): Promise<RaRecord> {
  const action = active ? 'activate' : 'deactivate';
  return api<RaRecord>(`/api/v1/integrations/${encodeURIComponent(String(id))}/${action}/`, { method: 'POST' });
}

interface HealthCheck {
  status: string;
  response_time_ms: number | null;
  http_status: number | null;
  error_message: string | null;
}

/** Runs the integration's health check now; the check joins its history. */
export async function checkIntegrationHealth(id: Identifier): Promise<{ check: HealthCheck; integration: RaRecord }> {
  return api(`/api/v1/integrations/${encodeURIComponent(String(id))}/health-check/`, { method: 'POST' });
}

/**
 * A new key with the old one's name, organization, scopes and expiry; the server revokes the old
 * one in the same transaction. The answer holds the new key in clear, once.
 */
export async function rotateApiKey(id: Identifier): Promise<RaRecord & { key: string }> {
  return api(`/api/v1/api-keys/${encodeURIComponent(String(id))}/rotate/`, { method: 'POST' });
}
