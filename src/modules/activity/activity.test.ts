import { once } from 'node:events';
import { get, type IncomingMessage } from 'node:http';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clientWithRole, loginAs, seedOrganization, seedUser, superuserClient } from '../../../test/seed.js';
import { startTestApp, type TestApp } from '../../../test/test-app.js';
import { queryRows } from '../../platform/db/client.js';
import { encodeCursor } from '../../platform/http/pagination.js';
import { CopyLineText } from './activity.queries.js';
import { MAX_CONCURRENT_EXPORTS } from './activity.routes.js';
import { aggregateHour, aggregatePendingHours } from './activity-stats.js';
import { recordAudit } from './audit.js';

interface Entry {
  id: string;
  activity_type: string;
  kind: string;
  user_id: string | null;
  organization: string | null;
  organization_id: string | null;
  path: string | null;
  status: number | null;
  success: boolean;
  timestamp: string;
  description: string;
}
interface PageOf<T> {
  results: T[];
  next: string | null;
}

/** RFC 4180 records: quoted fields may hold commas, doubled quotes and line breaks. */
function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let field = '';
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (c === '"') quoted = false;
      else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ',') {
      record.push(field);
      field = '';
    } else if (c === '\r' && text[i + 1] === '\n') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
      i++;
    } else field += c;
  }
  return records;
}

/** The CSV export's fields of a list entry; text a spreadsheet would take for a formula starts with '. */
function csvFieldsOf(r: Record<string, unknown>): string[] {
  const text = (v: unknown) => (v === null ? '' : String(v));
  const defused = (v: unknown) => (v === null ? '' : /^[=+@\t\r-]/.test(String(v)) ? `'${v}` : String(v));
  return [
    r.id,
    r.kind,
    defused(r.activity_type),
    r.category,
    r.severity,
    text(r.success),
    text(r.user_id),
    defused(r.organization),
    text(r.organization_id),
    r.actor_type,
    text(r.actor_id),
    text(r.api_key_id),
    defused(r.object_type),
    defused(r.object_id),
    defused(r.description),
    '(details)',
    defused((r.tags as string[]).join(' ')),
    defused(r.ip_address),
    defused(r.user_agent),
    text(r.method),
    defused(r.path),
    text(r.status),
    text(r.duration_ms),
    r.timestamp,
  ].map(String);
}

describe('the framing of a one-column binary COPY', () => {
  /** What PostgreSQL sends for `lines`: header, one tuple a line (null for `null`), trailer. */
  function copyBinary(lines: (string | null)[]): Buffer {
    const header = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
    const tuples = lines.map((line) => {
      const bytes = line === null ? Buffer.alloc(0) : Buffer.from(line);
      const frame = Buffer.alloc(6);
      frame.writeInt16BE(1, 0);
      frame.writeInt32BE(line === null ? -1 : bytes.length, 2);
      return Buffer.concat([frame, bytes]);
    });
    return Buffer.concat([header, ...tuples, Buffer.from([0xff, 0xff])]);
  }

  async function unframe(chunks: Buffer[]): Promise<string> {
    const out: Buffer[] = [];
    const decoder = new CopyLineText();
    decoder.on('data', (b: Buffer) => out.push(Buffer.from(b)));
    for (const chunk of chunks) decoder.write(chunk);
    decoder.end();
    await once(decoder, 'end');
    return Buffer.concat(out).toString();
  }

  it('passes the lines on unchanged, however the bytes are cut into chunks', async () => {
    const lines = ['{"a" : 1}\n', '', null, 'ünïcødé ☃\n', 'x'.repeat(300), '"q",\r\n'];
    const bytes = copyBinary(lines);
    const expected = lines.join('');
    // The decoder rewrites the chunks it is given, so each run gets copies.
    expect(await unframe([Buffer.from(bytes)])).toBe(expected);
    for (let size = 1; size <= 9; size++) {
      const chunks: Buffer[] = [];
      for (let at = 0; at < bytes.length; at += size) chunks.push(Buffer.from(bytes.subarray(at, at + size)));
      expect(await unframe(chunks), `chunks of ${size}`).toBe(expected);
    }
    for (let cut = 1; cut < bytes.length; cut++) {
      expect(await unframe([Buffer.from(bytes.subarray(0, cut)), Buffer.from(bytes.subarray(cut))])).toBe(expected);
    }
  });
});

