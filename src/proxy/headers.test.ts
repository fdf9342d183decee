import assert from "node:assert/strict";
import { test } from "node:test";

import { connectionNamesProtected, forwardHeaders } from "./headers.js";

test("connectionNamesProtected: Host, Content-Length and Transfer-Encoding may not be named", () => {
  const cases: [string[], string | undefined][] = [
    [["Connection", "keep-alive"], undefined],
    [["Connection", "Upgrade, X-Custom"], undefined],
    [["Connection", "Upgrade, Host"], "host"],
    [["connection", " close ,  HOST "], "host"],
    [["Connection", "close", "Connection", "content-length"], "content-length"],
    [["Connection", "Transfer-Encoding"], "transfer-encoding"],
    [["X-Connection", "host"], undefined],
  ];
  for (const [raw, expected] of cases) {
    assert.equal(connectionNamesProtected(raw), expected, raw.join(": "));
  }
});

test("forwardHeaders drops hop-by-hop headers and those Connection names, never Host", () => {
  const raw = [
    ...["Host", "a.example", "Connection", "x-drop, Host, Content-Length"],
    ...["X-Drop", "1", "X-Keep", "2", "Content-Length", "3", "Keep-Alive", "t=5"],
    ...["Upgrade", "websocket", "Transfer-Encoding", "chunked"],
  ];
  assert.deepEqual(forwardHeaders(raw, false), [
    ...["Host", "a.example", "X-Keep", "2", "Content-Length", "3"],
  ]);
  assert.deepEqual(forwardHeaders(raw, true), [
    ...["Host", "a.example", "Connection", "x-drop, Host, Content-Length", "X-Keep", "2"],
    ...["Content-Length", "3", "Upgrade", "websocket"],
  ]);
});
