import assert from "node:assert/strict";
import { test } from "node:test";

import {
  classifyAddress,
  isPrivateAddress,
  parseAuthority,
  parseHost,
  type AddressClass,
} from "./address.js";

/** What WHATWG URL (and so Node's fetch, undici, http.request with a URL) reads as the host. */
function whatwgHostname(host: string): string {
  return new URL(`http://${host}/`).hostname.replace(/^\[(.*)\]$/, "$1");
}

// Notes 2.3 / 2.4 #25-#27: every spelling getaddrinfo reads as an IPv4 address is an IP here too.
const ipv4Spellings: [string, string][] = [
  ["2130706433", "127.0.0.1"],
  ["0x7f.1", "127.0.0.1"],
  ["0177.0.0.1", "127.0.0.1"],
  ["127.1", "127.0.0.1"],
  ["0x7f000001", "127.0.0.1"],
  ["017700000001", "127.0.0.1"],
  ["0X7F.0.0.1", "127.0.0.1"],
  ["127.0.0.1.", "127.0.0.1"],
  ["0", "0.0.0.0"],
  ["0.0.0.0", "0.0.0.0"],
  ["0x.0x.0", "0.0.0.0"],
  ["1.2.3", "1.2.0.3"],
  ["4294967295", "255.255.255.255"],
  ["0xa9.0xfe.0xa9.0xfe", "169.254.169.254"],
  ["１２７.０.０.１", "127.0.0.1"],
  ["8.8.8.8", "8.8.8.8"],
];

for (const [raw, address] of ipv4Spellings) {
  test(`parseHost: ${JSON.stringify(raw)} is the IPv4 address ${address}, as WHATWG URL reads it`, () => {
    assert.deepEqual(parseHost(raw), { kind: "ip", address, family: 4 });
    assert.equal(whatwgHostname(raw), address);
  });
}

const ipv6Spellings: [string, string][] = [
  ["[::1]", "::1"],
  ["[0:0:0:0:0:0:0:1]", "::1"],
  ["[::]", "::"],
  ["[0:0:0:0:0:ffff:127.0.0.1]", "::ffff:7f00:1"],
  ["[::ffff:127.0.0.1]", "::ffff:7f00:1"],
  ["[::ffff:0.0.0.0]", "::ffff:0:0"],
  ["[::127.0.0.1]", "::7f00:1"],
  ["[64:ff9b::169.254.169.254]", "64:ff9b::a9fe:a9fe"],
  ["[2001:DB8::A]", "2001:db8::a"],
  ["[2001:0db8:0000:0000:0001:0000:0000:0001]", "2001:db8::1:0:0:1"],
  ["[1:0:0:2:0:0:0:3]", "1:0:0:2::3"],
  ["[1:0:2:3:4:5:6:7]", "1:0:2:3:4:5:6:7"],
  ["[1:2:3:4:5:6:7::]", "1:2:3:4:5:6:7:0"],
  ["[fe80::1]", "fe80::1"],
];

for (const [raw, address] of ipv6Spellings) {
  test(`parseHost: ${raw} is the IPv6 address ${address}, as WHATWG URL prints it`, () => {
    assert.deepEqual(parseHost(raw), { kind: "ip", address, family: 6 });
    assert.equal(whatwgHostname(raw), address);
  });
}

const names: [string, string][] = [
  ["allowed.com", "allowed.com"],
  ["ALLOWED.TEST.", "allowed.test"],
  ["AlLoWeD.cOm", "allowed.com"],
  ["ａｌｌｏｗｅｄ.com", "allowed.com"],
  ["allowed。com", "allowed.com"],
  ["аllowed.com", "xn--llowed-2nf.com"],
  ["xn--llowed-2nf.com", "xn--llowed-2nf.com"],
  ["XN--LLOWED-2NF.COM", "xn--llowed-2nf.com"],
  ["foo_bar.allowed.com", "foo_bar.allowed.com"],
  ["localhost", "localhost"],
  ["api-1.allowed.com", "api-1.allowed.com"],
  ["example.0x7g", "example.0x7g"],
  [`${"a".repeat(63)}.com`, `${"a".repeat(63)}.com`],
  [`${"a.".repeat(126)}b`, `${"a.".repeat(126)}b`],
  [`${"a.".repeat(126)}b.`, `${"a.".repeat(126)}b`],
];