describe('activity API', () => {
  let t: TestApp;
  let orgA: Awaited<ReturnType<typeof seedOrganization>>;
  let orgB: Awaited<ReturnType<typeof seedOrganization>>;

  beforeAll(async () => {
    t = await startTestApp();
    orgA = await seedOrganization(t);
    orgB = await seedOrganization(t);
  });
  afterAll(() => t.close());

  it('tracks requests in batches: method, route template, status, duration, user and organization', async () => {
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    const res = await admin.get(`/api/v1/users/${admin.user.id}`);
    expect(res.statusCode).toBe(200);
    await t.app.activityBuffer.flush();
    const rows = await queryRows<{
      method: string;
      path: string;
      status: number;
      duration_ms: number;
      organization_id: string;
    }>(
      t.database.db,
      sql`select method, path, status, duration_ms, organization_id from activities
        where kind = 'request' and user_id = ${admin.user.id} and path = '/api/v1/users/:id'`,
    );
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ method: 'GET', status: 200, organization_id: orgA.id });
    expect(rows[0]?.duration_ms).toBeGreaterThanOrEqual(0);
  });

  it('lists newest first with keyset pages and filters; organization admins and viewers see their organization only', async () => {
    const userA = await seedUser(t, orgA.id);
    const userB = await seedUser(t, orgB.id);
    for (let i = 0; i < 5; i++) {
      await recordAudit(t.database.db, {
        type: 'test.listed',
        category: 'user_management',
        organizationId: orgA.id,
        userId: userA.id,
        description: `event number ${i}`,
        success: i !== 3,
        tags: i === 2 ? ['special'] : [],
        severity: i === 1 ? 'warning' : 'info',
      });
    }
    await recordAudit(t.database.db, {
      type: 'test.listed',
      category: 'user_management',
      organizationId: orgB.id,
      userId: userB.id,
      description: 'other organization',
    });
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    const first = (await admin.get('/api/v1/activities?activity_type=test.listed&limit=2')).json() as PageOf<Entry>;
    expect(first.results.map((r) => r.description)).toEqual(['event number 4', 'event number 3']);
    expect(first.next).not.toBeNull();
    const rest: Entry[] = [];
    for (let cursor = first.next; cursor; ) {
      const page = (
        await admin.get(`/api/v1/activities?activity_type=test.listed&limit=2&cursor=${cursor}`)
      ).json() as PageOf<Entry>;
      rest.push(...page.results);
      cursor = page.next;
    }
    expect(rest.map((r) => r.description)).toEqual(['event number 2', 'event number 1', 'event number 0']);
    expect(first.results[0]).toMatchObject({ organization: orgA.code, user_id: userA.id, kind: 'audit' });

    const failed = (
      await admin.get('/api/v1/activities?activity_type=test.listed&success=false')
    ).json() as PageOf<Entry>;
    expect(failed.results.map((r) => r.description)).toEqual(['event number 3']);
    const bySeverity = async (severity: string) =>
      (
        (await admin.get(`/api/v1/activities?activity_type=test.listed&severity=${severity}`)).json() as PageOf<Entry>
      ).results.map((r) => r.description);
    expect(await bySeverity('warning')).toEqual(['event number 1']);
    // Seed 002's names: high is warning, normal is info.
    expect(await bySeverity('high')).toEqual(['event number 1']);
    expect(await bySeverity('normal')).toHaveLength(4);
    expect((await admin.get('/api/v1/activities?severity=severe')).statusCode).toBe(400);
    const tagged = (await admin.get('/api/v1/activities?tag=special')).json() as PageOf<Entry>;
    expect(tagged.results.map((r) => r.description)).toEqual(['event number 2']);
    const searched = (await admin.get('/api/v1/activities?search=NUMBER%201')).json() as PageOf<Entry>;
    expect(searched.results.map((r) => r.description)).toEqual(['event number 1']);
    const byUser = (await admin.get(`/api/v1/activities?user=${userA.id}&kind=audit`)).json() as PageOf<Entry>;
    expect(byUser.results).toHaveLength(5);
    const future = (
      await admin.get(`/api/v1/activities?since=${new Date(Date.now() + 60_000).toISOString()}`)
    ).json() as PageOf<Entry>;
    expect(future.results).toEqual([]);
    // A date alone is its midnight UTC.
    const byDate = async (q: string) =>
      ((await admin.get(`/api/v1/activities?activity_type=test.listed&${q}`)).json() as PageOf<Entry>).results;
    expect(await byDate('since=2000-01-01')).toHaveLength(5);
    expect(await byDate('until=2000-01-01')).toEqual([]);
    const notADate = await admin.get('/api/v1/activities?since=yesterday');
    expect(notADate.statusCode).toBe(400);
    expect(notADate.json().errors[0].field).toBe('since');

    // Isolation: B's event is invisible to A's admin, even when asked for by user or organization.
    expect(((await admin.get(`/api/v1/activities?user=${userB.id}`)).json() as PageOf<Entry>).results).toEqual([]);
    expect(((await admin.get(`/api/v1/activities?organization=${orgB.code}`)).json() as PageOf<Entry>).results).toEqual(
      [],
    );
    const all = (await admin.get('/api/v1/activities?limit=500')).json() as PageOf<Entry>;
    expect(all.results.every((r) => r.organization_id === orgA.id)).toBe(true);

    const viewer = await clientWithRole(t, orgA.id, 'viewer');
    const seen = (await viewer.get('/api/v1/activities?activity_type=test.listed')).json() as PageOf<Entry>;
    expect(seen.results).toHaveLength(5);

    const superuser = await superuserClient(t);
    const everything = (await superuser.get('/api/v1/activities?activity_type=test.listed')).json() as PageOf<Entry>;
    expect(everything.results).toHaveLength(6);
    const onlyB = (
      await superuser.get(`/api/v1/activities?activity_type=test.listed&organization=${orgB.code}`)
    ).json() as PageOf<Entry>;
    expect(onlyB.results.map((r) => r.description)).toEqual(['other organization']);
  });

  it('filters by organization id as well as code, stats take a date alone, and a repeated severity is refused by name', async () => {
    const org = await seedOrganization(t);
    await recordAudit(t.database.db, {
      type: 'test.by_org_id',
      category: 'user_management',
      organizationId: org.id,
      description: 'by id',
    });
    const superuser = await superuserClient(t);
    const listed = async (client: typeof superuser, q: string) =>
      ((await client.get(`/api/v1/activities?activity_type=test.by_org_id&${q}`)).json() as PageOf<Entry>).results;
    expect((await listed(superuser, `organization=${org.id}`)).map((r) => r.description)).toEqual(['by id']);
    expect((await listed(superuser, `organization=${org.id.toUpperCase()}`)).map((r) => r.description)).toEqual([
      'by id',
    ]);
    expect((await listed(superuser, `organization=${org.code}`)).map((r) => r.description)).toEqual(['by id']);
    expect(await listed(superuser, `organization=${orgB.id}`)).toEqual([]);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    expect(await listed(admin, `organization=${org.id}`)).toHaveLength(1);
    const foreign = await clientWithRole(t, orgB.id, 'org_admin');
    expect(await listed(foreign, `organization=${org.id}`)).toEqual([]);
    const stats = await admin.get(`/api/v1/activity-stats?organization=${org.id}&since=2026-01-01&until=9999-01-01`);
    expect(stats.statusCode, stats.body).toBe(200);
    expect(stats.json().results.every((r: { organization_id: string }) => r.organization_id === org.id)).toBe(true);

    const byDate = await admin.get('/api/v1/activity-stats?since=2026-11-25');
    expect(byDate.statusCode, byDate.body).toBe(200);
    const badDate = await admin.get('/api/v1/activity-stats?since=yesterday');
    expect(badDate.statusCode).toBe(400);
    expect(badDate.json().errors[0].field).toBe('since');

    const repeated = await admin.get('/api/v1/activities?severity=info&severity=critical');
    expect(repeated.statusCode).toBe(400);
    const [problem] = repeated.json().errors as { field: string; message: string }[];
    expect(problem?.field).toBe('severity');
    expect(problem?.message).not.toMatch(/string,/);
    expect(problem?.message).toContain('"critical"');
    expect((await admin.get('/api/v1/activities?severity=severe')).json().errors[0].message).toMatch(
      /^must be one of "info", "warning", "critical"/,
    );
  });

  it('answers what a user did with actor: the changes they made to others, and their own requests', async () => {
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    const target = await seedUser(t, orgA.id);
    expect((await admin.patch(`/api/v1/users/${target.id}/`, { first_name: 'Renamed' })).statusCode).toBe(200);
    // An event about the admin that someone else did is theirs as subject, not as actor.
    await recordAudit(t.database.db, {
      type: 'test.done_to_admin',
      category: 'user_management',
      organizationId: orgA.id,
      userId: admin.user.id,
      actorUserId: target.id,
      description: 'done to the admin',
    });
    await t.app.activityBuffer.flush();
    const list = async (query: string) =>
      ((await admin.get(`/api/v1/activities?${query}&limit=500`)).json() as PageOf<Entry>).results;

    const changes = await list(`actor=${admin.user.id}&kind=audit`);
    // Their own login is theirs too: they proved their password.
    expect(changes.map((r) => [r.activity_type, r.user_id]).sort()).toEqual([
      ['auth.login', admin.user.id],
      ['user.updated', target.id],
    ]);
    const about = (await list(`user=${admin.user.id}&kind=audit`)).map((r) => r.activity_type);
    expect(about).toContain('test.done_to_admin');
    expect(about).not.toContain('user.updated');
    const requests = await list(`actor=${admin.user.id}&kind=request`);
    expect(requests.length).toBeGreaterThan(0);
    expect(requests.every((r) => r.user_id === admin.user.id)).toBe(true);
    expect(requests.map((r) => r.path)).toContain('/api/v1/users/:id');
    expect((await admin.get('/api/v1/activities?actor=nobody')).statusCode).toBe(400);
  });

  it('refuses users without activities.view', async () => {
    const plain = await loginAs(t, await seedUser(t, orgA.id));
    for (const url of [
      '/api/v1/activities',
      '/api/v1/activities/export',
      `/api/v1/activity-streams?user=${plain.user.id}`,
      '/api/v1/activity-stats',
      '/api/v1/activities/active-users',
    ]) {
      expect((await plain.get(url)).statusCode, url).toBe(403);
    }
    expect((await t.request({ method: 'GET', url: '/api/v1/activities' })).statusCode).toBe(401);
  });

  it('answers 400 naming the field for a moment outside the years 0001 to 9999, and reads those within', async () => {
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    for (const [url, field] of [
      ['/api/v1/activities?since=0000-01-01T00:00:00Z', 'since'],
      ['/api/v1/activities?until=0000-01-01T00:00:00Z', 'until'],
      ['/api/v1/activities?since=0000-01-01', 'since'],
      // Year 1 as written, year 0 once the offset is applied; year 10000 the other way round.
      [`/api/v1/activities?since=${encodeURIComponent('0001-01-01T00:00:00+01:00')}`, 'since'],
      ['/api/v1/activities?until=9999-12-31T23:59:59-01:00', 'until'],
      ['/api/v1/activity-streams?user=00000000-0000-4000-8000-000000000000&since=0000-01-01T00:00:00Z', 'since'],
      ['/api/v1/activities/export?since=0000-01-01T00:00:00Z', 'since'],
      ['/api/v1/activities/export?format=csv&until=0000-01-01T00:00:00Z', 'until'],
      ['/api/v1/activity-stats?since=0000-01-01T00:00:00Z', 'since'],
      ['/api/v1/activity-stats?until=0000-01-01T00:00:00Z', 'until'],
      // A leap second is one only at the end of a UTC day.
      ['/api/v1/activity-stats?since=2016-12-31T12:59:60Z', 'since'],
    ] as const) {
      const res = await admin.get(url);
      expect(res.statusCode, url).toBe(400);
      expect(res.headers['content-type'], url).toContain('application/problem+json');
      expect(res.json(), url).toMatchObject({ code: 'validation_failed', errors: [{ field }] });
    }
    for (const url of [
      '/api/v1/activities?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59.999Z',
      '/api/v1/activities?since=0001-01-01&until=9999-12-31',
      // An hours-only offset, which `new Date` cannot read, and a leap second.
      `/api/v1/activities?since=${encodeURIComponent('2016-12-31T23:59:60Z')}&until=${encodeURIComponent('9999-01-01T00:00:00+01')}`,
      '/api/v1/activity-stats?since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z',
    ]) {
      expect((await admin.get(url)).statusCode, url).toBe(200);
    }
  });

  it('answers 400 invalid_cursor for a cursor no page gave, whatever it holds', async () => {
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    const id = '0190a000-0000-7000-8000-000000000000';
    for (const cursor of [
      encodeCursor(['0000-01-01T00:00:00.000000Z', id]),
      encodeCursor(['2026-01-01', id]),
      encodeCursor(['2026-01-01T00:00:00.000000Z', 'not-a-uuid']),
    ]) {
      const res = await admin.get(`/api/v1/activities?cursor=${cursor}`);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'invalid_cursor' });
    }
    for (const cursor of [encodeCursor(['0000-01-01T00:00:00.000Z']), encodeCursor(['+010000-01-01T00:00:00.000Z'])]) {
      const res = await admin.get(`/api/v1/activity-stats?cursor=${cursor}`);
      expect(res.statusCode).toBe(400);
      expect(res.json()).toMatchObject({ code: 'invalid_cursor' });
    }
  });

  it('answers one activity by id as the list shows it, audit events, requests and tracked events alike', async () => {
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    await recordAudit(t.database.db, {
      type: 'test.detail',
      category: 'user_management',
      organizationId: orgA.id,
      description: 'one to read',
      tags: ['detail'],
      details: { n: 1 },
    });
    t.app.tracker.track({ type: 'test.detail_event', organizationId: orgA.id, description: 'tracked one' });
    // A request of the admin's, for a request row to read.
    expect((await admin.get('/api/v1/activities?activity_type=test.detail')).statusCode).toBe(200);
    await t.app.activityBuffer.flush();
    const listed = [
      ...((await admin.get('/api/v1/activities?activity_type=test.detail')).json() as PageOf<Entry>).results,
      ...((await admin.get('/api/v1/activities?activity_type=test.detail_event')).json() as PageOf<Entry>).results,
      ...((await admin.get(`/api/v1/activities?kind=request&user=${admin.user.id}&limit=1`)).json() as PageOf<Entry>)
        .results,
    ];
    expect(listed.map((r) => r.kind)).toEqual(['audit', 'event', 'request']);
    for (const entry of listed) {
      for (const url of [`/api/v1/activities/${entry.id}`, `/api/v1/activities/${entry.id}/`]) {
        const res = await admin.get(url);
        expect(res.statusCode, url).toBe(200);
        expect(res.json(), url).toEqual(entry);
      }
    }
    const viewer = await clientWithRole(t, orgA.id, 'viewer');
    expect((await viewer.get(`/api/v1/activities/${listed[0]?.id}`)).statusCode).toBe(200);
  });

  it('answers 404 for an activity the caller’s list would not show, and for an id that names none', async () => {
    const record = async (organizationId: string | null) => {
      await recordAudit(t.database.db, {
        type: 'test.hidden',
        category: 'user_management',
        organizationId,
        description: `of ${organizationId ?? 'the platform'}`,
      });
      const [row] = await queryRows<{ id: string }>(
        t.database.db,
        sql`select id from activities where activity_type = 'test.hidden' order by timestamp desc, id desc limit 1`,
      );
      return row?.id as string;
    };
    const ofB = await record(orgB.id);
    const ofPlatform = await record(null);
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    for (const id of [
      ofB,
      ofPlatform,
      'not-a-uuid',
      // A UUIDv7 of now that names nothing, one of the year 10889 (its largest time), a version 4 uuid.
      `${Date.now()
        .toString(16)
        .padStart(12, '0')
        .replace(/^(.{8})(.{4})$/, '$1-$2')}-7000-8000-000000000000`,
      'ffffffff-ffff-7fff-bfff-ffffffffffff',
      '6f1c2b8e-4c1a-4d4e-9a6b-1f2e3d4c5b6a',
    ]) {
      const res = await admin.get(`/api/v1/activities/${id}`);
      expect(res.statusCode, id).toBe(404);
      expect(res.json(), id).toMatchObject({ status: 404, code: 'activity_not_found' });
    }
    const superuser = await superuserClient(t);
    expect((await superuser.get(`/api/v1/activities/${ofB}`)).json()).toMatchObject({
      id: ofB,
      organization: orgB.code,
    });
    expect((await superuser.get(`/api/v1/activities/${ofPlatform}`)).json()).toMatchObject({ organization_id: null });
    const plain = await loginAs(t, await seedUser(t, orgB.id));
    expect((await plain.get(`/api/v1/activities/${ofB}`)).statusCode).toBe(403);
    expect((await t.request({ method: 'GET', url: `/api/v1/activities/${ofB}` })).statusCode).toBe(401);
  });

  it('answers one object’s history as a stream, within the organization', async () => {
    await recordAudit(t.database.db, {
      type: 'role.updated',
      category: 'authorization',
      organizationId: orgA.id,
      description: 'role changed',
      objectType: 'role',
      objectId: 'r-1',
    });
    await recordAudit(t.database.db, {
      type: 'role.updated',
      category: 'authorization',
      organizationId: orgB.id,
      description: 'other role changed',
      objectType: 'role',
      objectId: 'r-1',
    });
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    const stream = (await admin.get('/api/v1/activity-streams?object_type=role&object_id=r-1')).json() as PageOf<Entry>;
    expect(stream.results.map((r) => r.description)).toEqual(['role changed']);
    expect((await admin.get('/api/v1/activity-streams')).statusCode).toBe(400);
  });

  it('finds an object’s history by a uuid in either case', async () => {
    const id = '6f1c9b0e-3a2d-4c5e-9f8a-0b1c2d3e4f5a';
    await recordAudit(t.database.db, {
      type: 'user.updated',
      category: 'user_management',
      organizationId: orgA.id,
      description: 'cased lookup',
      objectType: 'user',
      objectId: id.toUpperCase(),
    });
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    for (const objectId of [id, id.toUpperCase()]) {
      const stream = (
        await admin.get(`/api/v1/activity-streams?object_type=user&object_id=${objectId}`)
      ).json() as PageOf<Entry>;
      expect(
        stream.results.map((r) => r.description),
        objectId,
      ).toEqual(['cased lookup']);
    }
  });

  it('exports a filtered range as NDJSON and CSV, streamed, within the organization', async () => {
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    const nd = await admin.get('/api/v1/activities/export?activity_type=test.listed&format=ndjson');
    expect(nd.statusCode).toBe(200);
    expect(nd.headers['content-type']).toContain('application/x-ndjson');
    const lines = nd.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Entry);
    expect(lines.map((l) => l.description)).toEqual([4, 3, 2, 1, 0].map((i) => `event number ${i}`));
    const csv = await admin.get('/api/v1/activities/export?activity_type=test.listed&format=csv');
    expect(csv.headers['content-type']).toContain('text/csv');
    const csvLines = csv.body.trim().split('\r\n');
    expect(csvLines[0]).toMatch(/^id,kind,activity_type,.*,organization,organization_id,.*,duration_ms,timestamp$/);
    expect(csvLines).toHaveLength(6);
    expect(csvLines[1]?.split(',')).toHaveLength(csvLines[0]?.split(',').length as number);
    expect(csvLines[1]).toContain('"event number 4"');
    const other = await admin.get(`/api/v1/activities/export?organization=${orgB.code}`);
    expect(other.body).toBe('');
  });

  it('shows who is active now with device, browser, OS and current path', async () => {
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    const active = await loginAs(t, await seedUser(t, orgA.id));
    await t.request({
      method: 'GET',
      url: '/api/v1/users/profile',
      headers: {
        authorization: `Bearer ${active.token}`,
        'user-agent':
          'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
      },
    });
    const other = await loginAs(t, await seedUser(t, orgB.id));
    await other.get('/api/v1/users/profile');
    await t.app.activityBuffer.flush();
    const page = (await admin.get('/api/v1/activities/active-users?active_within=5')).json() as PageOf<
      Record<string, unknown>
    >;
    const entry = page.results.find((r) => r.user_id === active.user.id);
    expect(entry).toMatchObject({
      current_path: '/api/v1/users/profile',
      browser: 'Chrome 120',
      device_type: 'desktop',
    });
    expect(entry?.os).toMatch(/^Windows/);
    expect(page.results.some((r) => r.user_id === other.user.id)).toBe(false);
    expect(page.results.every((r) => r.organization_id === orgA.id)).toBe(true);
  });

  it('pages active users with a cursor, most recent first then by user id, each once', async () => {
    const org = await seedOrganization(t);
    const [u1, u2, u3] = [await seedUser(t, org.id), await seedUser(t, org.id), await seedUser(t, org.id)];
    const request = (userId: string, minutesAgo: number) =>
      t.database.db.execute(sql`insert into activities (timestamp, id, kind, activity_type, category, organization_id, user_id, path)
        values (date_trunc('second', now()) - make_interval(mins => ${minutesAgo}), gen_random_uuid(), 'request',
          'api.request', 'api', ${org.id}, ${userId}, '/p')`);
    await request(u1!.id, 3);
    await request(u1!.id, 1);
    // Two users with the same last request: the user id breaks the tie.
    await request(u2!.id, 2);
    await request(u3!.id, 2);
    const superuser = await superuserClient(t);
    const url = `/api/v1/activities/active-users?organization=${org.code}&active_within=10`;
    const tied = [u2!.id, u3!.id].sort().reverse();
    const all = (await superuser.get(url)).json() as PageOf<{ user_id: string }>;
    expect(all.results.map((r) => r.user_id)).toEqual([u1!.id, ...tied]);
    expect(all.next).toBeNull();

    const seen: string[] = [];
    let cursor: string | null = null;
    for (let pages = 0; pages < 5; pages++) {
      const res = await superuser.get(`${url}&limit=1${cursor ? `&cursor=${cursor}` : ''}`);
      expect(res.statusCode).toBe(200);
      const page = res.json() as PageOf<{ user_id: string }>;
      seen.push(...page.results.map((r) => r.user_id));
      cursor = page.next;
      if (!cursor) break;
    }
    expect(seen).toEqual([u1!.id, ...tied]);
    expect((await superuser.get(`${url}&limit=1000`)).json().results).toHaveLength(3);

    expect((await superuser.get(`${url}&limit=0`)).json()).toMatchObject({ status: 400, errors: [{ field: 'limit' }] });
    for (const bad of [
      'garbage',
      encodeCursor(['2026-01-01', u1!.id]),
      encodeCursor(['2026-01-01T00:00:00.000000Z']),
    ]) {
      const res = await superuser.get(`${url}&cursor=${bad}`);
      expect(res.statusCode, bad).toBe(400);
      expect(res.json()).toMatchObject({ code: 'invalid_cursor', errors: [{ field: 'cursor' }] });
    }
  });

  it('answers statistics of the caller’s organization; superusers see the platform or a named organization', async () => {
    const twoHoursAgo = new Date(Date.now() - 2 * 3_600_000).toISOString();
    for (const org of [orgA.id, orgA.id, orgB.id]) {
      await t.database.db.execute(sql`insert into activities (timestamp, id, kind, activity_type, category, organization_id, duration_ms, status)
        values (${twoHoursAgo}::timestamptz, gen_random_uuid(), 'request', 'api.request', 'api', ${org}, 5, 200)`);
    }
    await aggregatePendingHours(t.database.db);
    type Stats = {
      organization_id: string | null;
      total_activities: number;
      success_rate: number | null;
      partial: boolean;
      period_start: string;
      by_category: Record<string, number>;
    };
    const stored = (page: PageOf<Stats>) => page.results.filter((r) => !r.partial);
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    const own = (await admin.get('/api/v1/activity-stats?period=hour')).json() as PageOf<Stats>;
    expect(own.results.every((r) => r.organization_id === orgA.id)).toBe(true);
    expect(stored(own).reduce((n, r) => n + r.total_activities, 0)).toBe(2);
    expect(stored(own)[0]?.success_rate).toBe(100);
    expect(
      ((await admin.get(`/api/v1/activity-stats?organization=${orgB.code}`)).json() as PageOf<Stats>).results,
    ).toEqual([]);
    const viewer = await clientWithRole(t, orgA.id, 'viewer');
    expect((await viewer.get('/api/v1/activity-stats')).statusCode).toBe(200);

    // The running hour comes first, computed from the activities as they are now.
    const hourStart = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000).toISOString();
    await t.database.db.execute(sql`insert into activities (timestamp, id, kind, activity_type, category, organization_id)
      values (now(), gen_random_uuid(), 'event', 'test.live', 'live_figures', ${orgA.id})`);
    const now = (await admin.get('/api/v1/activity-stats')).json() as PageOf<Stats>;
    expect(now.results[0]).toMatchObject({ partial: true, period_start: hourStart, organization_id: orgA.id });
    expect(now.results[0]?.by_category.live_figures).toBe(1);
    expect(now.results.filter((r) => r.partial)).toHaveLength(1);
    const today = (await admin.get('/api/v1/activity-stats?period=day')).json() as PageOf<Stats>;
    expect(today.results[0]).toMatchObject({ partial: true, period_type: 'day' });
    expect(today.results[0]?.by_category.live_figures).toBe(1);
    // Today is its stored hours (the two 'api' requests, unless they fell on yesterday) and the running one.
    // This test's own requests keep adding 'api' rows to the running hour (written each second), so the
    // day's figure lies between the running hour read before it and the one read after it.
    const storedToday = twoHoursAgo.slice(0, 10) === hourStart.slice(0, 10) ? 2 : 0;
    const after = (await admin.get('/api/v1/activity-stats')).json() as PageOf<Stats>;
    const todayApi = today.results[0]?.by_category.api ?? 0;
    expect(todayApi).toBeGreaterThanOrEqual((now.results[0]?.by_category.api ?? 0) + storedToday);
    expect(todayApi).toBeLessThanOrEqual((after.results[0]?.by_category.api ?? 0) + storedToday);
    // A range that ends before the running hour leaves it out; a page of one pages on to the stored rows.
    const past = (
      await admin.get(`/api/v1/activity-stats?until=${encodeURIComponent(hourStart)}`)
    ).json() as PageOf<Stats>;
    expect(past.results.every((r) => !r.partial)).toBe(true);
    const one = (await admin.get('/api/v1/activity-stats?limit=1')).json() as PageOf<Stats>;
    expect(one.results.map((r) => r.partial)).toEqual([true]);
    const next = (await admin.get(`/api/v1/activity-stats?limit=50&cursor=${one.next}`)).json() as PageOf<Stats>;
    expect(next.results.reduce((n, r) => n + r.total_activities, 0)).toBe(2);

    const superuser = await superuserClient(t);
    const platform = (await superuser.get('/api/v1/activity-stats')).json() as PageOf<Stats>;
    expect(platform.results.every((r) => r.organization_id === null)).toBe(true);
    expect(stored(platform).reduce((n, r) => n + r.total_activities, 0)).toBeGreaterThanOrEqual(3);
    const ofB = (await superuser.get(`/api/v1/activity-stats?organization=${orgB.code}`)).json() as PageOf<Stats>;
    expect(stored(ofB).map((r) => [r.organization_id, r.total_activities])).toEqual([[orgB.id, 1]]);
  });

  it('names the organization of statistics by code as well as id, and the platform’s as null', async () => {
    const org = await seedOrganization(t);
    const hour = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 3 * 3_600_000);
    await t.database.db.execute(sql`insert into activities (timestamp, id, kind, activity_type, category, organization_id)
      values (${hour.toISOString()}::timestamptz, gen_random_uuid(), 'event', 'test.named', 'named', ${org.id})`);
    await aggregateHour(t.database.db, hour);
    type Named = { organization: string | null; organization_id: string | null; partial: boolean };
    const admin = await clientWithRole(t, org.id, 'org_admin');
    const superuser = await superuserClient(t);
    for (const period of ['hour', 'day']) {
      const own = (await admin.get(`/api/v1/activity-stats?period=${period}`)).json() as PageOf<Named>;
      expect(own.results.length, period).toBeGreaterThan(0);
      for (const r of own.results) expect(r, period).toMatchObject({ organization: org.code, organization_id: org.id });
      const named = (await superuser.get(`/api/v1/activity-stats?period=${period}&organization=${org.code}`)).json();
      expect(named.results[0]).toMatchObject({ organization: org.code, organization_id: org.id });
      const platform = (await superuser.get(`/api/v1/activity-stats?period=${period}`)).json() as PageOf<Named>;
      for (const r of platform.results) expect(r).toMatchObject({ organization: null, organization_id: null });
    }
    const stored = (await admin.get('/api/v1/activity-stats?period=hour')).json() as PageOf<Named>;
    expect(stored.results.filter((r) => !r.partial)).toHaveLength(1);
  });

  it('exports more rows than one chunk, each once, newest first', async () => {
    await t.database.db.execute(sql`insert into activities (timestamp, id, kind, activity_type, category, organization_id)
      select now() - make_interval(secs => i), gen_random_uuid(), 'event', 'test.bulk', 'test', ${orgA.id}
      from generate_series(1, 5003) as i`);
    const admin = await clientWithRole(t, orgA.id, 'org_admin');
    // A page larger than the largest is read as the largest, with a cursor to the rest.
    const big = (await admin.get('/api/v1/activities?activity_type=test.bulk&limit=100000')).json() as PageOf<Entry>;
    expect(big.results).toHaveLength(500);
    expect(big.next).not.toBeNull();
    const res = await admin.get('/api/v1/activities/export?activity_type=test.bulk');
    const lines = res.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Entry);
    expect(lines).toHaveLength(5003);
    expect(new Set(lines.map((l) => l.id)).size).toBe(5003);
    const times = lines.map((l) => l.timestamp);
    expect([...times].sort().reverse()).toEqual(times);
    const csv = (await admin.get('/api/v1/activities/export?activity_type=test.bulk&format=csv')).body
      .trim()
      .split('\r\n')
      .slice(1)
      .map((l) => l.split(',')[0]);
    expect(csv).toEqual(lines.map((l) => l.id));
  });

  it('exports a range larger than one chunk exactly as the list shows it, in both formats', async () => {
    const org = await seedOrganization(t);
    const user = await seedUser(t, org.id);
    // Text that needs JSON escaping, CSV quoting and formula defusing; nulls; numbers with fractions.
    await t.database.db.execute(sql`insert into activities (timestamp, id, kind, activity_type, category, severity,
        success, organization_id, user_id, actor_type, actor_id, object_type, object_id, description, details, tags,
        ip_address, user_agent, method, path, status, duration_ms)
      select now() - make_interval(secs => i / 3.0), gen_random_uuid(), 'event', 'test.exported', 'test',
        case when i % 4 = 0 then 'warning' else 'info' end, i % 7 <> 0, ${org.id},
        case when i % 2 = 0 then ${user.id}::uuid end, 'user', case when i % 3 = 0 then ${user.id}::uuid end,
        case when i % 5 = 0 then 'role' end, case when i % 5 = 0 then '=r-' || i end,
        (array['plain ' || i, 'with "quotes", commas', 'line' || chr(10) || 'break' || chr(13) || chr(10) || 'and \\ back\\slash' || chr(9) || i, '=SUM(A' || i || ')',
          'ünïcødé ☃ ' || i, '-' || i, chr(1) || ' control', 'it''s 100% "done"'])[i % 8 + 1],
        jsonb_build_object('n', i, 's', 'a"b\\c' || chr(10), 'nested', jsonb_build_array(1.5, null, true)),
        case when i % 3 = 0 then array['t' || (i % 4), 'x y'] else '{}' end,
        case when i % 2 = 0 then '203.0.113.' || (i % 250) end, case when i % 2 = 1 then 'Mozilla/5.0 "bench", v' || i end,
        case when i % 2 = 0 then 'GET' end, case when i % 2 = 0 then '/api/v1/users/:id' end,
        case when i % 2 = 0 then 200 + i % 3 end, case when i % 2 = 0 then (i % 97) * 0.37 end
      from generate_series(1, 5003) as i`);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    const listed: Record<string, unknown>[] = [];
    for (let cursor: string | null = ''; cursor !== null; ) {
      const page = (
        await admin.get(`/api/v1/activities?activity_type=test.exported&limit=500${cursor ? `&cursor=${cursor}` : ''}`)
      ).json() as PageOf<Record<string, unknown>>;
      listed.push(...page.results);
      cursor = page.next;
    }
    expect(listed).toHaveLength(5003);

    const nd = await admin.get('/api/v1/activities/export?activity_type=test.exported&format=ndjson');
    expect(nd.statusCode).toBe(200);
    expect(nd.body.endsWith('}\n')).toBe(true);
    const lines = nd.body.slice(0, -1).split('\n');
    expect(lines.map((l) => JSON.parse(l))).toEqual(listed);
    // The keys in the list's order, json_build_object's spacing.
    expect(lines[0]).toMatch(/^\{"id" : "[0-9a-f-]{36}", "kind" : "event", "activity_type" : "test.exported", /);

    const csv = await admin.get('/api/v1/activities/export?activity_type=test.exported&format=csv');
    expect(csv.statusCode).toBe(200);
    expect(csv.body.endsWith('\r\n')).toBe(true);
    const [header, ...records] = parseCsv(csv.body);
    // The list's columns, in its order.
    expect(header).toEqual(Object.keys(listed[0] as Record<string, unknown>));
    expect(records).toHaveLength(listed.length);
    const details = header?.indexOf('details') as number;
    records.forEach((record, i) => {
      const entry = listed[i] as Record<string, unknown>;
      expect(JSON.parse(record[details] as string)).toEqual(entry.details);
      expect(record.with(details, '(details)')).toEqual(csvFieldsOf(entry));
    });

    // Filter values reach the statement as values, whatever they hold: quotes, backslashes, LIKE wildcards.
    for (const search of ['"quotes", commas', 'back\\slash', "it's", '100%', "'; drop table activities; --"]) {
      const query = `activity_type=test.exported&search=${encodeURIComponent(search)}`;
      const ids: string[] = [];
      for (let cursor: string | null = ''; cursor !== null; ) {
        const page = (
          await admin.get(`/api/v1/activities?${query}&limit=500${cursor ? `&cursor=${cursor}` : ''}`)
        ).json() as PageOf<Entry>;
        ids.push(...page.results.map((r) => r.id));
        cursor = page.next;
      }
      expect(ids.length > 0, search).toBe(!search.includes('drop table'));
      const exported = (await admin.get(`/api/v1/activities/export?${query}`)).body;
      expect(
        exported
          .split('\n')
          .filter(Boolean)
          .map((l) => (JSON.parse(l) as Entry).id),
        search,
      ).toEqual(ids);
    }
  });

  it('shows timestamps in milliseconds while pages and export chunks keep microsecond order', async () => {
    const org = await seedOrganization(t);
    // More rows than one export chunk, a microsecond apart: a page or chunk boundary falls within a millisecond.
    await t.database.db.execute(sql`insert into activities (timestamp, id, kind, activity_type, category,
        organization_id, description)
      select date_trunc('second', now()) - make_interval(secs => i / 1000000.0), gen_random_uuid(), 'event',
        'test.micro', 'test', ${org.id}, 'micro ' || i
      from generate_series(1, 5003) as i`);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    const listed: Entry[] = [];
    for (let cursor: string | null = ''; cursor !== null; ) {
      const page = (
        await admin.get(`/api/v1/activities?activity_type=test.micro&limit=333${cursor ? `&cursor=${cursor}` : ''}`)
      ).json() as PageOf<Entry>;
      listed.push(...page.results);
      cursor = page.next;
    }
    expect(listed.map((r) => r.description)).toEqual(Array.from({ length: 5003 }, (_, i) => `micro ${i + 1}`));
    expect(listed.every((r) => /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/.test(r.timestamp))).toBe(true);
    await recordAudit(t.database.db, {
      type: 'test.micro_one',
      category: 'user_management',
      organizationId: org.id,
      description: 'one',
    });
    const [shown] = ((await admin.get('/api/v1/activities?activity_type=test.micro_one')).json() as PageOf<Entry>)
      .results;
    expect(shown?.timestamp).toMatch(/\.\d{3}Z$/);
    expect(((await admin.get(`/api/v1/activities/${shown?.id}`)).json() as Entry).timestamp).toBe(shown?.timestamp);

    const nd = await admin.get('/api/v1/activities/export?activity_type=test.micro&format=ndjson');
    const lines = nd.body
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Entry);
    expect(lines).toEqual(listed);
    const [header, ...records] = parseCsv(
      (await admin.get('/api/v1/activities/export?activity_type=test.micro&format=csv')).body,
    );
    expect(header).toEqual(Object.keys(listed[0] as Entry));
    expect(records.map((r) => r[header?.indexOf('description') as number])).toEqual(listed.map((r) => r.description));
    expect(records.map((r) => r[header?.indexOf('timestamp') as number])).toEqual(listed.map((r) => r.timestamp));
  });

  /** `count` events of ~600 bytes each, one a second back from now: an export too large to buffer. */
  const seedLargeEvents = (organizationId: string, type: string, count: number) =>
    t.database.db.execute(sql`insert into activities (timestamp, id, kind, activity_type, category,
        organization_id, description)
      select now() - make_interval(secs => i), gen_random_uuid(), 'event', ${type}, 'test', ${organizationId},
        repeat('y', 600)
      from generate_series(1, ${count}::int) as i`);

  /** The app on a real socket (once for the file): what a held download needs. */
  let base: string | undefined;
  const listening = async () => {
    base ??= await t.app.listen({ host: '127.0.0.1', port: 0 });
    return base;
  };

  it('runs a bounded number of exports at once and frees a slot when a client goes away', async () => {
    const org = await seedOrganization(t);
    await seedLargeEvents(org.id, 'test.held', 40_000);
    const admin = await clientWithRole(t, org.id, 'org_admin');
    const url = `${await listening()}/api/v1/activities/export?activity_type=test.held`;
    // Downloads that read their first bytes and then stop reading: ~30 MB each cannot all be buffered,
    // so the export stays running on the server.
    const held = async () => {
      const request = get(url, { headers: { authorization: `Bearer ${admin.token}` } });
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        request.on('response', resolve).on('error', reject);
      });
      expect(response.statusCode).toBe(200);
      await once(response, 'data');
      response.pause();
      return request;
    };
    const downloads = [];
    for (let i = 0; i < MAX_CONCURRENT_EXPORTS; i++) downloads.push(await held());
    const refused = await admin.get('/api/v1/activities/export?activity_type=test.held');
    expect(refused.statusCode).toBe(503);
    expect(refused.headers['retry-after']).toBe('5');
    expect(refused.json()).toMatchObject({ status: 503, code: 'export_busy' });
    // Listing is not an export: it still answers.
    expect((await admin.get('/api/v1/activities/?activity_type=test.held&limit=1')).statusCode).toBe(200);

    downloads.shift()?.destroy();
    let again = refused;
    for (let i = 0; i < 100 && again.statusCode === 503; i++) {
      await new Promise((r) => setTimeout(r, 50));
      again = await admin.get(`/api/v1/activities/export?activity_type=test.held&since=${new Date().toISOString()}`);
    }
    expect(again.statusCode).toBe(200);
    for (const download of downloads) download.destroy();
  });

  it.runIf(process.env.TEST_DATABASE_URL)(
    'ends the database side of an export whose client goes away mid-stream',
    async () => {
      const org = await seedOrganization(t);
      await seedLargeEvents(org.id, 'test.abandoned', 100_000);
      const admin = await clientWithRole(t, org.id, 'org_admin');
      const base = await listening();
      const copying = async () =>
        (
          await queryRows<{ n: number }>(
            t.database.db,
            sql`select count(*)::int as n from pg_stat_activity
              where datname = current_database() and state = 'active' and query like 'copy (%'`,
          )
        )[0]?.n;
      // A client that reads the first bytes, then closes its socket.
      const request = get(`${base}/api/v1/activities/export?activity_type=test.abandoned`, {
        headers: { authorization: `Bearer ${admin.token}` },
      });
      const response = await new Promise<IncomingMessage>((resolve, reject) => {
        request.on('response', resolve).on('error', reject);
      });
      expect(response.statusCode).toBe(200);
      await once(response, 'data');
      expect(await copying()).toBe(1);
      request.destroy();
      for (let i = 0; i < 100 && (await copying()) !== 0; i++) await new Promise((r) => setTimeout(r, 50));
      expect(await copying()).toBe(0);
      // The pool is whole: an export still completes.
      const again = await admin.get(
        `/api/v1/activities/export?activity_type=test.abandoned&since=${new Date(Date.now() - 60_000).toISOString()}`,
      );
      expect(again.statusCode).toBe(200);
      expect(again.body.split('\n').length).toBeGreaterThan(1);
    },
  );
});
