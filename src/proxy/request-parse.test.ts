import assert from "node:assert/strict";
import { test } from "node:test";

import { innerTarget } from "./request-parse.js";

test("innerTarget: origin-form passes; absolute-form only for the tunnel's own authority", () => {
  const tunnel = { host: "api.example.com", port: 443 };
  const cases: [string, { path: string; refused: boolean }][] = [
    ["/v1/chat", { path: "/v1/chat", refused: false }],
    ["https://api.example.com/v1/chat", { path: "/v1/chat", refused: false }],
    ["https://API.Example.com.:443/v1/chat?a=1", { path: "/v1/chat?a=1", refused: false }],
    ["https://api.example.com", { path: "/", refused: false }],
    ["https://api.example.com?x=1", { path: "/?x=1", refused: false }],
    ["https://other.example/v1/chat", { path: "/v1/chat", refused: true }],
    ["https://api.example.com:8443/v1/chat", { path: "/v1/chat", refused: true }],
    ["http://api.example.com/v1/chat", { path: "/v1/chat", refused: true }],
    ["https://user@api.example.com/v1/chat", { path: "/v1/chat", refused: true }],
    ["https:///v1/chat", { path: "/v1/chat", refused: true }],
    ["*", { path: "", refused: true }],
    ["v1/chat", { path: "", refused: true }],
    ["ftp://api.example.com/x", { path: "", refused: true }],
  ];
  for (const [url, expected] of cases) {
    const got = innerTarget(url, tunnel);
    assert.deepEqual({ path: got.path, refused: got.why !== undefined }, expected, url);
  }
  const other = innerTarget("https://api.example.com:8443/x", { ...tunnel, port: 8443 });
  assert.deepEqual(other, { path: "/x" });
});
