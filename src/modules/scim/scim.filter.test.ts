import { PgDialect } from 'drizzle-orm/pg-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileFilter, parseFilter } from './scim.filter.js';
import { applyPatch, parsePatchPath, readPatchBody } from './scim.patch.js';
import { USER_FILTER_ATTRIBUTES, USER_PATCH_SCHEMA } from './scim.user-mapping.js';

const dialect = new PgDialect();
const render = (filter: string) => dialect.sqlToQuery(compileFilter(filter, USER_FILTER_ATTRIBUTES));

describe('SCIM filter compiler', () => {
  it('never writes a compared value into the statement: every value is a bound parameter', () => {
    fc.assert(
      fc.property(
        fc.string({ minLength: 1, maxLength: 40 }),
        fc.constantFrom('eq', 'ne', 'co', 'sw', 'ew', 'gt', 'le'),
        fc.constantFrom('userName', 'name.familyName', 'title', 'externalId', 'emails.value'),
        (text, op, attribute) => {
          // Marked so that the value cannot occur in the statement by chance.
          const value = `§${text}§`;
          const quoted = JSON.stringify(value);
          const query = render(`${attribute} ${op} ${quoted} or not (displayName ${op} ${quoted})`);
          expect(query.sql).not.toContain('§');
          expect(query.params.length).toBeGreaterThanOrEqual(2);
        },
      ),
    );
  });

  it('takes "not" only before a parenthesised filter (RFC 7644 §3.4.2.2), wherever it stands', () => {
    for (const filter of ['not userName eq "x"', 'title pr and Not title eq "x"', 'emails[not value eq "x"]']) {
      expect(() => render(filter), filter).toThrowError(
        expect.objectContaining({ status: 400, scimType: 'invalidFilter', message: expect.stringMatching(/not/) }),
      );
    }
    for (const filter of [
      'not (userName eq "x")',
      'not(userName eq "x")',
      'title pr and NOT (title eq "not x")',
      'userName eq "not userName eq x"',
      'nickName eq "x" or emails[not (value eq "not")]',
      'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "not"',
    ]) {
      expect(() => render(filter), filter).not.toThrow();
    }
  });

  it('reads a compared string as a JSON string (RFC 7644 §3.4.2.2, RFC 7159)', () => {
    const compValue = (filter: string) => (parseFilter(filter) as { compValue: unknown }).compValue;
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), fc.string({ unit: 'binary-ascii' }), (a, b) => {
        for (const value of [a, b, `${a}\\`, `\\${b}"`]) {
          if (/\0/.test(value)) continue;
          expect(compValue(`title eq ${JSON.stringify(value)}`)).toBe(value);
        }
      }),
    );
    expect(compValue(String.raw`userName eq "user\u0031"`)).toBe('user1');
    expect(compValue(String.raw`title eq "back\\"`)).toBe('back\\');
    expect(compValue(String.raw`title eq "say \"hi\"\n"`)).toBe('say "hi"\n');
    expect(parseFilter(String.raw`emails[value eq "a\u0040b"]`)).toMatchObject({ valFilter: { compValue: 'a@b' } });
    // A literal that is no JSON string keeps its backslash as written, as identity providers send it.
    expect(compValue(String.raw`userName eq "CORP\jdoe"`)).toBe('CORP\\jdoe');
    // Text the database cannot hold is refused, not sent.
    for (const filter of [String.raw`title eq "a\u0000"`, String.raw`title eq "\ud800"`]) {
      expect(() => parseFilter(filter), filter).toThrowError(expect.objectContaining({ scimType: 'invalidFilter' }));
    }
  });

  it('refuses unknown attributes and malformed expressions with invalidFilter', () => {
    for (const filter of ['password eq "x"', 'userName', 'userName eq "x" and', 'emails[value eq "x"]]']) {
      expect(() => render(filter), filter).toThrowError(expect.objectContaining({ scimType: 'invalidFilter' }));
    }
  });

  it('says in the filter’s own terms what is wrong, never in the parser’s', () => {
    const cases: [string, string][] = [
      ['userName eq', 'a value is missing after "eq"'],
      ['userName eq bogus', '"bogus" after "eq" is not a value'],
      ['userName', 'an operator is missing after "userName"'],
      ['userName is "x"', '"is" is not an operator after "userName"'],
      ['userName eq "x" and', 'an expression is missing after "and"'],
      ['(userName eq "x"', 'a closing ")" is missing'],
      ['emails[value eq "x"', 'a closing "]" is missing'],
      ['userName eq "x" userName eq "y"', '"userName" follows a complete expression'],
      ['userName eq "x" $', '"$" cannot be read'],
      [')', '")" cannot start an expression'],
    ];
    for (const [filter, message] of cases) {
      let thrown: unknown;
      try {
        parseFilter(filter);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, filter).toMatchObject({ scimType: 'invalidFilter', message: expect.stringContaining(message) });
      expect((thrown as Error).message, filter).not.toMatch(/EOT|not json|Unexpected token|valFilter|Word|Bracket/);
    }
  });
});

