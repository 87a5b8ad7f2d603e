import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { usersOfDocument, usersOfFile, usersOfRemoteExport } from './import-sources.js';
import { CSV_HEADER, type ExportUser, toCsvLine } from './user-export.format.js';

const exported: ExportUser = {
  id: '0190e3a0-0000-7000-8000-000000000001',
  username: 'ada',
  email: 'ada@example.com',
  first_name: '',
  last_name: '=SUM(A1)',
  is_active: false,
  date_joined: '2024-05-01T10:00:00.000Z',
  status: 'suspended',
  user_type: null,
  organization: "'=from, as typed",
  organization_id: '0190e3a0-0000-7000-8000-000000000002',
  external_id: 'kc-1',
  scim_external_id: null,
  last_login: null,
  attributes: { grade: 7, note: 'says "hi", then leaves\nfor good' },
};

describe('reading a CSV export back', () => {
  it('gives each user as the JSON export does: nulls, empty text, booleans, attributes, defused formulas', () => {
    const csv =
      CSV_HEADER + toCsvLine(exported) + toCsvLine({ ...exported, email: 'bob@example.com', is_active: true });
    const users = usersOfDocument(`\uFEFF${csv}`, 'users.csv');
    expect(users).toEqual([exported, { ...exported, email: 'bob@example.com', is_active: true }]);
  });

  it('leaves a value of the wrong type as text, for the importer to refuse that entry', () => {
    const csv = `email,is_active,attributes\r\n"a@example.com",maybe,"{not json"\r\n`;
    expect(usersOfDocument(csv, 'users.csv')).toEqual([
      { email: 'a@example.com', is_active: 'maybe', attributes: '{not json' },
    ]);
  });

  it('refuses a CSV without an email column, and a broken one naming where', () => {
    expect(() => usersOfDocument('name,age\r\n"Ada",36\r\n', 'people.csv')).toThrow(/one of them is email/);
    expect(() => usersOfDocument('email,first_name\r\n"a@example.com","Ada","extra"\r\n', 'x.csv')).toThrow(
      /x\.csv: not JSON, NDJSON or CSV \(.*line 2/,
    );
  });

  it('refuses a CSV whose first line names a column twice, naming it', () => {
    expect(() => usersOfDocument('email,email,username\r\n"a@example.com","b@example.com","a"\r\n', 'x.csv')).toThrow(
      'x.csv: the first line names the column "email" twice.',
    );
  });

  it('still reads JSON and NDJSON', () => {
    expect(usersOfDocument('[{"email":"a@example.com"}]', 'a.json')).toEqual([{ email: 'a@example.com' }]);
    expect(usersOfDocument('{"email":"a@example.com"}\n{"email":"b@example.com"}\n', 'a.ndjson')).toHaveLength(2);
  });

  it('reads NDJSON of a single user, and JSON or NDJSON after a byte order mark', () => {
    expect(usersOfDocument('{"email":"a@example.com"}\n', 'one.ndjson')).toEqual([{ email: 'a@example.com' }]);
    expect(usersOfDocument('\uFEFF[{"email":"a@example.com"}]', 'a.json')).toEqual([{ email: 'a@example.com' }]);
    expect(usersOfDocument('\uFEFF{"email":"a@example.com"}\n{"email":"b@example.com"}', 'a.ndjson')).toHaveLength(2);
    expect(() => usersOfDocument('{"name":"not a user"}', 'x.json')).toThrow(/array of users/);
  });
});

describe('reading an export file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-import-sources-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a file that is not UTF-8, naming the first line that is not, instead of replacing its bytes', async () => {
    const path = join(dir, 'excel.csv');
    // "Jürgen" as Windows-1252 writes it (Excel's "CSV" on a German Windows).
    writeFileSync(
      path,
      Buffer.concat([
        Buffer.from('email,first_name\r\n"a@example.com","Ada"\r\n"j@example.com","J'),
        Buffer.from([0xfc]),
        Buffer.from('rgen"\r\n'),
      ]),
    );
    await expect(usersOfFile(path)).rejects.toThrow(`${path}, line 3: holds bytes that are not UTF-8`);
    writeFileSync(path, 'email,first_name\r\n"j@example.com","Jürgen"\r\n');
    expect(await usersOfFile(path)).toEqual([{ email: 'j@example.com', first_name: 'Jürgen' }]);
  });
});

describe("reading a running system's export", () => {
  // "Jürgen" as Windows-1252 writes it, in an answer that claims to be JSON.
  const latin1 = Buffer.concat([
    Buffer.from('{"users": [{"email": "a@example.com"}, {"email": "j@example.com", "first_name": "J'),
    Buffer.from([0xfc]),
    Buffer.from('rgen"}]}'),
  ]);
  let server: Server;
  let url: string;
  beforeAll(async () => {
    server = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(
        req.url?.startsWith('/latin1/')
          ? latin1
          : '\uFEFF{"users": [{"email": "j@example.com", "first_name": "Jürgen"}]}',
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('refuses an answer that is not UTF-8, naming the source, instead of replacing its bytes', async () => {
    const refusal = usersOfRemoteExport({ url: `${url}/latin1/`, token: 'token' });
    await expect(refusal).rejects.toThrow(
      `The source’s export (${url}/latin1/api/admin/export-users/) answered bytes that are not UTF-8.`,
    );
    expect(await usersOfRemoteExport({ url, token: 'token' })).toEqual([
      { email: 'j@example.com', first_name: 'Jürgen' },
    ]);
  });

  it('refuses a source URL holding a user name or password, without repeating it', async () => {
    const refusal = usersOfRemoteExport({ url: 'http://admin:Sup3r-Secret@127.0.0.1:9/', token: 'token' });
    await expect(refusal).rejects.toThrow(/must not hold a user name or password/);
    await expect(refusal).rejects.not.toThrow(/Sup3r-Secret/);
    const unparsable = usersOfRemoteExport({ url: 'http://admin:Sup3r-Secret@bad host/', token: 'token' });
    await expect(unparsable).rejects.not.toThrow(/Sup3r-Secret/);
  });
});
