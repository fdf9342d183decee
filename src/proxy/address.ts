import { domainToASCII } from "node:url";

/** Result of reading the host part of a request target (absolute URL authority or CONNECT target). */
export type HostKind =
  /** Lower case, punycode, one trailing dot removed; labels [a-z0-9_-] of 1-63, at most 253 in all. */
  | { kind: "name"; name: string }
  /** Canonical text: dotted IPv4, or compressed lower-case IPv6 without brackets or zone. */
  | { kind: "ip"; address: string; family: 4 | 6 }
  | { kind: "invalid"; why: string };

export type AddressClass =
  | "public"
  | "loopback"
  | "private"
  | "link_local"
  | "cgnat"
  | "unique_local"
  | "multicast"
  | "unspecified"
  | "reserved"
  | "metadata"
  // Not produced by classifyAddress, which reports the embedded IPv4's own class; kept so callers
  // that label embedded forms separately share one vocabulary.
  | "mapped_private";

// Longer raw hosts are refused before any mapping work; a valid name is at most 254 characters
// (253 + one trailing dot), and 1 KiB leaves room for non-ASCII spellings that map down.
const MAX_RAW_HOST = 1024;
const MAX_NAME = 253;
const LABEL = /^[a-z0-9_-]{1,63}$/;
// The WHATWG "forbidden domain code points" plus whitespace: none may appear in a host, before or
// after IDNA mapping. `%` is here on purpose: we never percent-decode a host (`a%2eb` is refused).
// eslint-disable-next-line no-control-regex
const FORBIDDEN = /[\x00-\x20\x7f#%/:<>?@[\\\]^|\s]/u;

function invalid(why: string): HostKind {
  return { kind: "invalid", why };
}

/** The host as a request names it: a name, an IPv4 address, or an IPv6 one in brackets. */
export function hostText(host: HostKind): string {
  if (host.kind === "ip") return host.family === 6 ? `[${host.address}]` : host.address;
  return host.kind === "name" ? host.name : "";
}

/**
 * Reads a raw host as it appears in a request. Any IPv4 spelling that getaddrinfo/WHATWG URL would
 * treat as an address (2130706433, 0x7f.1, 0177.0.0.1, 127.1, 0x7f000001) is an IP; bracketed IPv6
 * is an IP; zone ids (%25eth0), percent-escapes, NUL, '@', whitespace, empty host -> invalid.
 */
export function parseHost(raw: string): HostKind {
  if (raw === "") return invalid("empty host");
  if (raw.length > MAX_RAW_HOST) return invalid("host too long");
  if (raw.startsWith("[")) {
    if (!raw.endsWith("]")) return invalid("unterminated IPv6 literal");
    const inner = raw.slice(1, -1);
    // A zone id only makes sense on this machine's links, and `%` would need decoding: refuse.
    if (inner.includes("%")) return invalid("IPv6 zone ids are not accepted");
    const groups = parseIPv6(inner);
    if (groups === undefined) return invalid("malformed IPv6 literal");
    return { kind: "ip", address: formatIPv6(groups), family: 6 };
  }
  if (FORBIDDEN.test(raw)) return invalid("host contains a forbidden character");
  let host: string;
  // eslint-disable-next-line no-control-regex
  if (/^[\x00-\x7f]*$/.test(raw) && !/xn--/i.test(raw)) {
    host = raw.toLowerCase();
  } else {
    // UTS 46 mapping and punycode, as WHATWG URL does: fullwidth letters, `。`, upper case all
    // fold, and a broken `xn--` label fails. The result is re-checked below like any ASCII host.
    host = domainToASCII(raw);
    if (host === "") return invalid("host is not a valid internationalized name");
    if (FORBIDDEN.test(host)) return invalid("host maps to a forbidden character");
  }
  if (endsInNumber(host)) {
    // getaddrinfo and WHATWG URL both read these as IPv4 (inet_aton forms), so we must too.
    const v4 = parseIPv4Loose(host);
    if (v4 === undefined) return invalid("malformed IPv4 address");
    return { kind: "ip", address: formatIPv4(v4), family: 4 };
  }
  const name = host.endsWith(".") ? host.slice(0, -1) : host;
  if (name.length > MAX_NAME) return invalid("host name longer than 253 characters");
  for (const label of name.split(".")) {
    if (label === "") return invalid("host name has an empty label");
    if (!LABEL.test(label)) return invalid("host name has an invalid label");
  }
  return { kind: "name", name };
}

/**
 * Parses "host:port" of a CONNECT target or an authority; port must be 1-65535 decimal without
 * sign or leading zero; `defaultPort` used when absent (CONNECT passes undefined => missing port
 * is invalid). An invalid host makes the whole authority invalid.
 */
export function parseAuthority(
  raw: string,
  defaultPort: number | undefined,
): { host: HostKind; port: number } | { invalid: string } {
  let hostText: string;
  let portText: string | undefined;
  if (raw.startsWith("[")) {
    const end = raw.indexOf("]");
    if (end === -1) return { invalid: "unterminated IPv6 literal" };
    hostText = raw.slice(0, end + 1);
    const rest = raw.slice(end + 1);
    if (rest !== "" && !rest.startsWith(":")) return { invalid: "junk after IPv6 literal" };
    portText = rest === "" ? undefined : rest.slice(1);
  } else {
    const colon = raw.indexOf(":");
    if (colon !== raw.lastIndexOf(":")) return { invalid: "IPv6 address must be bracketed" };
    hostText = colon === -1 ? raw : raw.slice(0, colon);
    portText = colon === -1 ? undefined : raw.slice(colon + 1);
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) return { invalid: "missing port" };
    port = defaultPort;
  } else {
    const parsed = parsePort(portText);
    if (parsed === undefined) return { invalid: "port must be 1-65535 in plain decimal" };
    port = parsed;
  }
  const host = parseHost(hostText);
  if (host.kind === "invalid") return { invalid: host.why };
  return { host, port };
}

