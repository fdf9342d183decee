import assert from "node:assert/strict";
import { test } from "node:test";

import { compileRequestRules, normalizeRulePath, parseRequestRule } from "./request-rule.js";

/** [why the case matters, input, canonical text]. */
const accepted: [string, string, string][] = [
  ["a plain rule stays as written", "GET api.github.com/repos/*", "GET api.github.com/repos/*"],
  ["any method", "* uploads.example.com/**", "* uploads.example.com/**"],
  ["host case is folded", "GET API.GitHub.com/x", "GET api.github.com/x"],
  ["path case is kept", "GET api.github.com/Repos/X", "GET api.github.com/Repos/X"],
  ["a port is kept", "POST api.example.com:8443/v1/*", "POST api.example.com:8443/v1/*"],
  ["a wildcard host", "GET *.example.com/**", "GET *.example.com/**"],
  ["hex is upper-cased", "GET a.example.com/x%c3%a9", "GET a.example.com/x%C3%A9"],
  ["unreserved chars are decoded", "GET a.example.com/%41%7e%2d", "GET a.example.com/A~-"],
  ["an encoded comma stays encoded", "GET a.example.com/a%2cb", "GET a.example.com/a%2Cb"],
  ["a trailing slash is kept", "GET a.example.com/a/", "GET a.example.com/a/"],
  ["an empty segment is kept", "GET a.example.com/a//b", "GET a.example.com/a//b"],
  ["several stars in a segment", "GET a.example.com/v*.*", "GET a.example.com/v*.*"],
  ["surrounding blanks are dropped", "  GET   a.example.com/x ", "GET a.example.com/x"],
  ["an IPv4 host", "GET 203.0.113.7:8080/x", "GET 203.0.113.7:8080/x"],
];

for (const [why, input, text] of accepted) {
  test(`parseRequestRule accepts: ${why}`, () => {
    const parsed = parseRequestRule(input);
    assert.ok(parsed.ok, parsed.ok ? "" : parsed.why);
    assert.equal(parsed.rule.text, text);
    // The canonical text parses to itself, as a stored policy must.
    const again = parseRequestRule(text, { storedRule: true });
    assert.ok(again.ok);
    assert.equal(again.rule.text, text);
  });
}

test("parseRequestRule splits the rule into its parts", () => {
  const parsed = parseRequestRule("GET *.Example.com:8443/a/**");
  assert.ok(parsed.ok);
  assert.equal(parsed.rule.method, "GET");
  assert.equal(parsed.rule.glob, "/a/**");
  assert.equal(parsed.rule.host.host, "example.com");
  assert.equal(parsed.rule.host.wildcard, true);
  assert.equal(parsed.rule.host.port, 8443);
});

/** [why the case matters, input, a fragment the explanation must hold]. */
const refused: [string, string, RegExp][] = [
  ["no glob", "GET api.example.com", /no path glob/],
  ["no method", "api.example.com/x", /METHOD host\/path-glob/],
  ["three parts", "GET api.example.com /x", /METHOD host\/path-glob/],
  ["a path without a host", "GET /x", /no host/],
  ["a lower-case method", "get api.example.com/x", /upper case \(GET\)/],
  ["a mixed-case method", "Post api.example.com/x", /upper case \(POST\)/],
  ["a method with a digit", "GET2 api.example.com/x", /upper-case token/],
  ["a method too long", `${"A".repeat(21)} api.example.com/x`, /upper-case token/],
  ["a star host", "GET */x", /every host/],
  ["an over-broad wildcard host", "GET *.com/x", /public suffix/],
  ["a public suffix host", "GET co.uk/x", /public suffix/],
  ["a bad port", "GET api.example.com:0/x", /port/],
  ["a query in the glob", "GET api.example.com/x?a=1", /query/],
  ["a fragment in the glob", "GET api.example.com/x#a", /fragment/],
  ["a backslash", "GET api.example.com/a\\b", /not allowed/],
  ["three stars", "GET api.example.com/a/***", /whole segment/],
  ["a double star inside a segment", "GET api.example.com/a**b", /whole segment/],
  ["a double star after text", "GET api.example.com/a/x**", /whole segment/],
  ["a dot segment", "GET api.example.com/a/./b", /segment never matches/],
  ["a dot-dot segment", "GET api.example.com/a/../b", /segment never matches/],
  ["an encoded dot-dot segment", "GET api.example.com/a/%2e%2E/b", /segment never matches/],
  ["an encoded slash", "GET api.example.com/a%2fb", /%2F never matches/],
  ["an encoded backslash", "GET api.example.com/a%5Cb", /%5C never matches/],
  ["an encoded NUL", "GET api.example.com/a%00", /%00 never matches/],
  ["a bad percent", "GET api.example.com/a%g1", /two hex digits/],
  ["a raw non-ASCII char", "GET api.example.com/café", /percent-encoded/],
  ["a raw brace", "GET api.example.com/{id}", /percent-encoded/],
  ["an empty rule", "", /METHOD host\/path-glob/],
  ["a very long rule", `GET api.example.com/${"a".repeat(3000)}`, /at most 2048/],
];

