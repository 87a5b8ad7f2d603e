/**
 * Addresses every path refuses as a user's email (src/platform/email-address.ts), each for another
 * reason: a domain that is no host name, written in ASCII or internationalized, or a local part that
 * is not ASCII. The routes' tests send them all and expect the email field named.
 */
export const NOT_EMAIL_ADDRESSES: readonly string[] = [
  'a@b..example', // an empty label
  'a@-x.example', // a label starting with a hyphen
  'a@-bücher.example', // the same in unicode, where punycode would hide it
  `a@${'x'.repeat(64)}.example`, // a label over 63 characters
  `a@bücher${'x'.repeat(60)}.example`, // over 63 once in punycode
  'a@1.2.3.4', // a domain of digits only
  'a@１２３.４５６', // fullwidth digits, digits once in ASCII
  'müller@a.example', // a local part that is not ASCII
  'müller@bücher.example',
];