function parsePort(text: string): number | undefined {
  if (!/^[1-9][0-9]{0,4}$/.test(text)) return undefined;
  const port = Number(text);
  return port <= 65_535 ? port : undefined;
}

// ---------------------------------------------------------------------------------------------
// IPv4: the WHATWG URL IPv4 parser, which accepts the same spellings as inet_aton (decimal,
// 0x hex and 0-prefixed octal parts; 1 to 4 parts, the last filling the remaining bytes).

/** The WHATWG "ends in a number" check: such a host must parse as IPv4 or it is invalid. */
function endsInNumber(host: string): boolean {
  const parts = host.split(".");
  if (parts[parts.length - 1] === "") {
    if (parts.length === 1) return false;
    parts.pop();
  }
  const last = parts[parts.length - 1] ?? "";
  if (/^[0-9]+$/.test(last)) return true;
  return parseIPv4Number(last) !== undefined;
}

function parseIPv4Number(part: string): number | undefined {
  if (part === "") return undefined;
  let digits = part;
  let radix = 10;
  if (/^0x/i.test(part)) {
    digits = part.slice(2);
    radix = 16;
    if (digits === "") return 0;
    if (!/^[0-9a-f]+$/i.test(digits)) return undefined;
  } else if (part.length > 1 && part.startsWith("0")) {
    digits = part.slice(1);
    radix = 8;
    if (!/^[0-7]+$/.test(digits)) return undefined;
  } else if (!/^[0-9]+$/.test(digits)) {
    return undefined;
  }
  // Precision loss on absurdly long inputs is harmless: they are far out of range either way.
  return Number.parseInt(digits, radix);
}

/** Returns the address as an unsigned 32-bit number, or undefined. */
function parseIPv4Loose(host: string): number | undefined {
  const parts = host.split(".");
  if (parts[parts.length - 1] === "" && parts.length > 1) parts.pop();
  if (parts.length > 4) return undefined;
  const numbers: number[] = [];
  for (const part of parts) {
    const n = parseIPv4Number(part);
    if (n === undefined) return undefined;
    numbers.push(n);
  }
  const last = numbers.pop() ?? 0;
  if (numbers.some((n) => n > 255)) return undefined;
  if (last >= 256 ** (4 - numbers.length)) return undefined;
  let value = last;
  numbers.forEach((n, i) => {
    value += n * 256 ** (3 - i);
  });
  return value;
}

