import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, describe as suite, test } from "node:test";

import { normalizeServerUrl, sseLines, ndjsonLines, toLogLine, TidewayClient } from "../client";
import {
  ApiError,
  CancelledError,
  ConfigError,
  describe,
  TimeoutError,
  UnreachableError,
} from "../errors";
import { startServer, type TestServer } from "./harness";

/** A local HTTP server with a fixed behaviour, for what a real Tideway never does. */
async function fake(handler: Parameters<typeof createServer>[1]): Promise<{ url: string; server: Server }> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, server };
}

test("URLs are rooted at /api/v1, keep a path prefix and encode each segment", () => {
  const c = new TidewayClient("http://h:7070/", "t");
  assert.equal(c.url(["namespaces", "default", "apps", "a/b c"]), "http://h:7070/api/v1/namespaces/default/apps/a%2Fb%20c");
  assert.equal(
    new TidewayClient("https://h/tideway/", "t").url(["events"], { limit: 5, cursor: undefined }),
    "https://h/tideway/api/v1/events?limit=5",
  );
  assert.throws(() => normalizeServerUrl("ftp://h"), ConfigError);
  assert.throws(() => normalizeServerUrl("127.0.0.1:7070"), ConfigError);
  assert.throws(() => normalizeServerUrl("not a url"), ConfigError);
  assert.equal(normalizeServerUrl(" http://h:1/x/?q=1#f "), "http://h:1/x");
});

test("error bodies: the API's shape, or the raw text cut short", () => {
  const e = ApiError.fromBody(404, '{"error":{"code":"not_found","message":"app \\"web\\" not found","details":{"app":"web"}}}', "u");
  assert.equal(e.code, "not_found");
  assert.equal(e.toString(), 'app "web" not found (not_found)');
  assert.deepEqual(e.details, { app: "web" });

  const proxy = ApiError.fromBody(502, "  upstream connect error\n", "u");
  assert.equal(proxy.code, undefined);
  assert.equal(proxy.toString(), "HTTP 502: upstream connect error");
  assert.equal(ApiError.fromBody(400, '{"msg":"nope"}', "u").toString(), 'HTTP 400: {"msg":"nope"}');
  assert.equal(ApiError.fromBody(503, "", "u").toString(), "HTTP 503");
  const long = ApiError.fromBody(500, "é".repeat(310), "u");
  assert.equal(Array.from(long.message).length, 301);
  assert.ok(long.message.endsWith("…"));
});

test("an unreachable server is a clear error naming the URL and the reason", async () => {
  // A port that was just free: nothing listens there.
  const { url, server } = await fake(() => undefined);
  await new Promise((r) => server.close(r));
  const client = new TidewayClient(url, "t");
  const err = await client.listNamespaces().then(
    () => assert.fail("listing should fail"),
    (e: unknown) => e,
  );
  assert.ok(err instanceof UnreachableError, String(err));
  assert.equal(err.reason, "connection refused");
  const d = describe(err);
  assert.match(d.message, new RegExp(`Cannot reach the Tideway server at ${url.replace(/\./g, "\\.")} \\(connection refused\\)`));
  assert.match(d.message, /tideway\.serverUrl/);
  assert.deepEqual(d.actions, ["openSettings"]);
});

test("a server that never answers times out; a cancelled call says so", async () => {
  const { url, server } = await fake(() => undefined);
  try {
    const slow = new TidewayClient(url, "t", { timeoutMs: 300 });
    await assert.rejects(slow.getApp("default", "x"), (e: unknown) => e instanceof TimeoutError && /did not answer/.test(describe(e).message));

    const abort = new AbortController();
    const pending = new TidewayClient(url, "t").getApp("default", "x", abort.signal);
    setTimeout(() => abort.abort(), 100);
    await assert.rejects(pending, CancelledError);
  } finally {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  }
});

