import { and, not, or, type SQL, sql } from 'drizzle-orm';
import type { Filter } from 'scim2-parse-filter';
import { parseFilter as parseTokens, type Token, Tokens, tokenizer } from 'scim2-parse-filter/lib/src/parser.js';
import { isUuid } from '../../platform/db/columns.js';
import { escapeLike } from '../../platform/db/like.js';
import { parseDate, parseDateTime } from '../../platform/http/date-time.js';
import { UNSTORABLE_TEXT, unstorableTextField } from '../../platform/http/text-guard.js';
import { ScimError, scimErrors } from './scim.errors.js';

/**
 * SCIM filters (RFC 7644 §3.4.2.2) → a Drizzle SQL condition. The expression is parsed by
 * scim2-parse-filter; every value it holds reaches the database as a bound parameter. Attribute
 * paths are looked up in a fixed map per resource type, so only known column expressions are ever
 * written into the statement; an unknown attribute is refused with 400 invalidFilter.
 */

/** How one filterable attribute reads from the database. */
export type FilterAttribute =
  /**
   * Text; `caseExact: false` compares lower-cased (RFC 7643 §2.2 caseExact). With `fallback`, the
   * resource shows `fallback.expr` where `fallback.when` holds (a user without a username shows its
   * email as userName), and a comparison matches either way, each side on its own index.
   */
  | {
      type: 'string';
      expr: SQL;
      caseExact: boolean;
      within?: (condition: SQL) => SQL;
      fallback?: { when: SQL; expr: SQL };
      /** The form values are stored in (usernames: NFC), given to compared values too. */
      normalize?: (value: string) => string;
    }
  | { type: 'boolean'; expr: SQL }
  | { type: 'dateTime'; expr: SQL }
  /** A uuid column: a value that is no uuid simply matches nothing. */
  | { type: 'id'; expr: SQL; within?: (condition: SQL) => SQL }
  /** A value every resource has (`emails.type` is always "work"): decided without the database. */
  | { type: 'constant'; value: string | boolean };

/** Resolves a normalised path (lower-case, core schema prefix removed) to its attribute. */
export type AttributeMap = Record<string, FilterAttribute>;

const CORE_PREFIXES = ['urn:ietf:params:scim:schemas:core:2.0:user:', 'urn:ietf:params:scim:schemas:core:2.0:group:'];
export const ENTERPRISE_URN = 'urn:ietf:params:scim:schemas:extension:enterprise:2.0:User';
const ENTERPRISE_PREFIX = `${ENTERPRISE_URN.toLowerCase()}:`;

/**
 * Attribute names are case-insensitive (RFC 7643 §2.1). The core schema's URN may prefix a path;
 * the enterprise extension's becomes `enterprise:`.
 */
export function normalisePath(path: string): string {
  let p = path.toLowerCase();
  for (const prefix of CORE_PREFIXES) if (p.startsWith(prefix)) p = p.slice(prefix.length);
  if (p.startsWith(ENTERPRISE_PREFIX)) p = `enterprise:${p.slice(ENTERPRISE_PREFIX.length)}`;
  return p;
}

/** Parses a filter expression; a syntax error is a 400 invalidFilter. */
export function parseFilter(expression: string): Filter {
  if (expression.length > 4096) throw scimErrors.invalidFilter('The filter is longer than 4096 characters.');
  let tokens: Token[];
  try {
    tokens = tokenizer(expression).map(decodeQuoted);
  } catch (err) {
    if (err instanceof ScimError) throw err;
    // The library names the rest of the expression from the first character it cannot read.
    const rest = (err as Error).message.replace(/^unexpected token /, '');
    throw scimErrors.invalidFilter(`The filter cannot be parsed: "${rest.slice(0, 40)}" cannot be read.`);
  }
  assertNotIsParenthesised(tokens);
  // As the library's parse() does, on tokens whose strings are decoded.
  const list = new Tokens(tokens);
  try {
    const filter = parseTokens(list);
    const after = list.peek();
    if (after.type !== 'EOT') {
      throw scimErrors.invalidFilter(
        `The filter cannot be parsed: "${after.literal}" follows a complete expression (join expressions with and / or).`,
      );
    }
    return filter;
  } catch (err) {
    if (err instanceof ScimError) throw err;
    throw scimErrors.invalidFilter(
      `The filter cannot be parsed: ${whatIsWrong((err as Error).message, tokens, list.i)}.`,
    );
  }
}

