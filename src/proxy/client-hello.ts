/**
 * The first bytes of an opaque tunnel: a TLS ClientHello, and the server name (SNI) it asks for.
 *
 * Read by hand: Node has no API that reads a ClientHello and then lets the bytes go on unchanged
 * (a `tls.TLSSocket` would answer the handshake itself, which an opaque tunnel must not do), and
 * no library we trust does only this. It is small and every length is checked against what is
 * left before it is used; anything this reader does not understand is invalid (fail closed).
 * RFC 8446 §4.1.2 (ClientHello), §5.1 (records), RFC 6066 §3 (server_name).
 */
import { parseHost, type HostKind } from "./address.js";

/** The largest ClientHello accepted (the handshake message with its 4-byte header). */
export const MAX_HELLO_BYTES = 16 * 1024;
/**
 * The most bytes read while waiting for a complete ClientHello: the message, plus the 5-byte
 * header of each record it may be split into (a hello cut into tiny records hits this bound).
 */
export const MAX_HELLO_BUFFER = MAX_HELLO_BYTES + 1024;

const RECORD_HEADER = 5;
const HANDSHAKE_RECORD = 0x16;
const CLIENT_HELLO = 0x01;
/** A TLS plaintext record carries at most 2^14 bytes. */
const MAX_RECORD = 16 * 1024;
const SERVER_NAME_EXTENSION = 0;
const HOST_NAME = 0;

export type HelloRead =
  /** More bytes are needed (the caller bounds how many it waits for, and how long). */
  | { readonly state: "partial" }
  /** A well-formed ClientHello; `serverName` is undefined when it has no SNI. */
  | { readonly state: "hello"; readonly serverName: string | undefined }
  /** Not a ClientHello we can read. `tls`: the bytes start like a TLS record. */
  | { readonly state: "invalid"; readonly why: string; readonly tls: boolean };

const PARTIAL: HelloRead = { state: "partial" };
const invalid = (why: string, tls = true): HelloRead => ({ state: "invalid", why, tls });

/**
 * Reads a ClientHello from the start of `data`, which may be split across records and reads.
 * Bytes after the hello's last record (early data, say) are not looked at.
 */
export function readClientHello(data: Buffer): HelloRead {
  if (data.length === 0) return PARTIAL;
  if (data[0] !== HANDSHAKE_RECORD) return invalid("not a TLS handshake", false);
  const fragments: Buffer[] = [];
  let collected = 0;
  let offset = 0;
  for (;;) {
    if (data.length < offset + RECORD_HEADER) return partialRecordHeader(data, offset);
    if (data[offset] !== HANDSHAKE_RECORD) return invalid("ClientHello interrupted by a record");
    const length = data.readUInt16BE(offset + 3);
    if (data[offset + 1] !== 3) return invalid("not a TLS record version");
    if (length === 0 || length > MAX_RECORD) return invalid("bad TLS record length");
    if (data.length < offset + RECORD_HEADER + length) return PARTIAL;
    const fragment = data.subarray(offset + RECORD_HEADER, offset + RECORD_HEADER + length);
    fragments.push(fragment);
    collected += fragment.length;
    offset += RECORD_HEADER + length;
    if (collected < 4) continue;
    const message = fragments.length === 1 ? fragment : Buffer.concat(fragments, collected);
    if (message[0] !== CLIENT_HELLO) return invalid("first handshake message is not a ClientHello");
    const total = 4 + message.readUIntBE(1, 3);
    if (total > MAX_HELLO_BYTES) return invalid("ClientHello larger than 16 KiB");
    if (collected < total) continue;
    // A record that goes on past the hello: nothing else is sent in the clear before the
    // server answers, so this is not a client we understand.
    if (collected > total) return invalid("bytes after the ClientHello in its record");
    return readHelloBody(message.subarray(4));
  }
}

/** A record header cut short: partial, unless what there is already cannot be TLS. */
function partialRecordHeader(data: Buffer, offset: number): HelloRead {
  if (data.length > offset && data[offset] !== HANDSHAKE_RECORD)
    return invalid("ClientHello interrupted by a record");
  if (data.length > offset + 1 && data[offset + 1] !== 3)
    return invalid("not a TLS record version", offset > 0);
  return PARTIAL;
}