for (const [why, input, expected] of refused) {
  test(`parseRequestRule refuses: ${why}`, () => {
    const parsed = parseRequestRule(input);
    if (parsed.ok) assert.fail(`accepted as ${parsed.rule.text}`);
    assert.match(parsed.why, expected);
  });
}

/** [why the case matters, raw path, normalized path or null for malformed]. */
const paths: [string, string, string | null][] = [
  ["the query is dropped", "/a/b?x=1&y=%2F", "/a/b"],
  ["unreserved chars are decoded", "/%41%62%2D%7e", "/Ab-~"],
  ["other escapes get upper-case hex", "/a%2cb%3a", "/a%2Cb%3A"],
  ["a byte beyond ASCII is encoded", "/caf\u00c3\u00a9", "/caf%C3%A9"],
  ["a raw brace is encoded", "/{x}", "/%7Bx%7D"],
  ["empty segments stay", "//a//", "//a//"],
  ["an encoded slash", "/a%2Fb", null],
  ["an encoded slash, lower case", "/a%2fb", null],
  ["an encoded backslash", "/a%5cb", null],
  ["a raw backslash", "/a\\b", null],
  ["a raw NUL", "/a\u0000", null],
  ["an encoded NUL", "/a%00", null],
  ["a dot segment", "/a/./b", null],
  ["a dot-dot segment", "/a/../b", null],
  ["a trailing dot-dot", "/a/..", null],
  ["an encoded dot-dot", "/a/%2e%2e/b", null],
  ["a half-encoded dot-dot", "/a/.%2E", null],
  ["a dot as the whole path", "/.", null],
  ["dots inside a segment are fine", "/a/..b/c.", "/a/..b/c."],
  ["a bad percent", "/a%zz", null],
  ["a percent at the end", "/a%", null],
  ["not origin-form", "http://x/a", null],
  ["a fragment", "/a#b", null],
  ["a space", "/a b", null],
  ["a char that is not a byte", "/\u0100", null],
];

for (const [why, raw, expected] of paths) {
  test(`normalizeRulePath: ${why}`, () => {
    const result = normalizeRulePath(raw);
    if (expected === null) assert.equal(result.ok, false);
    else assert.deepEqual(result, { ok: true, path: expected });
  });
}

type Verdict = "allow" | "request_not_allowed" | "malformed_request";

