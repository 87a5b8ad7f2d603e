import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

type Cidr = [ipaddr.IPv4 | ipaddr.IPv6, number];
const cidrs = (...ranges: string[]): Cidr[] => ranges.map((range) => ipaddr.parseCIDR(range));

/**
 * What an installation allows besides the fixed rules below: loopback (the server's own host),
 * allowed by default for single-tenant installations that run their services beside Gatehouse,
 * refused with INTEGRATIONS_ALLOW_LOOPBACK=off so no organization can probe the host's ports.
 */
export interface AddressRules {
  loopback: boolean;
}

/** The address rules of a configuration. */
export function addressRulesOf(config: { integrationsAllowLoopback: boolean }): AddressRules {
  return { loopback: config.integrationsAllowLoopback };
}

const LOOPBACK_IPV4 = cidrs('127.0.0.0/8');
const LOOPBACK_IPV6 = cidrs('::1/128');

/**
 * IPv4 ranges integrations may not reach: link-local (where most cloud metadata endpoints live),
 * "this network" (0.0.0.0 reaches the host itself) and multicast, and the cloud metadata services
 * that lie outside link-local. Private, loopback and carrier-grade NAT addresses are allowed: a
 * self-hosted installation talks to services on its own network.
 */
const REFUSED_IPV4 = cidrs(
  '169.254.0.0/16',
  '0.0.0.0/8',
  '224.0.0.0/4',
  '100.100.100.200/32', // Alibaba Cloud instance metadata, inside the allowed carrier-grade NAT range
  '168.63.129.16/32', // Azure wire server (platform and metadata services), a public address every Azure VM reaches
);

/** The IPv6 counterparts, and cloud metadata services' own IPv6 addresses, which lie in allowed ULA space. */
const REFUSED_IPV6 = cidrs(
  'fe80::/10',
  'ff00::/8',
  '::/128',
  'fd00:ec2::254/128', // AWS instance metadata (IMDS over IPv6)
  'fd20:ce::254/128', // Google Cloud metadata server over IPv6
);

// IPv6 prefixes whose addresses carry an IPv4 address that a translator, a tunnel or the host's
// own stack turns into an IPv4 destination: each is judged as the IPv4 address it carries.
const MAPPED = cidrs('::ffff:0:0/96')[0] as Cidr; // RFC 4291 §2.5.5.2
const TRANSLATED = cidrs('::ffff:0:0:0/96')[0] as Cidr; // RFC 6145 / 7915 (SIIT)
const COMPATIBLE = cidrs('::/96')[0] as Cidr; // RFC 4291 §2.5.5.1, deprecated but still routed by some stacks
const NAT64_WELL_KNOWN = cidrs('64:ff9b::/96')[0] as Cidr; // RFC 6052 §2.1
const NAT64_LOCAL = cidrs('64:ff9b:1::/48')[0] as Cidr; // RFC 8215: any RFC 6052 length from /48 on
const SIX_TO_FOUR = cidrs('2002::/16')[0] as Cidr; // RFC 3056 §2
const TEREDO = cidrs('2001::/32')[0] as Cidr; // RFC 4380 §4

/**
 * Where RFC 6052 §2.2 puts the IPv4 address behind a NAT64 prefix of `length` bits: right after the
 * prefix, skipping bits 64–71 (the "u" octet, always zero), or in the last 32 bits for /96.
 */
function nat64Embedded(bytes: number[], length: 48 | 56 | 64 | 96): number[] {
  if (length === 96) return bytes.slice(12, 16);
  const withoutU = [...bytes.slice(0, 8), ...bytes.slice(9)];
  return withoutU.slice(length / 8, length / 8 + 4);
}

/** The IPv4 addresses an IPv6 address stands for, where it is one of the spellings above. */
function embeddedIpv4(address: ipaddr.IPv6): number[][] {
  const bytes = address.toByteArray();
  const last = bytes.slice(12, 16);
  if (address.match(MAPPED) || address.match(TRANSLATED) || address.match(NAT64_WELL_KNOWN)) return [last];
  // ::1 is the loopback address, not 0.0.0.1; :: is refused in its own right.
  if (address.match(COMPATIBLE)) return last.some((b, i) => (i === 3 ? b > 1 : b !== 0)) ? [last] : [];
  // The local-use prefix may be used at any length from /48 on; any reading that is refused refuses it.
  if (address.match(NAT64_LOCAL)) return ([48, 56, 64, 96] as const).map((length) => nat64Embedded(bytes, length));
  if (address.match(SIX_TO_FOUR)) return [bytes.slice(2, 6)];
  // Teredo: the server (bits 32–63) and the client, stored inverted (bits 96–127).
  if (address.match(TEREDO)) return [bytes.slice(4, 8), last.map((b) => b ^ 0xff)];
  return [];
}

function isRefusedIpv4(octets: number[], rules: AddressRules): boolean {
  const address = new ipaddr.IPv4(octets);
  const refused = rules.loopback ? REFUSED_IPV4 : [...REFUSED_IPV4, ...LOOPBACK_IPV4];
  return refused.some((range) => address.match(range));
}

/**
 * Whether integrations may not connect to `address` (an IP address literal or a DNS answer). An
 * IPv6 address that carries an IPv4 one (NAT64, IPv4-mapped, -translated or -compatible, 6to4,
 * Teredo) is refused when that IPv4 address is, as it reaches the same host. Anything that does not
 * parse is refused. Loopback is refused when `rules` says so.
 */
export function isRefusedAddress(address: string, rules: AddressRules): boolean {
  if (isIP(address) === 0) return true;
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.parse(address);
  } catch {
    return true;
  }
  if (parsed.kind() === 'ipv4') return isRefusedIpv4(parsed.toByteArray(), rules);
  const v6 = parsed as ipaddr.IPv6;
  const refused = rules.loopback ? REFUSED_IPV6 : [...REFUSED_IPV6, ...LOOPBACK_IPV6];
  if (refused.some((range) => v6.match(range))) return true;
  return embeddedIpv4(v6).some((octets) => isRefusedIpv4(octets, rules));
}
