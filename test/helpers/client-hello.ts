import { createServer, type AddressInfo } from "node:net";
import { connect as tlsConnect } from "node:tls";

/**
 * The first flight of a real Node TLS client (OpenSSL) asking for `servername` (none when
 * undefined), as it reaches the wire: its ClientHello record. For unit tests of the hello
 * reader, and for tests that need a tunnel opened but not TLS itself.
 */
export async function captureClientHello(servername: string | undefined): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const server = createServer((socket) => {
    socket.on("data", (d: Buffer) => {
      chunks.push(d);
      const all = Buffer.concat(chunks);
      if (all.length >= 5 && all.length >= 5 + all.readUInt16BE(3)) socket.destroy();
    });
    socket.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((done) => {
    const client = tlsConnect({
      port,
      host: "127.0.0.1",
      ...(servername === undefined ? {} : { servername }),
      rejectUnauthorized: false,
    });
    client.on("error", () => done());
    client.on("close", () => done());
  });
  server.close();
  const all = Buffer.concat(chunks);
  return all.subarray(0, 5 + all.readUInt16BE(3));
}