/**
 * The parser's refusal in the filter's own terms. Its messages name its token types ("[(EOT)] is not
 * json"); what it refused is the token it last took (`taken`, one past it), the one before says where.
 */
function whatIsWrong(message: string, tokens: Token[], taken: number): string {
  const token = tokens[taken - 1];
  const before = tokens[taken - 2]?.literal;
  const ended = token === undefined || token.type === 'EOT';
  const quoted = `"${token?.literal ?? ''}"`;
  if (message.endsWith('is not json')) {
    return ended
      ? `a value is missing after "${before}"`
      : `${quoted} after "${before}" is not a value (use a quoted string, a number, true, false or null)`;
  }
  if (message.endsWith('as valFilter operator')) {
    return ended
      ? `an operator is missing after "${before}"`
      : `${quoted} is not an operator after "${before}" (use eq, ne, co, sw, ew, gt, lt, ge, le or pr)`;
  }
  if (message.endsWith("expected ')'"))
    return ended ? 'a closing ")" is missing' : `${quoted} stands where ")" belongs`;
  if (message.endsWith("expected ']'"))
    return ended ? 'a closing "]" is missing' : `${quoted} stands where "]" belongs`;
  if (ended) return before === undefined ? 'the filter is empty' : `an expression is missing after "${before}"`;
  return `${quoted} cannot start an expression (an attribute, "not" or "(" can)`;
}

/**
 * RFC 7644 §3.4.2.2: a compValue string is a JSON string (RFC 7159), so `"user\u0031"` is "user1"
 * and `"back\\"` ends in one backslash. scim2-parse-filter's tokenizer doubles every backslash not
 * followed by a quote before it reads the literal as JSON, which reads every escape but \" as
 * literal text; the literal as written is recovered (that doubling is reversible) and decoded here.
 * A literal that is no valid JSON string (`"CORP\jdoe"`) keeps the library's lenient reading, where
 * a backslash stands for itself. The library then reads a literal that is JSON as written.
 */