/** A cursor over a buffer that refuses to read past its end. */
class Reader {
  offset = 0;
  constructor(private readonly data: Buffer) {}

  get left(): number {
    return this.data.length - this.offset;
  }

  /** The next `n` bytes, or undefined when fewer are left. */
  take(n: number): Buffer | undefined {
    if (n > this.left) return undefined;
    const out = this.data.subarray(this.offset, this.offset + n);
    this.offset += n;
    return out;
  }

  /** A length-prefixed vector (`size` = 1 or 2 bytes of length), or undefined when cut short. */
  vector(size: 1 | 2): Buffer | undefined {
    if (size > this.left) return undefined;
    const length = size === 1 ? this.data[this.offset] : this.data.readUInt16BE(this.offset);
    this.offset += size;
    return this.take(length ?? 0);
  }
}

/** legacy_version, random, session id, cipher suites, compression methods, extensions. */
function readHelloBody(body: Buffer): HelloRead {
  const r = new Reader(body);
  if (r.take(2 + 32) === undefined) return invalid("ClientHello too short");
  const sessionId = r.vector(1);
  if (sessionId === undefined || sessionId.length > 32) return invalid("bad session id");
  const suites = r.vector(2);
  if (suites === undefined || suites.length < 2 || suites.length % 2 !== 0)
    return invalid("bad cipher suites");
  const compression = r.vector(1);
  if (compression === undefined || compression.length < 1)
    return invalid("bad compression methods");
  // A hello without extensions (TLS 1.0-1.2 allow it) names no server.
  if (r.left === 0) return { state: "hello", serverName: undefined };
  const extensions = r.vector(2);
  if (extensions === undefined || r.left !== 0) return invalid("bad extensions length");
  return readExtensions(extensions);
}

/** Walks the extensions; two of one type are refused (RFC 8446 §4.2), so one SNI is read. */
function readExtensions(extensions: Buffer): HelloRead {
  const r = new Reader(extensions);
  const seen = new Set<number>();
  let serverName: string | undefined;
  while (r.left > 0) {
    const type = r.take(2)?.readUInt16BE(0);
    const data = r.vector(2);
    if (type === undefined || data === undefined) return invalid("extension cut short");
    if (seen.has(type)) return invalid("an extension given twice");
    seen.add(type);
    if (type !== SERVER_NAME_EXTENSION) continue;
    const name = readServerName(data);
    if (name === undefined) return invalid("bad server_name extension");
    serverName = name;
  }
  return { state: "hello", serverName };
}

/** Exactly one host_name, ASCII, printable (RFC 6066: more than one of a type is an error). */
function readServerName(data: Buffer): string | undefined {
  const r = new Reader(data);
  const list = r.vector(2);
  if (list === undefined || r.left !== 0) return undefined;
  const entries = new Reader(list);
  const type = entries.take(1)?.[0];
  const name = entries.vector(2);
  if (type !== HOST_NAME || name === undefined || name.length === 0 || entries.left !== 0)
    return undefined;
  for (const byte of name) if (byte <= 0x20 || byte >= 0x7f) return undefined;
  return name.toString("latin1");
}

/**
 * Why a ClientHello may not go through a tunnel to `host`, or undefined when it may: a name
 * must be asked for by that same name (case and one trailing dot aside); a tunnel to an IP
 * address must carry no SNI (RFC 6066 forbids addresses there), or that same address.
 */
export function sniRefusal(serverName: string | undefined, host: HostKind): string | undefined {
  if (serverName === undefined)
    return host.kind === "ip" ? undefined : "the ClientHello names no server (no SNI)";
  // Clients that put an IPv6 address in the SNI do so without brackets.
  const asked = parseHost(serverName.includes(":") ? `[${serverName}]` : serverName);
  if (asked.kind === "invalid") return "the ClientHello's SNI is not a host name";
  const same =
    (asked.kind === "name" && host.kind === "name" && asked.name === host.name) ||
    (asked.kind === "ip" && host.kind === "ip" && asked.address === host.address);
  if (same) return undefined;
  const named = asked.kind === "name" ? asked.name : asked.address;
  return `the ClientHello's SNI ${named} is not the CONNECT host`;
}