for (const [raw, name] of names) {
  test(`parseHost: ${JSON.stringify(raw.length > 40 ? `${raw.slice(0, 20)}…(${raw.length})` : raw)} is the name ${name.length > 40 ? `(${name.length} chars)` : name}`, () => {
    assert.deepEqual(parseHost(raw), { kind: "name", name });
  });
}

const invalidHosts: [string, string][] = [
  ["", "empty host"],
  ["allowed.com%2eevil.com", "percent-escape (would decode to allowed.com.evil.com)"],
  ["allowed.com%00.evil.com", "percent-encoded NUL"],
  ["allowed.com\0.evil.com", "raw NUL"],
  ["[fe80::1%25eth0]", "IPv6 zone id, escaped"],
  ["[fe80::1%eth0]", "IPv6 zone id, raw"],
  ["a@b", "userinfo"],
  ["allowed.com@evil.com", "userinfo before the real host"],
  [" ", "a space"],
  ["allowed.com ", "trailing space"],
  ["allowed\tcom", "a tab"],
  ["allowed.com\r\nx", "CR LF"],
  ["a\u00a0b.com", "no-break space"],
  ["a\u3000b.com", "ideographic space"],
  ["evil.com/x", "a slash"],
  ["evil.com?x", "a question mark"],
  ["evil.com#x", "a hash"],
  ["evil\\com", "a backslash"],
  ["a*b.com", "an asterisk"],
  ["a,b.com", "a comma"],
  ["a＠b.com", "fullwidth @"],
  ["a％2e.com", "fullwidth %"],
  ["::1", "an unbracketed IPv6 address"],
  ["[::1", "an unterminated bracket"],
  ["[::1]x", "junk after the bracket"],
  ["[::g]", "a non-hex IPv6 group"],
  ["[1:2:3:4:5:6:7:8:9]", "nine IPv6 groups"],
  ["[1::2::3]", "two IPv6 compressions"],
  ["[::ffff:01.2.3.4]", "a leading zero in embedded IPv4"],
  ["[allowed.com]", "a name in brackets"],
  ["1.2.3.4.5", "five numeric parts"],
  ["256.0.0.1", "a part over 255"],
  ["4294967296", "a number over 32 bits"],
  ["08.1", "a bad octal digit"],
  ["foo.123", "a name ending in a number"],
  ["foo.0x", "a name ending in a hex number"],
  ["127.0.0.1..", "two trailing dots after an address"],
  ["allowed.com..", "two trailing dots"],
  [".allowed.com", "a leading empty label"],
  ["a..b.com", "an empty label inside"],
  [".", "only a dot"],
  ["xn--a.com", "broken punycode"],
  ["a".repeat(300), "a 300-character host"],
  [`${"a".repeat(64)}.com`, "a 64-character label"],
  [`${"a.".repeat(126)}bc`, "254 characters"],
  ["x".repeat(2000), "a host over the raw length cap"],
];

for (const [raw, what] of invalidHosts) {
  test(`parseHost: ${what} is invalid`, () => {
    const host = parseHost(raw);
    assert.equal(host.kind, "invalid");
  });
}

// Notes 2.4 #25-#32: whatever the spelling, the address read is the one that is not public.
const adversarialTargets: [string, AddressClass][] = [
  ["2130706433", "loopback"],
  ["0x7f.1", "loopback"],
  ["0177.0.0.1", "loopback"],
  ["127.1", "loopback"],
  ["0x7f000001", "loopback"],
  ["0", "unspecified"],
  ["[::ffff:0.0.0.0]", "unspecified"],
  ["[::ffff:127.0.0.1]", "loopback"],
  ["[::ffff:7f00:1]", "loopback"],
  ["[0:0:0:0:0:ffff:127.0.0.1]", "loopback"],
  ["[::127.0.0.1]", "loopback"],
  ["[64:ff9b::a9fe:a9fe]", "metadata"],
  ["[2002:a9fe:a9fe::1]", "metadata"],
  ["[2001:0:4136:e378:8000:63bf:3fff:fdd2]", "reserved"],
  ["[::1]", "loopback"],
  ["[::]", "unspecified"],
  ["169.254.169.254", "metadata"],
  ["100.100.100.200", "metadata"],
  ["168.63.129.16", "metadata"],
  ["[fd00:ec2::254]", "metadata"],
];

for (const [raw, expected] of adversarialTargets) {
  test(`parseHost then classifyAddress: ${raw} is ${expected}`, () => {
    const host = parseHost(raw);
    if (host.kind !== "ip") assert.fail(`${raw} read as ${JSON.stringify(host)}`);
    assert.equal(classifyAddress(host.address), expected);
  });
}

