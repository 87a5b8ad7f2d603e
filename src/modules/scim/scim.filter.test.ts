import { PgDialect } from 'drizzle-orm/pg-core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compileFilter } from './scim.filter.js';
import { applyPatch, parsePatchPath, readPatchBody } from './scim.patch.js';
import { USER_FILTER_ATTRIBUTES } from './scim.user-mapping.js';

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

  it('refuses unknown attributes and malformed expressions with invalidFilter', () => {
    for (const filter of ['password eq "x"', 'userName', 'userName eq "x" and', 'emails[value eq "x"]]']) {
      expect(() => render(filter), filter).toThrowError(expect.objectContaining({ scimType: 'invalidFilter' }));
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
      applyPatch(user, ops({ op: 'replace', path: 'emails[type eq "other"].value', value: 'x' })),
    ).toThrowError(expect.objectContaining({ scimType: 'noTarget' }));
  });
});