function decodeQuoted(token: Token): Token {
  if (token.type !== 'Quoted') return token;
  const written = token.literal.replace(/\\\\|\\"/g, (pair) => (pair === '\\\\' ? '\\' : pair));
  let decoded: unknown;
  try {
    decoded = JSON.parse(written);
  } catch {
    return token;
  }
  if (typeof decoded !== 'string') return token;
  // `\u0000` or half a surrogate pair decodes to text the database cannot hold (text-guard.ts).
  if (unstorableTextField(decoded) !== undefined) throw scimErrors.invalidFilter(`A compared value ${UNSTORABLE_TEXT}`);
  return { type: 'Quoted', literal: JSON.stringify(decoded) };
}

/**
 * RFC 7644 §3.4.2.2: `"not" "(" valFilter ")"`. scim2-parse-filter also reads `not a eq b` and gives
 * the same tree, so the check is made on its tokens: quoted strings are one token, and an attribute
 * name holding "not" (notes, urn:…:not) is a word of its own.
 */
function assertNotIsParenthesised(tokens: Token[]): void {
  tokens.forEach((token, i) => {
    if (token.type === 'Word' && token.literal.toLowerCase() === 'not' && tokens[i + 1]?.literal !== '(') {
      throw scimErrors.invalidFilter('"not" must be followed by a parenthesised filter: not (attr op value).');
    }
  });
}

/** The attribute paths a filter compares, normalised; a value path's as `attr.sub` (`emails.type`). */
export function filterPaths(f: Filter, prefix = ''): string[] {
  switch (f.op) {
    case 'and':
    case 'or':
      return f.filters.flatMap((g) => filterPaths(g, prefix));
    case 'not':
      return filterPaths(f.filter, prefix);
    case '[]':
      return filterPaths(f.valFilter, `${f.attrPath}.`);
    default:
      return [normalisePath(`${prefix}${f.attrPath}`)];
  }
}

/** Compiles a filter (text or parsed) against an attribute map. */
export function compileFilter(filter: string | Filter, attributes: AttributeMap): SQL {
  const ast = typeof filter === 'string' ? parseFilter(filter) : filter;
  return compile(ast, attributes, '', 0);
}

const TRUE = sql`true`;
const FALSE = sql`false`;

function compile(f: Filter, attributes: AttributeMap, prefix: string, depth: number): SQL {
  if (depth > 50) throw scimErrors.invalidFilter('The filter is nested too deeply.');
  switch (f.op) {
    case 'and':
    case 'or': {
      const parts = f.filters.map((g) => compile(g, attributes, prefix, depth + 1));
      return (f.op === 'and' ? and(...parts) : or(...parts)) as SQL;
    }
    case 'not':
      // A comparison on an absent attribute is unknown (NULL) in SQL but false for SCIM (RFC 7644
      // §3.4.2.2), so its negation must be true: `not (externalId eq "x")` finds users without one.
      return sql`((${compile(f.filter, attributes, prefix, depth + 1)}) is not true)`;
    case '[]': {
      if (prefix) throw scimErrors.invalidFilter('Value filters cannot be nested.');
      return sql`(${compile(f.valFilter, attributes, `${normalisePath(f.attrPath)}.`, depth + 1)})`;
    }
    case 'pr':
      return present(attributeOf(attributes, prefix, f.attrPath));
    default:
      return compare(attributeOf(attributes, prefix, f.attrPath), f.op, f.compValue, f.attrPath);
  }
}

function attributeOf(attributes: AttributeMap, prefix: string, path: string): FilterAttribute {
  const key = prefix + normalisePath(path);
  const attribute = attributes[key] ?? attributes[`${key}.value`];
  if (!attribute) throw scimErrors.invalidFilter(`Filtering on "${path}" is not supported.`);
  return attribute;
}

function present(a: FilterAttribute): SQL {
  switch (a.type) {
    case 'constant':
      return TRUE;
    case 'boolean':
      return TRUE;
    case 'string':
      return eitherWay(a, (expr) => wrap(a, sql`(${expr} is not null and ${expr} <> '')`));
    default:
      return wrap(a, sql`${a.expr} is not null`);
  }
}

/** The condition on a string attribute's value, or on its fallback where that is what it shows. */
function eitherWay(a: Extract<FilterAttribute, { type: 'string' }>, condition: (expr: SQL) => SQL): SQL {
  if (!a.fallback) return condition(a.expr);
  return sql`(${condition(a.expr)} or (${a.fallback.when} and ${condition(a.fallback.expr)}))`;
}

function wrap(a: FilterAttribute, condition: SQL): SQL {
  return 'within' in a && a.within ? a.within(condition) : condition;
}

type Operator = 'eq' | 'ne' | 'co' | 'sw' | 'ew' | 'gt' | 'lt' | 'ge' | 'le';
const ORDERING: Record<string, SQL> = { gt: sql`>`, ge: sql`>=`, lt: sql`<`, le: sql`<=` };

function compare(a: FilterAttribute, op: Operator, value: unknown, path: string): SQL {
  if (value === null) {
    // RFC 7644 §3.4.2.2: null stands for "no value".
    if (op === 'eq') return not(present(a));
    if (op === 'ne') return present(a);
    throw scimErrors.invalidFilter(`"${op} null" is not a comparison on "${path}".`);
  }
  switch (a.type) {
    case 'constant':
      return compareConstant(a.value, op, value, path);
    case 'boolean': {
      if (typeof value !== 'boolean') throw scimErrors.invalidFilter(`"${path}" compares with true or false.`);
      if (op !== 'eq' && op !== 'ne') throw scimErrors.invalidFilter(`"${op}" does not apply to boolean "${path}".`);
      return (op === 'eq') === value ? sql`(${a.expr})` : not(a.expr);
    }
    case 'dateTime': {
      // RFC 7643 §2.3.5: an xsd:dateTime; one without an offset is read as UTC, a date alone as its
      // midnight UTC. Years 0001–9999 only (platform/http/date-time.ts says why).
      const instant =
        typeof value === 'string' ? (parseDateTime(value, { zoneOptional: true }) ?? parseDate(value)) : undefined;
      if (!instant) {
        throw scimErrors.invalidFilter(
          `"${path}" compares with a dateTime such as "2026-01-31T00:00:00Z", in the years 0001 to 9999.`,
        );
      }
      const at = instant.toISOString();
      if (op === 'eq') return sql`${a.expr} = ${at}::timestamptz`;
      if (op === 'ne') return sql`${a.expr} is distinct from ${at}::timestamptz`;
      const ordering = ORDERING[op];
      if (!ordering) throw scimErrors.invalidFilter(`"${op}" does not apply to dateTime "${path}".`);
      return sql`${a.expr} ${ordering} ${at}::timestamptz`;
    }
    case 'id': {
      if (typeof value !== 'string') throw scimErrors.invalidFilter(`"${path}" compares with a string.`);
      if (op === 'eq') return isUuid(value) ? wrap(a, sql`${a.expr} = ${value.toLowerCase()}::uuid`) : FALSE;
      if (op === 'ne') return isUuid(value) ? not(wrap(a, sql`${a.expr} = ${value.toLowerCase()}::uuid`)) : TRUE;
      return compareText(sql`${a.expr}::text`, false, op, value, (c) => wrap(a, c));
    }
    case 'string': {
      if (typeof value !== 'string') throw scimErrors.invalidFilter(`"${path}" compares with a string.`);
      const compared = a.normalize ? a.normalize(value) : value;
      const text = (o: Operator) =>
        eitherWay(a, (expr) => compareText(expr, a.caseExact, o, compared, (c) => wrap(a, c)));
      if (op === 'ne') return not(sql`coalesce(${text('eq')}, false)`);
      return text(op);
    }
  }
}

function compareText(expr: SQL, caseExact: boolean, op: Operator, value: string, within: (condition: SQL) => SQL): SQL {
  const lhs = caseExact ? expr : sql`lower(${expr})`;
  const param = caseExact ? value : value.toLowerCase();
  switch (op) {
    case 'eq':
    case 'ne':
      // A case-insensitive equality in the byte collation of the email and username indexes
      // (users.table.ts); equality under a deterministic collation is byte equality either way.
      return within(caseExact ? sql`${lhs} = ${param}` : sql`${lhs} collate "C" = ${param}`);
    case 'co':
      return within(sql`${lhs} like ${`%${escapeLike(param)}%`}`);
    case 'sw':
      return within(sql`${lhs} collate "C" like ${`${escapeLike(param)}%`}`);
    case 'ew':
      return within(sql`${lhs} like ${`%${escapeLike(param)}`}`);
    default:
      return within(sql`${lhs} collate "C" ${ORDERING[op] as SQL} ${param}`);
  }
}

function compareConstant(constant: string | boolean, op: Operator, value: unknown, path: string): SQL {
  if (typeof constant === 'boolean') {
    if (typeof value !== 'boolean' || (op !== 'eq' && op !== 'ne')) {
      throw scimErrors.invalidFilter(`"${path}" compares with eq/ne and true or false.`);
    }
    return (constant === value) === (op === 'eq') ? TRUE : FALSE;
  }
  if (typeof value !== 'string') throw scimErrors.invalidFilter(`"${path}" compares with a string.`);
  const c = constant.toLowerCase();
  const v = value.toLowerCase();
  const result =
    op === 'eq'
      ? c === v
      : op === 'ne'
        ? c !== v
        : op === 'co'
          ? c.includes(v)
          : op === 'sw'
            ? c.startsWith(v)
            : op === 'ew'
              ? c.endsWith(v)
              : op === 'gt'
                ? c > v
                : op === 'ge'
                  ? c >= v
                  : op === 'lt'
                    ? c < v
                    : c <= v;
  return result ? TRUE : FALSE;
}