/** Strict dotted decimal, as getaddrinfo prints: four parts 0-255, no leading zeros. */
function parseIPv4Strict(text: string): number | undefined {
  const m =
    /^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$/.exec(
      text,
    );
  if (m === null) return undefined;
  let value = 0;
  for (let i = 1; i <= 4; i++) {
    const n = Number(m[i]);
    if (n > 255) return undefined;
    value = value * 256 + n;
  }
  return value;
}

function formatIPv4(value: number): string {
  return [value >>> 24, (value >>> 16) & 0xff, (value >>> 8) & 0xff, value & 0xff].join(".");
}

// ---------------------------------------------------------------------------------------------
// IPv6: the WHATWG URL IPv6 parser and serializer (RFC 5952 text: lower case, longest run of two
// or more zero groups compressed, embedded IPv4 printed as hex).

type Groups = number[];

function hexValue(c: string | undefined): number {
  if (c === undefined) return -1;
  const code = c.charCodeAt(0);
  if (code >= 48 && code <= 57) return code - 48;
  if (code >= 97 && code <= 102) return code - 87;
  if (code >= 65 && code <= 70) return code - 55;
  return -1;
}

function isDigit(c: string | undefined): boolean {
  return c !== undefined && c >= "0" && c <= "9";
}

function parseIPv6(input: string): Groups | undefined {
  const address = [0, 0, 0, 0, 0, 0, 0, 0];
  let piece = 0;
  let compress: number | undefined;
  let p = 0;
  if (input[p] === ":") {
    if (input[p + 1] !== ":") return undefined;
    p += 2;
    piece++;
    compress = piece;
  }
  while (p < input.length) {
    if (piece === 8) return undefined;
    if (input[p] === ":") {
      if (compress !== undefined) return undefined;
      p++;
      piece++;
      compress = piece;
      continue;
    }
    let value = 0;
    let length = 0;
    while (length < 4 && hexValue(input[p]) !== -1) {
      value = value * 16 + hexValue(input[p]);
      p++;
      length++;
    }
    if (input[p] === ".") {
      if (length === 0 || piece > 6) return undefined;
      p -= length;
      let seen = 0;
      while (p < input.length) {
        if (seen > 0) {
          if (input[p] !== "." || seen >= 4) return undefined;
          p++;
        }
        if (!isDigit(input[p])) return undefined;
        let octet: number | undefined;
        while (isDigit(input[p])) {
          const d = Number(input[p]);
          if (octet === 0) return undefined; // no leading zeros inside IPv6
          octet = octet === undefined ? d : octet * 10 + d;
          if (octet > 255) return undefined;
          p++;
        }
        address[piece] = (address[piece] ?? 0) * 256 + (octet ?? 0);
        seen++;
        if (seen === 2 || seen === 4) piece++;
      }
      if (seen !== 4) return undefined;
      break;
    } else if (input[p] === ":") {
      p++;
      if (p >= input.length) return undefined;
    } else if (p < input.length) {
      return undefined;
    }
    address[piece] = value;
    piece++;
  }
  if (compress !== undefined) {
    let swaps = piece - compress;
    piece = 7;
    while (piece !== 0 && swaps > 0) {
      const other = compress + swaps - 1;
      const tmp = address[piece] ?? 0;
      address[piece] = address[other] ?? 0;
      address[other] = tmp;
      piece--;
      swaps--;
    }
  } else if (piece !== 8) {
    return undefined;
  }
  return address;
}

function formatIPv6(groups: Groups): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number) =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(":");
  if (bestStart === -1) return hex(0, 8);
  return `${hex(0, bestStart)}::${hex(bestStart + bestLength, 8)}`;
}