describe('SCIM PATCH', () => {
  const user = {
    userName: 'ada',
    emails: [
      { value: 'ada@work.example', type: 'work', primary: true },
      { value: 'ada@home.example', type: 'home' },
    ],
    name: { givenName: 'Ada' },
  };
  const ops = (...operations: unknown[]) =>
    readPatchBody({ schemas: ['urn:ietf:params:scim:api:messages:2.0:PatchOp'], Operations: operations });

  it('parses paths with URNs, value filters and sub-attributes', () => {
    expect(parsePatchPath('emails[type eq "work" and value co "]"].value')).toMatchObject({
      attribute: 'emails',
      sub: 'value',
      filter: { op: 'and' },
    });
    expect(parsePatchPath('urn:ietf:params:scim:schemas:core:2.0:User:name.givenName')).toMatchObject({
      attribute: 'name',
      sub: 'givenName',
    });
    expect(parsePatchPath('urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department')).toMatchObject({
      extension: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User',
      attribute: 'department',
    });
    expect(() => parsePatchPath('emails[type eq "work"')).toThrowError(
      expect.objectContaining({ scimType: 'invalidPath' }),
    );
  });

  it('adds, replaces and removes, matching value filters case-insensitively', () => {
    const out = applyPatch(
      user,
      ops(
        { op: 'replace', path: 'emails[type eq "WORK"].value', value: 'new@work.example' },
        { op: 'remove', path: 'emails[type eq "home"]' },
        { op: 'add', path: 'Name.familyName', value: 'Lovelace' },
        { op: 'add', value: { nickName: 'A' } },
      ),
      USER_PATCH_SCHEMA,
    );
    expect(out).toEqual({
      userName: 'ada',
      emails: [{ value: 'new@work.example', type: 'work', primary: true }],
      name: { givenName: 'Ada', familyName: 'Lovelace' },
      nickName: 'A',
    });
    // The input is left untouched (a refused PATCH must change nothing).
    expect(user.emails).toHaveLength(2);
  });

  it('answers noTarget when a value filter matches nothing on replace', () => {
    expect(() =>
      applyPatch(user, ops({ op: 'replace', path: 'emails[type eq "other"].value', value: 'x' }), USER_PATCH_SCHEMA),
    ).toThrowError(expect.objectContaining({ scimType: 'noTarget' }));
  });

  it('answers invalidPath for a value filter on a single-valued attribute or on a sub-attribute the value lacks', () => {
    for (const path of ['title[value eq "x"]', 'name[givenName eq "Ada"].familyName', 'emails[nosuch eq "x"].value']) {
      expect(() => applyPatch(user, ops({ op: 'replace', path, value: 'y' }), USER_PATCH_SCHEMA), path).toThrowError(
        expect.objectContaining({ scimType: 'invalidPath' }),
      );
    }
  });

  it('creates the value an add names through a filter of equalities when none matches, as Entra ID sends it', () => {
    const added = applyPatch(
      user,
      ops(
        { op: 'Add', path: 'phoneNumbers[type eq "mobile"].value', value: '+49 30 1234' },
        { op: 'add', path: 'emails[type eq "home" and primary eq true].value', value: 'home@example.com' },
        { op: 'add', path: 'addresses[type eq "work"]', value: { streetAddress: '1 Main St' } },
      ),
      USER_PATCH_SCHEMA,
    );
    expect(added.phoneNumbers).toEqual([{ type: 'mobile', value: '+49 30 1234' }]);
    // The new primary address leaves the others unmarked.
    expect(added.emails).toEqual([
      { value: 'ada@work.example', type: 'work', primary: false },
      { value: 'ada@home.example', type: 'home' },
      { type: 'home', primary: true, value: 'home@example.com' },
    ]);
    expect(added.addresses).toEqual([{ type: 'work', streetAddress: '1 Main St' }]);
    // A filter that names no value to create still has no target.
    expect(() =>
      applyPatch(user, ops({ op: 'add', path: 'phoneNumbers[type co "mob"].value', value: 'x' }), USER_PATCH_SCHEMA),
    ).toThrowError(expect.objectContaining({ scimType: 'noTarget' }));
  });

  it('answers invalidPath for a name the User does not have, whatever the operation and case', () => {
    const refused: unknown[] = [
      { op: 'replace', path: 'nosuchAttribute', value: 'x' },
      { op: 'add', path: 'name.nosuchPart', value: 'x' },
      { op: 'remove', path: 'emails[type eq "work"].nosuch' },
      { op: 'replace', path: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:nosuch', value: 'x' },
      { op: 'replace', value: { nosuchAttribute: 'x' } },
      { op: 'add', value: { 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User': { nosuch: 'x' } } },
    ];
    for (const op of refused) {
      expect(() => applyPatch(user, ops(op), USER_PATCH_SCHEMA), JSON.stringify(op)).toThrowError(
        expect.objectContaining({ status: 400, scimType: 'invalidPath' }),
      );
    }
    expect(applyPatch(user, ops({ op: 'replace', path: 'USERNAME', value: 'b' }), USER_PATCH_SCHEMA)).toMatchObject({
      userName: 'b',
    });
  });

  it('answers mutability for a path to a read-only attribute, and skips one inside a value without a path', () => {
    const resource = { ...user, id: 'u1', meta: { resourceType: 'User' }, groups: [] };
    for (const op of [
      { op: 'replace', path: 'id', value: 'u2' },
      { op: 'remove', path: 'meta' },
      { op: 'replace', path: 'Meta.lastModified', value: '2020-01-01T00:00:00Z' },
      { op: 'add', path: 'groups', value: [{ value: 'g' }] },
      {
        op: 'replace',
        path: 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName',
        value: 'x',
      },
    ]) {
      expect(() => applyPatch(resource, ops(op), USER_PATCH_SCHEMA), JSON.stringify(op)).toThrowError(
        expect.objectContaining({ status: 400, scimType: 'mutability' }),
      );
    }
    const out = applyPatch(
      resource,
      ops({ op: 'replace', value: { id: 'u2', meta: {}, schemas: ['x'], nickName: 'A', 'name.formatted': 'Z' } }),
      USER_PATCH_SCHEMA,
    );
    expect(out).toEqual({ ...resource, nickName: 'A' });
  });
});
