import { domainToASCII, domainToUnicode } from 'node:url';

/** RFC 5321 §4.5.3.1.3: a path holds at most 256 octets, so an address at most 254 characters. */
const EMAIL_MAX_LENGTH = 254;

// ajv-formats' `email` local part, the one every API checked before domains could be international.
// It stays ASCII: Django's EmailValidator, which seed 000's clients run, refuses any other.
const LOCAL_PART = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/i;
const LABEL = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/;
const ASCII = /^\p{ASCII}*$/u;
// The ASCII an internationalized domain may hold beside its other letters. domainToASCII reads a URL's
// host: it would decode `%41` to `a` and pass `_`, which no domain name holds.
const DOMAIN_ASCII = /^(?:[a-z0-9.-]|\P{ASCII})+$/iu;

/**
 * Whether `text` is an email address, as Django's EmailValidator judges one: an ASCII local part, and
 * a domain that is a host name once internationalized labels are spelt in punycode (`bücher.example`
 * is `xn--bcher-kva.example`). Every API, the import, the command line and the configuration judge a
 * user's address by this alone; the address is stored as sent, so a unicode domain and its punycode form are
 * two addresses.
 */
export function isEmailAddress(text: string): boolean {
  if ([...text].length > EMAIL_MAX_LENGTH) return false;
  const at = text.lastIndexOf('@');
  if (at < 0 || !LOCAL_PART.test(text.slice(0, at))) return false;
  const domain = text.slice(at + 1);
  if (ASCII.test(domain)) return isHostName(domain.toLowerCase());
  if (!DOMAIN_ASCII.test(domain)) return false;
  const ascii = domainToASCII(domain);
  // Punycode moves a label's hyphens inside it (`-bücher` is `xn---bcher-…`); RFC 5891 §4.2.3.1
  // refuses them at either end of the label as written.
  return (
    isHostName(ascii) &&
    domainToUnicode(ascii)
      .split('.')
      .every((label) => !/^-|-$/.test(label))
  );
}

/** RFC 1035 §2.3.4 and RFC 1123 §2.1: labels of 1–63, at most 253 in all, and a top-level label that is not a number. */
function isHostName(name: string): boolean {
  if (name.length > 253) return false;
  const labels = name.split('.');
  const top = labels[labels.length - 1] as string;
  return labels.length > 1 && labels.every((label) => LABEL.test(label)) && !/^[0-9]+$/.test(top);
}