// ---------------------------------------------------------------------------------------------
// Classification. Hand-written prefix tables rather than net.BlockList: we need the class of the
// matching range (not a yes/no), BlockList cannot decode IPv4 inside NAT64, 6to4 or IPv4-compatible
// addresses, and one parse into numbers plus a few integer compares per range is cheaper than one
// BlockList.check (which re-parses the text) per class. Tables are built once, at module load.

interface V4Range {
  readonly base: number;
  readonly mask: number;
  readonly cls: AddressClass;
}

function v4(cidr: string, cls: AddressClass): V4Range {
  const [text, bits] = cidr.split("/");
  const base = parseIPv4Strict(text ?? "");
  const length = Number(bits);
  if (base === undefined || !Number.isInteger(length) || length < 0 || length > 32) {
    throw new Error(`bad IPv4 range ${cidr}`);
  }
  const mask = length === 0 ? 0 : (0xffffffff << (32 - length)) >>> 0;
  return { base: (base & mask) >>> 0, mask, cls };
}

// First match wins, so the narrower ranges come before the ranges that contain them.
const V4_TABLE: readonly V4Range[] = [
  // Cloud metadata (169.254.169.254 is link-local too, but the narrower name is more useful).
  v4("169.254.169.254/32", "metadata"), // AWS, GCP, Azure, OCI, ...
  v4("100.100.100.200/32", "metadata"), // Alibaba Cloud
  v4("168.63.129.16/32", "metadata"), // Azure wire server: otherwise a public address
  v4("192.0.0.192/32", "metadata"), // Oracle Cloud
  v4("0.0.0.0/8", "unspecified"), // "this network": 0.0.0.0 reaches the local host on Linux
  v4("127.0.0.0/8", "loopback"),
  v4("10.0.0.0/8", "private"),
  v4("172.16.0.0/12", "private"),
  v4("192.168.0.0/16", "private"),
  v4("100.64.0.0/10", "cgnat"),
  v4("169.254.0.0/16", "link_local"),
  v4("192.0.0.0/24", "reserved"), // IETF protocol assignments
  v4("192.0.2.0/24", "reserved"), // TEST-NET-1 (documentation)
  v4("198.51.100.0/24", "reserved"), // TEST-NET-2 (documentation)
  v4("203.0.113.0/24", "reserved"), // TEST-NET-3 (documentation)
  v4("198.18.0.0/15", "reserved"), // benchmarking
  v4("224.0.0.0/4", "multicast"),
  v4("240.0.0.0/4", "reserved"), // future use, and 255.255.255.255 broadcast
];

function classifyV4(value: number): AddressClass {
  for (const range of V4_TABLE) {
    if ((value & range.mask) >>> 0 === range.base) return range.cls;
  }
  return "public";
}

/** What a v6 range means: a class, or "decode the IPv4 held in these two groups". */
type V6Meaning = { cls: AddressClass } | { embeddedAt: number };

interface V6Range {
  readonly words: readonly number[]; // four 32-bit words, already masked
  readonly masks: readonly number[];
  readonly meaning: V6Meaning;
}

function toWords(groups: Groups): number[] {
  const words: number[] = [];
  for (let i = 0; i < 8; i += 2)
    words.push((((groups[i] ?? 0) << 16) | (groups[i + 1] ?? 0)) >>> 0);
  return words;
}

function v6(cidr: string, meaning: V6Meaning): V6Range {
  const [text, bits] = cidr.split("/");
  const groups = parseIPv6(text ?? "");
  const length = Number(bits);
  if (groups === undefined || !Number.isInteger(length) || length < 0 || length > 128) {
    throw new Error(`bad IPv6 range ${cidr}`);
  }
  const masks = [0, 1, 2, 3].map((i) => {
    const take = Math.min(32, Math.max(0, length - 32 * i));
    return take === 0 ? 0 : (0xffffffff << (32 - take)) >>> 0;
  });
  const words = toWords(groups).map((w, i) => (w & (masks[i] ?? 0)) >>> 0);
  return { words, masks, meaning };
}