/** A policy's rules, and [why, method, host, port, path, verdict] cases against them. */
const policies: {
  allow: string[];
  deny: string[];
  cases: [string, string, string, number, string, Verdict][];
}[] = [
  {
    allow: [
      "GET api.example.com/repos/*",
      "* api.example.com/any/**",
      "POST api.example.com/v1/*/items/",
      "GET api.example.com/files/*.json",
      "GET api.example.com/A",
      "GET api.example.com/x%2Cy",
      "GET api.example.com/lit%2Astar",
      "GET api.example.com/mid/**/end",
    ],
    deny: [],
    cases: [
      ["method matches", "GET", "api.example.com", 443, "/repos/acme", "allow"],
      [
        "GET does not imply HEAD",
        "HEAD",
        "api.example.com",
        443,
        "/repos/acme",
        "request_not_allowed",
      ],
      [
        "method is compared exactly",
        "POST",
        "api.example.com",
        443,
        "/repos/acme",
        "request_not_allowed",
      ],
      ["* takes every method", "DELETE", "api.example.com", 443, "/any/x", "allow"],
      [
        "* stays in one segment",
        "GET",
        "api.example.com",
        443,
        "/repos/acme/x",
        "request_not_allowed",
      ],
      ["* may match an empty segment", "GET", "api.example.com", 443, "/repos/", "allow"],
      [
        "* does not match no segment",
        "GET",
        "api.example.com",
        443,
        "/repos",
        "request_not_allowed",
      ],
      ["** matches zero segments", "PUT", "api.example.com", 443, "/any", "allow"],
      ["** matches a trailing slash", "PUT", "api.example.com", 443, "/any/", "allow"],
      ["** matches many segments", "PUT", "api.example.com", 443, "/any/a/b/c", "allow"],
      ["** is no prefix match", "PUT", "api.example.com", 443, "/anything", "request_not_allowed"],
      ["** between literals, zero", "GET", "api.example.com", 443, "/mid/end", "allow"],
      ["** between literals, many", "GET", "api.example.com", 443, "/mid/a/b/end", "allow"],
      [
        "** between literals, wrong end",
        "GET",
        "api.example.com",
        443,
        "/mid/a/ends",
        "request_not_allowed",
      ],
      [
        "trailing slash required",
        "POST",
        "api.example.com",
        443,
        "/v1/a/items",
        "request_not_allowed",
      ],
      ["trailing slash given", "POST", "api.example.com", 443, "/v1/a/items/", "allow"],
      ["star with suffix", "GET", "api.example.com", 443, "/files/a.json", "allow"],
      [
        "star with wrong suffix",
        "GET",
        "api.example.com",
        443,
        "/files/a.jsonx",
        "request_not_allowed",
      ],
      ["path case is significant", "GET", "api.example.com", 443, "/a", "request_not_allowed"],
      ["%41 is A", "GET", "api.example.com", 443, "/%41", "allow"],
      ["host case is not significant", "GET", "API.Example.COM", 443, "/A", "allow"],
      ["the query is ignored", "GET", "api.example.com", 443, "/repos/acme?x=/y", "allow"],
      ["%2C rule matches a raw comma", "GET", "api.example.com", 443, "/x,y", "allow"],
      ["%2C rule matches %2c", "GET", "api.example.com", 443, "/x%2cy", "allow"],
      ["%2A in a rule is a literal star", "GET", "api.example.com", 443, "/lit*star", "allow"],
      [
        "%2A in a rule is no wildcard",
        "GET",
        "api.example.com",
        443,
        "/litXstar",
        "request_not_allowed",
      ],
      ["// is an empty segment", "GET", "api.example.com", 443, "/repos//x", "request_not_allowed"],
      ["// does not vanish", "GET", "api.example.com", 443, "//repos/acme", "request_not_allowed"],
      ["an encoded slash", "GET", "api.example.com", 443, "/repos/a%2Fb", "malformed_request"],
      [
        "an encoded slash, lower",
        "GET",
        "api.example.com",
        443,
        "/repos/a%2fb",
        "malformed_request",
      ],
      ["an encoded backslash", "GET", "api.example.com", 443, "/repos/a%5Cb", "malformed_request"],
      ["an encoded dot-dot", "GET", "api.example.com", 443, "/any/%2e%2e/x", "malformed_request"],
      ["a dot segment", "GET", "api.example.com", 443, "/any/./x", "malformed_request"],
      ["a dot-dot segment", "GET", "api.example.com", 443, "/repos/../any", "malformed_request"],
      [
        "a rule without a port covers every port",
        "GET",
        "api.example.com",
        8080,
        "/x",
        "request_not_allowed",
      ],
      [
        "uncovered host is left to the domain rules",
        "GET",
        "other.example.com",
        443,
        "/x",
        "allow",
      ],
      ["uncovered host, even a malformed path", "GET", "other.example.com", 443, "/a%2Fb", "allow"],
      ["a subdomain is not covered", "GET", "x.api.example.com", 443, "/x", "allow"],
    ],
  },
  {
    allow: ["* files.example.com/**", "GET api.example.com:8443/ok", "GET *.wild.example.com/**"],
    deny: [
      "DELETE files.example.com/**",
      "* files.example.com/private/**",
      "GET only-deny.example.com/x",
    ],
    cases: [
      ["allowed, no deny", "PUT", "files.example.com", 443, "/a/b", "allow"],
      [
        "deny beats allow, by method",
        "DELETE",
        "files.example.com",
        443,
        "/a/b",
        "request_not_allowed",
      ],
      [
        "deny beats allow, by path",
        "GET",
        "files.example.com",
        443,
        "/private/x",
        "request_not_allowed",
      ],
      [
        "deny by path, zero segments",
        "GET",
        "files.example.com",
        443,
        "/private",
        "request_not_allowed",
      ],
      [
        "deny by path, encoded letter",
        "GET",
        "files.example.com",
        443,
        "/%70rivate/x",
        "request_not_allowed",
      ],
      [
        "deny-only host denies what it names",
        "GET",
        "only-deny.example.com",
        443,
        "/x",
        "request_not_allowed",
      ],
      [
        "deny-only host denies all else too",
        "GET",
        "only-deny.example.com",
        443,
        "/y",
        "request_not_allowed",
      ],
      ["port rule on its port", "GET", "api.example.com", 8443, "/ok", "allow"],
      ["port rule, other path", "GET", "api.example.com", 8443, "/no", "request_not_allowed"],
      ["port rule does not cover 443", "GET", "api.example.com", 443, "/no", "allow"],
      ["wildcard host covers a subdomain", "GET", "a.wild.example.com", 443, "/x", "allow"],
      [
        "wildcard host, deep subdomain",
        "POST",
        "a.b.wild.example.com",
        443,
        "/x",
        "request_not_allowed",
      ],
      ["wildcard host does not cover its base", "POST", "wild.example.com", 443, "/x", "allow"],
    ],
  },
];

