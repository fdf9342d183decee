import assert from "node:assert/strict";
import { before, describe, test } from "node:test";

import { captureClientHello } from "../../test/helpers/client-hello.js";
import { parseHost } from "./address.js";
import { MAX_HELLO_BYTES, readClientHello, sniRefusal, type HelloRead } from "./client-hello.js";

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const vec1 = (b: Buffer) => Buffer.concat([Buffer.from([b.length]), b]);
const vec2 = (b: Buffer) => Buffer.concat([u16(b.length), b]);
const sniData = (...names: string[]) =>
  vec2(Buffer.concat(names.map((n) => Buffer.concat([Buffer.from([0]), vec2(Buffer.from(n))]))));
const ext = (type: number, data: Buffer) => Buffer.concat([u16(type), vec2(data)]);

interface Parts {
  sessionId?: Buffer;
  suites?: Buffer;
  compression?: Buffer;
  /** undefined: no extensions block at all. */
  extensions?: Buffer | undefined;
}

/** A ClientHello body built from parts, valid unless a part says otherwise. */
function helloBody(p: Parts = {}): Buffer {
  const parts = [
    Buffer.from([3, 3]),
    Buffer.alloc(32, 1),
    vec1(p.sessionId ?? Buffer.alloc(32, 2)),
    vec2(p.suites ?? Buffer.from([0x13, 0x01, 0x13, 0x02])),
    vec1(p.compression ?? Buffer.from([0])),
  ];
  if ("extensions" in p && p.extensions === undefined) return Buffer.concat(parts);
  parts.push(vec2(p.extensions ?? ext(0, sniData("api.example.com"))));
  return Buffer.concat(parts);
}

/** The handshake message around a body, in records of at most `recordSize` bytes. */
function records(body: Buffer, recordSize = 16384, type = 0x01): Buffer {
  const message = Buffer.concat([
    Buffer.from([type, 0, body.length >> 8, body.length & 0xff]),
    body,
  ]);
  const out: Buffer[] = [];
  for (let at = 0; at < message.length; at += recordSize) {
    const fragment = message.subarray(at, at + recordSize);
    out.push(Buffer.from([0x16, 3, 1]), u16(fragment.length), fragment);
  }
  return Buffer.concat(out);
}

const state = (r: HelloRead) =>
  r.state === "hello"
    ? `hello ${r.serverName ?? "-"}`
    : r.state === "partial"
      ? "partial"
      : `invalid${r.tls ? "" : " non-tls"}`;

describe("readClientHello: real clients", () => {
  let named: Buffer;
  let unnamed: Buffer;
  before(async () => {
    named = await captureClientHello("api.example.com");
    unnamed = await captureClientHello(undefined);
  });

  test("a real hello gives its SNI; without servername it has none", () => {
    assert.equal(state(readClientHello(named)), "hello api.example.com");
    assert.equal(state(readClientHello(unnamed)), "hello -");
  });

  test("every prefix of a real hello is partial: a hello split across reads waits", () => {
    for (let n = 0; n < named.length; n++) {
      assert.equal(state(readClientHello(named.subarray(0, n))), "partial", `prefix ${n}`);
    }
  });

  test("a real hello re-cut into records of 7 bytes is still read", () => {
    const message = named.subarray(5, 5 + named.readUInt16BE(3));
    const body = message.subarray(4);
    assert.equal(state(readClientHello(records(body, 7))), "hello api.example.com");
  });

  test("bytes after the hello's last record (early data) are not looked at", () => {
    const more = Buffer.concat([named, Buffer.from([0x17, 3, 3, 0, 1, 0xff])]);
    assert.equal(state(readClientHello(more)), "hello api.example.com");
  });
});