const cls = (c: AddressClass): V6Meaning => ({ cls: c });

// First match wins. Anything outside 2000::/3 (the only global unicast space IANA has allocated)
// that no entry names is "reserved": there is no legitimate egress destination there.
const V6_TABLE: readonly V6Range[] = [
  v6("::/128", cls("unspecified")),
  v6("::1/128", cls("loopback")),
  v6("::ffff:0:0/96", { embeddedAt: 6 }), // IPv4-mapped: the socket dials the IPv4 address
  v6("::ffff:0:0:0/96", { embeddedAt: 6 }), // IPv4-translated (SIIT)
  v6("::/96", { embeddedAt: 6 }), // IPv4-compatible (deprecated)
  v6("64:ff9b::/96", { embeddedAt: 6 }), // NAT64 well-known prefix: reaches the IPv4 address
  v6("64:ff9b:1::/48", cls("reserved")), // local-use NAT64: the embedded address is site-specific
  v6("100::/64", cls("reserved")), // discard-only
  v6("2001::/32", cls("reserved")), // Teredo: the embedded client address is obfuscated
  v6("2001:db8::/32", cls("reserved")), // documentation
  v6("3fff::/20", cls("reserved")), // documentation (RFC 9637)
  v6("2002::/16", { embeddedAt: 1 }), // 6to4: 2002:AABB:CCDD::/48 carries AA.BB.CC.DD
  v6("fd00:ec2::/32", cls("metadata")), // AWS IMDS and DNS over IPv6
  v6("fd20:ce::254/128", cls("metadata")), // GCP
  v6("fd00:c1::a9fe:a9fe/128", cls("metadata")),
  v6("fd00:42::42/128", cls("metadata")),
  v6("fd00:a9fe:a9fe::1/128", cls("metadata")),
  v6("fd00:100::100:200/128", cls("metadata")), // Alibaba Cloud
  v6("fc00::/7", cls("unique_local")),
  v6("fe80::/10", cls("link_local")),
  v6("fec0::/10", cls("reserved")), // site-local (deprecated)
  v6("ff00::/8", cls("multicast")),
  v6("2000::/3", cls("public")),
];

function classifyV6(groups: Groups): AddressClass {
  const words = toWords(groups);
  for (const range of V6_TABLE) {
    let hit = true;
    for (let i = 0; i < 4 && hit; i++) {
      hit = ((words[i] ?? 0) & (range.masks[i] ?? 0)) >>> 0 === range.words[i];
    }
    if (hit) {
      const meaning = range.meaning;
      if ("cls" in meaning) return meaning.cls;
      const hi = groups[meaning.embeddedAt] ?? 0;
      const lo = groups[meaning.embeddedAt + 1] ?? 0;
      return classifyV4(hi * 0x10000 + lo);
    }
  }
  return "reserved";
}

/**
 * Classifies an IP (canonical text). IPv4-mapped (::ffff:a.b.c.d), IPv4-compatible (::a.b.c.d),
 * NAT64 64:ff9b::/96 and 6to4 2002::/16 embed IPv4: decode and classify the embedded IPv4 (a
 * mapped private => the embedded class). Teredo 2001::/32 and 64:ff9b:1::/48 => reserved.
 * Text that is not an IP address (or carries a zone id) is "reserved": unknown fails closed.
 */
export function classifyAddress(address: string): AddressClass {
  if (address.includes(":")) {
    const groups = address.includes("%") ? undefined : parseIPv6(address);
    return groups === undefined ? "reserved" : classifyV6(groups);
  }
  // getaddrinfo prints dotted decimal, but read every inet_aton spelling so none slips through.
  const value =
    parseIPv4Strict(address) ?? (endsInNumber(address) ? parseIPv4Loose(address) : undefined);
  return value === undefined ? "reserved" : classifyV4(value);
}

/** True for every class but "public": these are `private_address` unless the policy allows private networks. */
export function isPrivateAddress(address: string): boolean {
  return classifyAddress(address) !== "public";
}