for (const { allow, deny, cases } of policies) {
  const rules = compileRequestRules(
    allow.map((t) => canonical(t)),
    deny.map((t) => canonical(t)),
  );
  for (const [why, method, host, port, path, verdict] of cases) {
    test(`decide: ${why}`, () => {
      assert.equal(rules.decide({ method, host, port, path }), verdict);
    });
  }
}

function canonical(text: string): string {
  const parsed = parseRequestRule(text);
  if (!parsed.ok) throw new Error(parsed.why);
  return parsed.rule.text;
}

test("covers: names by host and port, not by path", () => {
  const rules = compileRequestRules(
    ["GET a.example.com/x", "GET b.example.com:8443/x"],
    ["GET *.c.example.com/**"],
  );
  assert.equal(rules.covers("a.example.com", 443), true);
  assert.equal(rules.covers("a.example.com", 9999), true);
  assert.equal(rules.covers("b.example.com", 8443), true);
  assert.equal(rules.covers("b.example.com", 443), false);
  assert.equal(rules.covers("x.c.example.com", 443), true);
  assert.equal(rules.covers("c.example.com", 443), false);
  assert.equal(rules.covers("other.example.com", 443), false);
});

test("no rules: nothing is covered and every request passes", () => {
  const rules = compileRequestRules([], []);
  assert.equal(rules.covers("a.example.com", 443), false);
  assert.equal(
    rules.decide({ method: "GET", host: "a.example.com", port: 443, path: "/%2F" }),
    "allow",
  );
});

test("a stored rule that does not parse is a bug, not a silent pass", () => {
  assert.throws(
    () => compileRequestRules(["get a.example.com/x"], []),
    /invalid stored request rule/,
  );
});

test("a 16 KiB path against many globstars is judged in linear time", () => {
  const rules = compileRequestRules(
    ["GET a.example.com/**/**/**/x", "GET a.example.com/**/a/**/a/**/a/**/b"],
    ["GET a.example.com/a*a*a*a*b/**"],
  );
  const manySegments = `/${"a/".repeat(8192)}y`;
  const oneSegment = `/${"a".repeat(16_384)}`;
  const started = process.hrtime.bigint();
  for (const path of [manySegments, oneSegment]) {
    assert.equal(
      rules.decide({ method: "GET", host: "a.example.com", port: 443, path }),
      "request_not_allowed",
    );
  }
  assert.equal(
    rules.decide({ method: "GET", host: "a.example.com", port: 443, path: `${manySegments}/x` }),
    "allow",
  );
  // A backtracking matcher takes minutes on these; ours takes about a millisecond.
  const elapsedMs = Number(process.hrtime.bigint() - started) / 1e6;
  assert.ok(elapsedMs < 1000, `took ${elapsedMs} ms`);
});
