import type { DataProvider, GetListParams, Identifier, RaRecord } from 'react-admin';
import { api, query } from './http';

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

/**
 * The API pages with opaque cursors, react-admin with page numbers: the cursor that leads to each
 * page is remembered per list (resource, filters, sort, page size) as the user walks forward, and a
 * page whose cursor is unknown (a stale URL) starts over from the first one.
 */
const cursors = new Map<string, (string | undefined)[]>();

function listKey(resource: string, params: GetListParams): string {
  return JSON.stringify([resource, params.filter, params.sort, params.pagination?.perPage]);
}

/** Rows without an `id` of their own get one, as react-admin keys rows by id. */
function withIds<T extends Record<string, unknown>>(rows: T[], idOf: (row: T) => Identifier): (T & RaRecord)[] {
  return rows.map((row) => ({ ...row, id: (row.id as Identifier | undefined) ?? idOf(row) }));
}

/** Only the fields the form changed, so a PATCH never rewrites what another admin just edited. */
function changes(data: Record<string, unknown>, previous: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(data)) {
    if (JSON.stringify(value) !== JSON.stringify(previous[key])) out[key] = value === '' ? null : value;
  }
  return out;
}

/** A create form holds every input, filled or not: the API reads an absent field as "default", '' as a value. */
function filled(data: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(data).filter(([, value]) => value !== '' && value !== null && value !== undefined),
  );
}

// Records are the API's JSON objects; react-admin's per-call generics add nothing checkable here.
export const dataProvider = {
  async getList(resource, params) {
    const perPage = params.pagination?.perPage ?? 25;
    const page = params.pagination?.page ?? 1;
    const key = listKey(resource, params);
    const known = cursors.get(key) ?? [undefined];
    const effectivePage = page === 1 || known[page - 1] !== undefined ? page : 1;
    const cursor = known[effectivePage - 1];
    const filter: Record<string, unknown> = { ...params.filter };
    if (filter.q !== undefined) {
      filter.search = filter.q;
      delete filter.q;
    }
    const body = await api<Page<Record<string, unknown>> | Record<string, unknown>[]>(
      `${pathOf(resource)}${query({ ...filter, limit: perPage, cursor })}`,
    );
    // Active users answer a plain list; every other list is a `{results, next}` page.
    const rows = Array.isArray(body) ? body : body.results;
    const next = Array.isArray(body) ? null : (body.next ?? null);
    if (next) {
      known[effectivePage] = next;
      cursors.set(key, known);
    }
    return {
      data: withIds(rows, (row) => String(row.user_id ?? row.period_start ?? JSON.stringify(row))),
      pageInfo: { hasNextPage: next !== null, hasPreviousPage: effectivePage > 1 },
      // On the last page the count is known without a COUNT(*): the pager can then say "1-3 of 3".
      ...(next === null ? { total: (effectivePage - 1) * perPage + rows.length } : {}),
    };
  },

  async getOne(resource, params) {
    const data = await api<RaRecord>(`${pathOf(resource)}${encodeURIComponent(String(params.id))}/`);
    return { data };
  },

  async getMany(resource, params) {
    const data = await Promise.all(
      params.ids.map((id) => api<RaRecord>(`${pathOf(resource)}${encodeURIComponent(String(id))}/`)),
    );
    return { data };
  },

  async getManyReference(resource, params) {
    const id = encodeURIComponent(String(params.id));
    if (resource === 'user-roles') {
      // Assignments are keyed by user and role code, the pair the removal route takes.
      const rows = await api<Record<string, unknown>[] | Page<Record<string, unknown>>>(`/api/v1/users/${id}/roles/`);
      const list = Array.isArray(rows) ? rows : rows.results;
      const data = list.map((row) => ({ ...row, id: `${params.id}/${row.role}`, user_id: params.id }));
      return { data, total: data.length };
    }
    const body = await api<Page<RaRecord>>(
      `${pathOf(resource)}${query({ ...params.filter, [params.target]: params.id, limit: 100 })}`,
    );
    return { data: body.results, pageInfo: { hasNextPage: Boolean(body.next), hasPreviousPage: false } };
  },

  async create(resource, params) {
    if (resource === 'user-roles') {
      const { user_id, ...body } = params.data as { user_id: string; role: string; is_primary?: boolean };
      const row = await api<Record<string, unknown>>(`/api/v1/users/${encodeURIComponent(user_id)}/roles/`, {
        method: 'POST',
        body,
      });
      return { data: { ...row, id: `${user_id}/${row.role}` } as RaRecord };
    }
    const data = await api<RaRecord>(pathOf(resource), { method: 'POST', body: filled(params.data) });
    return { data } as never;
  },

  async update(resource, params) {
    const body = changes(params.data, params.previousData ?? {});
    const path = `${pathOf(resource)}${encodeURIComponent(String(params.id))}/`;
    if (Object.keys(body).length === 0) return { data: params.previousData } as never;
    const data = await api<RaRecord>(path, { method: 'PATCH', body });
    return { data } as never;
  },

  async updateMany(resource, params) {
    await Promise.all(
      params.ids.map((id) =>
        api(`${pathOf(resource)}${encodeURIComponent(String(id))}/`, { method: 'PATCH', body: params.data }),
      ),
    );
    return { data: params.ids };
  },

  async delete(resource, params) {
    if (resource === 'user-roles') {
      const [userId, role] = String(params.id).split('/');
      await api(`/api/v1/users/${encodeURIComponent(userId ?? '')}/roles/${encodeURIComponent(role ?? '')}/`, {
        method: 'DELETE',
      });
    } else {
      await api(`${pathOf(resource)}${encodeURIComponent(String(params.id))}/`, { method: 'DELETE' });
    }
    return { data: params.previousData ?? { id: params.id } } as never;
  },

  async deleteMany(resource, params) {
    for (const id of params.ids) {
      await api(`${pathOf(resource)}${encodeURIComponent(String(id))}/`, { method: 'DELETE' });
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
