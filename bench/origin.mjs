// The benchmark's origin, in its own process so it does not share an event loop with the
// client or the proxy. HTTP: GET /small answers a ~100-byte JSON. HTTPS (certificate for
// bench.test from the files given): GET /big?mib=N streams N MiB of random bytes in 64 KiB chunks.
//
//   node bench/origin.mjs --cert CERT.pem --key KEY.pem
//
// Prints one JSON line {"httpPort":…,"httpsPort":…} once both listen on 127.0.0.1. Exits when its
// stdin closes (the parent went away) or after --max-lifetime-ms, whichever comes first.
import { Buffer } from "node:buffer";
import { randomFillSync } from "node:crypto";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { createServer as createTlsServer } from "node:https";
import { setTimeout } from "node:timers";
import { URL } from "node:url";
import { parseArgs } from "node:util";

const { values } = parseArgs({
  options: {
    cert: { type: "string" },
    key: { type: "string" },
    "max-lifetime-ms": { type: "string", default: "300000" },
  },
});
if (values.cert === undefined || values.key === undefined) {
  console.error("origin: --cert and --key are required");
  process.exit(2);
}

const CHUNK = randomFillSync(Buffer.alloc(64 * 1024));
const MIB = 1024 * 1024;
const MAX_MIB = 4096;

const SMALL = Buffer.from(
  JSON.stringify({
    ok: true,
    origin: "vallignus-bench",
    path: "/small",
    note: "a small JSON answer, about 100 bytes",
  }),
);

function notFound(res) {
  res.writeHead(404, { "content-type": "text/plain", "content-length": 10 });
  res.end("not found\n");
}

const http = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  if (req.method !== "GET" || req.url !== "/small") {
    notFound(res);
    return;
  }
  res.writeHead(200, { "content-type": "application/json", "content-length": SMALL.length });
  res.end(SMALL);
});

const https = createTlsServer(
  { cert: readFileSync(values.cert), key: readFileSync(values.key), keepAliveTimeout: 60_000 },
  (req, res) => {
    const url = new URL(req.url ?? "/", "https://bench.test");
    const mib = Number(url.searchParams.get("mib") ?? "1");
    if (
      req.method !== "GET" ||
      url.pathname !== "/big" ||
      !Number.isInteger(mib) ||
      mib < 1 ||
      mib > MAX_MIB
    ) {
      notFound(res);
      return;
    }
    let left = mib * MIB;
    res.writeHead(200, { "content-type": "application/octet-stream", "content-length": left });
    const pump = () => {
      while (left > 0) {
        const n = Math.min(left, CHUNK.length);
        left -= n;
        if (!res.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) {
          res.once("drain", pump);
          return;
        }
      }
      res.end();
    };
    pump();
  },
);

const listen = (server) =>
  new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve(server.address().port));
  });

const stop = (code) => {
  http.closeAllConnections();
  https.closeAllConnections();
  http.close();
  https.close();
  process.exit(code);
};

const lifetime = setTimeout(() => {
  console.error("origin: --max-lifetime-ms passed, exiting");
  stop(1);
}, Number(values["max-lifetime-ms"]));
lifetime.unref();

process.stdin.on("end", () => stop(0));
process.stdin.on("error", () => stop(0));
process.stdin.resume();
process.on("SIGTERM", () => stop(0));

const [httpPort, httpsPort] = await Promise.all([listen(http), listen(https)]);
process.stdout.write(`${JSON.stringify({ httpPort, httpsPort })}\n`);
