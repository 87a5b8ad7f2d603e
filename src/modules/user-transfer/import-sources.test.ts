import { describe, expect, it } from 'vitest';
import { usersOfDocument } from './import-sources.js';
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