describe("readClientHello: case table", () => {
  const cases: [string, Buffer, string][] = [
    ["empty", Buffer.alloc(0), "partial"],
    ["a valid hello", records(helloBody()), "hello api.example.com"],
    ["no extensions block", records(helloBody({ extensions: undefined })), "hello -"],
    [
      "extensions without SNI",
      records(helloBody({ extensions: ext(10, Buffer.from([0, 2, 0, 29])) })),
      "hello -",
    ],
    ["plain HTTP", Buffer.from("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), "invalid non-tls"],
    ["an SSH banner", Buffer.from("SSH-2.0-OpenSSH_9.6\r\n"), "invalid non-tls"],
    ["0x16 then not version 3", Buffer.from([0x16, 0x47, 0x45]), "invalid non-tls"],
    ["an application-data record", Buffer.from([0x17, 3, 3, 0, 1, 0]), "invalid non-tls"],
    ["a zero-length record", Buffer.from([0x16, 3, 1, 0, 0]), "invalid"],
    ["a record over 2^14", Buffer.from([0x16, 3, 1, 0x40, 0x01]), "invalid"],
    ["a ServerHello", records(helloBody(), 16384, 0x02), "invalid"],
    [
      "garbage inside a handshake record",
      Buffer.concat([Buffer.from([0x16, 3, 1, 0, 8]), Buffer.alloc(8, 0xff)]),
      "invalid",
    ],
    ["session id of 33 bytes", records(helloBody({ sessionId: Buffer.alloc(33) })), "invalid"],
    [
      "odd cipher suites",
      records(helloBody({ suites: Buffer.from([0x13, 0x01, 0x13]) })),
      "invalid",
    ],
    ["no compression methods", records(helloBody({ compression: Buffer.alloc(0) })), "invalid"],
    [
      "two names in the SNI list",
      records(helloBody({ extensions: ext(0, sniData("a.example", "b.example")) })),
      "invalid",
    ],
    [
      "SNI extension twice",
      records(
        helloBody({
          extensions: Buffer.concat([ext(0, sniData("a.example")), ext(0, sniData("b.example"))]),
        }),
      ),
      "invalid",
    ],
    ["an empty SNI name", records(helloBody({ extensions: ext(0, sniData("")) })), "invalid"],
    [
      "a NUL in the SNI",
      records(helloBody({ extensions: ext(0, sniData("a.example\0b.example")) })),
      "invalid",
    ],
    [
      "a non-ASCII SNI",
      records(helloBody({ extensions: ext(0, sniData("bücher.example")) })),
      "invalid",
    ],
    [
      "a name type other than host_name",
      records(
        helloBody({
          extensions: ext(0, vec2(Buffer.concat([Buffer.from([1]), vec2(Buffer.from("a"))]))),
        }),
      ),
      "invalid",
    ],
    [
      "an extension longer than the block",
      records(Buffer.concat([helloBody({ extensions: undefined }), u16(10), u16(0), u16(200)])),
      "invalid",
    ],
    [
      "bytes after the extensions",
      records(Buffer.concat([helloBody(), Buffer.from([0])])),
      "invalid",
    ],
    [
      "a hello over 16 KiB",
      records(
        helloBody({
          extensions: Buffer.concat([
            ext(0, sniData("a.example")),
            ext(21, Buffer.alloc(MAX_HELLO_BYTES)),
          ]),
        }),
      ),
      "invalid",
    ],
    [
      "a record after a cut hello that is not a handshake",
      Buffer.concat([
        records(helloBody(), 7).subarray(0, 24),
        Buffer.from([0x15, 3, 3, 0, 2, 2, 40]),
      ]),
      "invalid",
    ],
  ];
  for (const [name, bytes, expected] of cases) {
    test(name, () => assert.equal(state(readClientHello(bytes)), expected));
  }

  test("a hello declaring more than 16 KiB is refused from its first record", () => {
    const head = Buffer.from([0x16, 3, 1, 0, 4, 0x01, 0, 0x40, 0x01]);
    assert.equal(state(readClientHello(head)), "invalid");
  });
});

describe("sniRefusal", () => {
  const host = (raw: string) => parseHost(raw);
  const cases: [string, string | undefined, string, boolean][] = [
    ["the same name", "api.example.com", "api.example.com", true],
    ["upper case and a trailing dot", "API.Example.COM.", "api.example.com", true],
    ["another name (fronting)", "api.openai.com", "allowed.example", false],
    ["a subdomain", "x.allowed.example", "allowed.example", false],
    ["no SNI to a name", undefined, "api.example.com", false],
    ["no SNI to an IPv4 address", undefined, "192.0.2.1", true],
    ["no SNI to an IPv6 address", undefined, "[2001:db8::1]", true],
    ["the same IPv4 address as SNI", "192.0.2.1", "192.0.2.1", true],
    ["the same IPv6 address as SNI", "2001:db8::1", "[2001:db8::1]", true],
    ["a name to an IP address", "api.openai.com", "192.0.2.1", false],
    ["another IP address", "192.0.2.2", "192.0.2.1", false],
    ["an SNI that is no host name", "a..b", "a.b", false],
  ];
  for (const [name, sni, target, ok] of cases) {
    test(name, () => assert.equal(sniRefusal(sni, host(target)) === undefined, ok));
  }
});