type AuthorityCase = [
  string,
  string,
  number | undefined,
  { name?: string; ip?: string; port: number } | "invalid",
];

const authorities: AuthorityCase[] = [
  ["a name and a port", "allowed.com:443", undefined, { name: "allowed.com", port: 443 }],
  ["the default port when absent", "allowed.com", 80, { name: "allowed.com", port: 80 }],
  ["a missing port for CONNECT", "allowed.com", undefined, "invalid"],
  ["port 1", "allowed.com:1", undefined, { name: "allowed.com", port: 1 }],
  ["port 65535", "allowed.com:65535", undefined, { name: "allowed.com", port: 65535 }],
  ["port 0", "allowed.com:0", undefined, "invalid"],
  ["port 65536", "allowed.com:65536", undefined, "invalid"],
  ["a leading zero", "allowed.com:0443", undefined, "invalid"],
  ["a plus sign", "allowed.com:+443", undefined, "invalid"],
  ["a minus sign", "allowed.com:-1", undefined, "invalid"],
  ["trailing junk", "allowed.com:443abc", undefined, "invalid"],
  ["a space before the port", "allowed.com: 443", undefined, "invalid"],
  ["an empty port", "allowed.com:", 80, "invalid"],
  ["a hex port", "allowed.com:0x1bb", undefined, "invalid"],
  ["two colons", "allowed.com:443:443", undefined, "invalid"],
  ["bracketed IPv6 and a port", "[::1]:22", undefined, { ip: "::1", port: 22 }],
  ["bracketed IPv6, default port", "[::1]", 80, { ip: "::1", port: 80 }],
  ["bracketed IPv6 without port for CONNECT", "[::1]", undefined, "invalid"],
  ["bracketed IPv6 glued to a port", "[::1]22", undefined, "invalid"],
  ["unbracketed IPv6", "::1:22", undefined, "invalid"],
  ["a zone id", "[fe80::1%25eth0]:443", undefined, "invalid"],
  ["userinfo", "allowed.com@evil.com:443", undefined, "invalid"],
  ["an empty host", ":443", undefined, "invalid"],
  ["empty", "", 80, "invalid"],
  ["an integer IPv4 spelling", "2130706433:443", undefined, { ip: "127.0.0.1", port: 443 }],
  [
    "a trailing dot and upper case",
    "ALLOWED.COM.:443",
    undefined,
    { name: "allowed.com", port: 443 },
  ],
];

for (const [what, raw, defaultPort, expected] of authorities) {
  test(`parseAuthority: ${what} (${JSON.stringify(raw)}${defaultPort === undefined ? ", CONNECT" : ""})`, () => {
    const result = parseAuthority(raw, defaultPort);
    if (expected === "invalid") {
      assert.ok("invalid" in result, `expected invalid, got ${JSON.stringify(result)}`);
      return;
    }
    const host =
      expected.name !== undefined
        ? { kind: "name", name: expected.name }
        : { kind: "ip", address: expected.ip, family: expected.ip?.includes(":") === true ? 6 : 4 };
    assert.deepEqual(result, { host, port: expected.port });
  });
}