test("a proxy's non-JSON error page becomes an ApiError with its text", async () => {
  const { url, server } = await fake((_req, res) => {
    res.writeHead(502, { "content-type": "text/html" });
    res.end("bad gateway");
  });
  try {
    const err = await new TidewayClient(url, "t").getApp("default", "x").catch((e: unknown) => e);
    assert.ok(err instanceof ApiError);
    assert.equal(err.status, 502);
    assert.match(describe(err).message, /answered HTTP 502: bad gateway\./);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test("a release control that races the reconciler (412) is asked again", async () => {
  let calls = 0;
  const { url, server } = await fake((req, res) => {
    calls++;
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      assert.equal(req.url, "/api/v1/namespaces/default/apps/web/releases/3/promote");
      assert.deepEqual(JSON.parse(body), { full: true });
      if (calls < 3) {
        res.writeHead(412, { "content-type": "application/json" });
        res.end('{"error":{"code":"precondition_failed","message":"If-Match generation 1 is stale","details":null}}');
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end('{"id":3,"state":"succeeded"}');
    });
  });
  try {
    const r = await new TidewayClient(url, "t").promote("default", "web", 3, true);
    assert.equal(r.state, "succeeded");
    assert.equal(calls, 3);
  } finally {
    await new Promise((r) => server.close(r));
  }
});

test("log streams: SSE events and NDJSON lines, keep-alives skipped", () => {
  const sse = sseLines();
  const got = [":keep-alive", "", "data: {\"a\":1}", "", "event: x", "data: one", "data: two", ""].map(sse);
  assert.deepEqual(got.filter((g) => g !== undefined), ['{"a":1}', "one\ntwo"]);
  const nd = ndjsonLines();
  assert.equal(nd("  "), undefined);
  assert.equal(nd('{"x":1}'), '{"x":1}');
  const line = toLogLine('{"time":"t","instance":"i","version":1,"stream":"stdout","line":"hi"}');
  assert.equal(typeof line === "string" ? line : line.line, "hi");
  assert.equal(toLogLine("not json"), "not json");
});

suite("against a real tideway server", () => {
  let s: TestServer;
  before(async () => {
    s = await startServer();
  });
  after(async () => {
    await s?.stop();
  });

  test("a bad token is a 401 that asks for a new token", async () => {
    const err = await new TidewayClient(s.url, "tw_not-a-real-token").listNamespaces().catch((e: unknown) => e);
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.status, 401);
    const d = describe(err);
    assert.match(d.message, /rejected the token: .*\(401 unauthenticated\)/);
    assert.match(d.message, /Tideway: Set Token/);
    assert.deepEqual(d.actions, ["setToken"]);
  });

  test("an unknown app is a 404 with the server's message", async () => {
    const err = await new TidewayClient(s.url, s.token).getApp("default", "nope").catch((e: unknown) => e);
    assert.ok(err instanceof ApiError, String(err));
    assert.equal(err.status, 404);
    assert.equal(err.code, "not_found");
    assert.match(describe(err).message, /^Not found: .*nope.*\(404 not_found\)\.$/);
  });

  test("ensureApp creates once, then finds the app (409 already_exists)", async () => {
    const c = new TidewayClient(s.url, s.token);
    const first = await c.ensureApp("default", "twice");
    assert.equal(first.created, true);
    const second = await c.ensureApp("default", "twice");
    assert.equal(second.created, false);
    assert.equal(second.app.name, "twice");
    const conflict = await c.createApp("default", "twice").catch((e: unknown) => e);
    assert.ok(conflict instanceof ApiError && conflict.status === 409 && conflict.code === "already_exists");
    assert.match(describe(conflict).message, /^Conflict: /);
  });

  test("every endpoint the client calls is in the server's OpenAPI document", async (t) => {
    const res = await fetch(`${s.url}/api/v1/openapi.json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as { paths: Record<string, Record<string, unknown>>; components: { schemas: Record<string, { properties?: Record<string, unknown> }> } };
    const app = "/api/v1/namespaces/{ns}/apps/{app}";
    const core: Array<[string, string]> = [
      ["get", "/api/v1/namespaces"],
      ["get", "/api/v1/namespaces/{ns}/apps"],
      ["post", "/api/v1/namespaces/{ns}/apps"],
      ["get", app],
      ["get", `${app}/versions`],
      ["post", `${app}/versions`],
      ["get", `${app}/versions/{version}`],
      ["get", `${app}/versions/{version}/build-log`],
      ["get", `${app}/releases`],
      ["post", `${app}/releases`],
      ["get", `${app}/releases/{id}`],
      ["get", `${app}/instances`],
      ["get", `${app}/traffic`],
      ["get", `${app}/logs`],
    ];
    for (const [method, path] of core) assert.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path} is missing`);
    const controls: Array<[string, string]> = ["promote", "pause", "resume", "abort"].map((c) => ["post", `${app}/releases/{id}/${c}`]);
    controls.push(["post", `${app}/rollback`]);
    const missing = controls.filter(([method, path]) => !doc.paths[path]?.[method]).map(([m, p]) => `${m.toUpperCase()} ${p}`);
    if (!doc.components.schemas.ReleaseCreate?.properties?.supersede) missing.push("ReleaseCreate.supersede");
    if (missing.length > 0) {
      const note = `release controls missing on this server: ${missing.join(", ")}`;
      console.error(`\n!!! ${note}\n`);
      t.diagnostic(note);
    }
  });

  test("an invalid name is refused with the server's reason", async () => {
    const err = await new TidewayClient(s.url, s.token).createApp("default", "Bad_Name").catch((e: unknown) => e);
    assert.ok(err instanceof ApiError && err.code === "invalid_name", String(err));
    assert.match(describe(err).message, /refused the request: .*lowercase/);
  });
});