// Edges on both sides of every range in notes 2.2, plus the metadata addresses inside them.
const classes: [string, AddressClass][] = [
  ["8.8.8.8", "public"],
  ["1.1.1.1", "public"],
  // 0.0.0.0/8
  ["0.0.0.0", "unspecified"],
  ["0.255.255.255", "unspecified"],
  ["1.0.0.0", "public"],
  // 127.0.0.0/8
  ["126.255.255.255", "public"],
  ["127.0.0.0", "loopback"],
  ["127.0.0.1", "loopback"],
  ["127.255.255.255", "loopback"],
  ["128.0.0.0", "public"],
  // 10.0.0.0/8
  ["9.255.255.255", "public"],
  ["10.0.0.0", "private"],
  ["10.255.255.255", "private"],
  ["11.0.0.0", "public"],
  // 172.16.0.0/12
  ["172.15.255.255", "public"],
  ["172.16.0.0", "private"],
  ["172.31.255.255", "private"],
  ["172.32.0.0", "public"],
  // 192.168.0.0/16
  ["192.167.255.255", "public"],
  ["192.168.0.0", "private"],
  ["192.168.255.255", "private"],
  ["192.169.0.0", "public"],
  // 100.64.0.0/10
  ["100.63.255.255", "public"],
  ["100.64.0.0", "cgnat"],
  ["100.127.255.255", "cgnat"],
  ["100.128.0.0", "public"],
  // 169.254.0.0/16
  ["169.253.255.255", "public"],
  ["169.254.0.0", "link_local"],
  ["169.254.255.255", "link_local"],
  ["169.255.0.0", "public"],
  // cloud metadata, IPv4
  ["169.254.169.253", "link_local"],
  ["169.254.169.254", "metadata"],
  ["169.254.169.255", "link_local"],
  ["100.100.100.199", "cgnat"],
  ["100.100.100.200", "metadata"],
  ["100.100.100.201", "cgnat"],
  ["168.63.129.15", "public"],
  ["168.63.129.16", "metadata"],
  ["168.63.129.17", "public"],
  ["192.0.0.191", "reserved"],
  ["192.0.0.192", "metadata"],
  ["192.0.0.193", "reserved"],
  // 192.0.0.0/24
  ["191.255.255.255", "public"],
  ["192.0.0.0", "reserved"],
  ["192.0.0.255", "reserved"],
  ["192.0.1.0", "public"],
  // 192.0.2.0/24 (documentation)
  ["192.0.1.255", "public"],
  ["192.0.2.0", "reserved"],
  ["192.0.2.255", "reserved"],
  ["192.0.3.0", "public"],
  // 198.51.100.0/24 (documentation)
  ["198.51.99.255", "public"],
  ["198.51.100.0", "reserved"],
  ["198.51.100.255", "reserved"],
  ["198.51.101.0", "public"],
  // 203.0.113.0/24 (documentation)
  ["203.0.112.255", "public"],
  ["203.0.113.0", "reserved"],
  ["203.0.113.255", "reserved"],
  ["203.0.114.0", "public"],
  // 198.18.0.0/15 (benchmarking)
  ["198.17.255.255", "public"],
  ["198.18.0.0", "reserved"],
  ["198.19.255.255", "reserved"],
  ["198.20.0.0", "public"],
  // 224.0.0.0/4
  ["223.255.255.255", "public"],
  ["224.0.0.0", "multicast"],
  ["239.255.255.255", "multicast"],
  // 240.0.0.0/4 and broadcast
  ["240.0.0.0", "reserved"],
  ["255.255.255.254", "reserved"],
  ["255.255.255.255", "reserved"],
  // IPv4 spellings that are not dotted decimal still classify (fail closed, never "public" by accident)
  ["127.1", "loopback"],
  ["2130706433", "loopback"],
  // ::/128, ::1/128 and IPv4-compatible ::/96
  ["::", "unspecified"],
  ["::1", "loopback"],
  ["0:0:0:0:0:0:0:1", "loopback"],
  ["::2", "unspecified"],
  ["::7f00:1", "loopback"],
  ["::a00:1", "private"],
  ["::808:808", "public"],
  ["::ffff:ffff", "reserved"],
  // ::ffff:0:0/96 (IPv4-mapped)
  ["::fffe:ffff:ffff", "reserved"],
  ["::ffff:0:0", "unspecified"],
  ["::ffff:7f00:1", "loopback"],
  ["::ffff:127.0.0.1", "loopback"],
  ["::ffff:a00:1", "private"],
  ["::ffff:ac10:1", "private"],
  ["::ffff:c0a8:1", "private"],
  ["::ffff:6440:1", "cgnat"],
  ["::ffff:a9fe:1", "link_local"],
  ["::ffff:a9fe:a9fe", "metadata"],
  ["::ffff:e000:1", "multicast"],
  ["::ffff:c000:201", "reserved"],
  ["::ffff:808:808", "public"],
  ["::ffff:ffff:ffff", "reserved"],
  ["::1:0:0:0", "reserved"],
  // ::ffff:0:0:0/96 (IPv4-translated)
  ["::ffff:0:7f00:1", "loopback"],
  ["::ffff:0:808:808", "public"],
  // 64:ff9b::/96 (NAT64)
  ["64:ff9a:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["64:ff9b::", "unspecified"],
  ["64:ff9b::7f00:1", "loopback"],
  ["64:ff9b::a00:1", "private"],
  ["64:ff9b::a9fe:a9fe", "metadata"],
  ["64:ff9b::808:808", "public"],
  ["64:ff9b::ffff:ffff", "reserved"],
  ["64:ff9b::1:0:0", "reserved"],
  // 64:ff9b:1::/48 (local-use NAT64)
  ["64:ff9b:1::", "reserved"],
  ["64:ff9b:1::808:808", "reserved"],
  ["64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "reserved"],
  // 100::/64 (discard)
  ["100::", "reserved"],
  ["100::ffff:ffff:ffff:ffff", "reserved"],
  // 2001::/32 (Teredo)
  ["2000:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "public"],
  ["2001::", "reserved"],
  ["2001:0:4136:e378:8000:63bf:3fff:fdd2", "reserved"],
  ["2001:0:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["2001:1::", "public"],
  // 2001:db8::/32 (documentation)
  ["2001:db7:ffff:ffff:ffff:ffff:ffff:ffff", "public"],
  ["2001:db8::", "reserved"],
  ["2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["2001:db9::", "public"],
  // 2002::/16 (6to4)
  ["2001:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "public"],
  ["2002::", "unspecified"],
  ["2002:7f00:1::1", "loopback"],
  ["2002:c0a8:101::1", "private"],
  ["2002:a9fe:a9fe::1", "metadata"],
  ["2002:808:808::1", "public"],
  ["2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["2003::", "public"],
  // 3fff::/20 (documentation, RFC 9637)
  ["3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "public"],
  ["3fff::", "reserved"],
  ["3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["3fff:1000::", "public"],
  // outside 2000::/3, nothing is allocated for global unicast
  ["1fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["4000::", "reserved"],
  ["2606:4700:4700::1111", "public"],
  ["2a00:1450:4001::1", "public"],
  // fc00::/7 (unique local) and the metadata addresses inside it
  ["fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["fc00::", "unique_local"],
  ["fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "unique_local"],
  ["fe00::", "reserved"],
  ["fd00:ec1:ffff:ffff:ffff:ffff:ffff:ffff", "unique_local"],
  ["fd00:ec2::", "metadata"],
  ["fd00:ec2::254", "metadata"],
  ["fd00:ec2:ffff:ffff:ffff:ffff:ffff:ffff", "metadata"],
  ["fd00:ec3::", "unique_local"],
  ["fd20:ce::253", "unique_local"],
  ["fd20:ce::254", "metadata"],
  ["fd20:ce::255", "unique_local"],
  ["fd00:c1::a9fe:a9fe", "metadata"],
  ["fd00:42::42", "metadata"],
  ["fd00:a9fe:a9fe::1", "metadata"],
  ["fd00:100::100:200", "metadata"],
  // fe80::/10 (link-local) and fec0::/10 (site-local, deprecated)
  ["fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  ["fe80::", "link_local"],
  ["fe80::1", "link_local"],
  ["FE80::1", "link_local"],
  ["febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link_local"],
  ["fec0::", "reserved"],
  ["feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "reserved"],
  // ff00::/8 (multicast)
  ["ff00::", "multicast"],
  ["ff02::1", "multicast"],
  ["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "multicast"],
];

for (const [address, expected] of classes) {
  test(`classifyAddress: ${address} is ${expected}`, () => {
    assert.equal(classifyAddress(address), expected);
  });
}

const notAddresses: [string, string][] = [
  ["", "empty text"],
  ["example.com", "a name"],
  ["[::1]", "a bracketed address"],
  ["fe80::1%eth0", "an address with a zone id"],
  ["1.2.3.4.5", "five parts"],
  ["256.0.0.1", "a part over 255"],
  ["::g", "a bad IPv6 group"],
];

for (const [text, what] of notAddresses) {
  test(`classifyAddress: ${what} fails closed as reserved`, () => {
    assert.equal(classifyAddress(text), "reserved");
  });
}

test("isPrivateAddress: public addresses are not private", () => {
  for (const address of ["8.8.8.8", "100.63.255.255", "2606:4700:4700::1111", "::ffff:808:808"]) {
    assert.equal(isPrivateAddress(address), false, address);
  }
});

test("isPrivateAddress: every non-public class is private", () => {
  const samples = [
    "127.0.0.1",
    "10.0.0.1",
    "169.254.0.1",
    "100.64.0.1",
    "fd12::1",
    "224.0.0.1",
    "0.0.0.0",
    "192.0.2.1",
    "169.254.169.254",
    "::ffff:10.0.0.1",
    "not an address",
  ];
  for (const address of samples) {
    assert.equal(isPrivateAddress(address), true, address);
  }
});
