// End to end against a real `tideway server`: deploy examples/hello the way the extension
// does, follow its release, read it back, tail its logs, steer a canary, roll back.

import assert from "node:assert/strict";
import { request } from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe as suite, test } from "node:test";

import { ApiError, BuildFailedError, CancelledError, describe, ReleaseEndedError } from "../errors";
import { TidewayClient } from "../client";
import { deploy, type DeployStep } from "../deploy";
import { followRelease, settleRelease } from "../follow";
import { formatLogLine, loadSnapshot, renderSnapshot, trafficSplit } from "../format";
import { tailLogs } from "../logs";
import type { Release, Strategy } from "../types";
import { eventually, REPO_ROOT, startServer, type TestServer } from "./harness";

const HELLO = join(REPO_ROOT, "examples", "hello");
const NS = "default";
const POLL = { intervalMs: 200, timeoutMs: 90_000 };

/** `GET <gateway><path>` as `<app>.<ns>.localhost`, the gateway's host route. */
function throughGateway(gatewayUrl: string, app: string, path: string): Promise<{ status: number; body: string }> {
  const url = new URL(path, gatewayUrl);
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: { host: `${app}.${NS}.localhost` } }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => (body += c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Whether a release-control call hit an endpoint this server does not have yet. */
function missingEndpoint(e: unknown): boolean {
  return e instanceof ApiError && (e.status === 404 || e.status === 405);
}

function loudSkip(t: { skip: (m: string) => void }, what: string, e: unknown): void {
  const note = `${what} is not available on this server (${(e as ApiError).status}: ${(e as ApiError).toString()}); SKIPPED`;
  console.error(`\n${"!".repeat(78)}\n!!! ${note}\n${"!".repeat(78)}\n`);
  t.skip(note);
}

suite("deploying examples/hello to a real server", () => {
  let s: TestServer;
  let client: TidewayClient;

  before(async () => {
    s = await startServer();
    client = new TidewayClient(s.url, s.token);
  });
  after(async () => {
    await s?.stop();
  });

  async function deployHello(strategy: Strategy, steps: DeployStep[] = []) {
    return deploy(client, {
      dir: HELLO,
      namespace: NS,
      app: "hello",
      strategy,
      buildPollMs: 100,
      onStep: (st) => steps.push(st),
    });
  }

  test("deploy: pack, create the app, upload with progress, release; follow to succeeded", async () => {
    const steps: DeployStep[] = [];
    const { version, release } = await deployHello({ type: "immediate" }, steps);
    const kinds = [...new Set(steps.map((st) => st.kind))];
    assert.deepEqual(kinds, ["packing", "packed", "app", "uploading", "uploaded", "released"]);
    assert.equal(steps.find((st) => st.kind === "app")?.kind === "app" && (steps.find((st) => st.kind === "app") as { created: boolean }).created, true);
    const uploads = steps.filter((st): st is Extract<DeployStep, { kind: "uploading" }> => st.kind === "uploading");
    assert.equal(uploads[0].sent, 0);
    assert.equal(uploads.at(-1)?.sent, uploads.at(-1)?.total);
    assert.equal(version.number, 1);
    assert.equal(release.target_version, 1);

    const seen: string[] = [];
    const done = await settleRelease(client, NS, "hello", release, { ...POLL, onUpdate: (u) => seen.push(u.release.state) });
    assert.equal(done.state, "succeeded");
    assert.equal(seen.at(-1), "succeeded");
    const app = await client.getApp(NS, "hello");
    assert.equal(app.current_version, 1);
  });

  test("show app: status, versions, instances and traffic", async () => {
    const snap = await eventually("a ready instance", async () => {
      const sn = await loadSnapshot(client, NS, "hello");
      return sn.instances.some((i) => i.state === "ready") ? sn : undefined;
    });
    const text = renderSnapshot(snap);
    assert.match(text, /^default\/hello/);
    assert.match(text, /current version: v1/);
    assert.match(text, /traffic: +v1 100%/);
    assert.match(text, /hello-v1-\S+ +v1 +ready/);
    assert.match(text, /v1 +ready .*← current/);
    assert.match(text, /#1 +nothing → v1 +succeeded +immediate/);
    assert.equal(trafficSplit(snap), "v1 100%");
  });

  test("tail logs sees a request made through the gateway", async () => {
    const probe = `/tideway-vscode-probe-${Date.now()}`;
    const abort = new AbortController();
    const lines: string[] = [];
    let resolveSeen!: () => void;
    const seen = new Promise<void>((r) => (resolveSeen = r));
    const tailing = tailLogs(client, NS, "hello", {
      tail: 10,
      signal: abort.signal,
      onLine: (l) => {
        const text = formatLogLine(l);
        lines.push(text);
        if (text.includes(probe)) resolveSeen();
      },
    });
    try {
      const answer = await throughGateway(s.gatewayUrl, "hello", probe);
      assert.equal(answer.status, 200, answer.body);
      assert.ok(answer.body.includes(probe), answer.body);
      const timeout = new Promise((_, rej) => setTimeout(() => rej(new Error(`no log line with ${probe} in 20 s; saw:\n${lines.join("\n")}`)), 20_000));
      await Promise.race([seen, timeout]);
      const line = lines.find((l) => l.includes(probe))!;
      assert.match(line, new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} hello-v1-\\S+ \\| GET ${probe} 200`));
    } finally {
      abort.abort();
      await tailing;
    }
  });

  test("a history read (no follow) ends by itself", async () => {
    const got = [];
    for await (const l of client.streamLogs(NS, "hello", { tail: 3 })) got.push(l);
    assert.ok(got.length >= 1 && got.length <= 3, String(got.length));
    assert.ok(got.every((l) => typeof l !== "string"));
  });

  test("a failed build is reported with the tail of its build log", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tideway-broken-"));
    try {
      writeFileSync(
        join(dir, "tideway.toml"),
        '[run]\ncommand = "python3 app.py"\n[build]\ncommand = "echo step-one; echo cannot-compile >&2; exit 7"\n',
      );
      writeFileSync(join(dir, "app.py"), "print('never runs')\n");
      const err = await deploy(client, { dir, namespace: NS, app: "broken", strategy: { type: "immediate" }, buildPollMs: 100 }).catch(
        (e: unknown) => e,
      );
      assert.ok(err instanceof BuildFailedError, String(err));
      const d = describe(err);
      assert.match(d.message, /^The build of broken v1 failed: /);
      assert.ok(d.detail?.includes("cannot-compile"), d.detail);
      assert.ok(d.detail?.includes("step-one"), d.detail);
      assert.equal((await client.getVersion(NS, "broken", 1)).state, "build_failed");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("a release to a crashing version is reported with the instance's message", async (t) => {
    const dir = mkdtempSync(join(tmpdir(), "tideway-crashy-"));
    try {
      writeFileSync(join(dir, "tideway.toml"), '[run]\ncommand = "echo starting-and-dying; exit 3"\n');
      const { release } = await deploy(client, { dir, namespace: NS, app: "crashy", strategy: { type: "immediate" } });
      const err = await settleRelease(client, NS, "crashy", release, POLL).catch((e: unknown) => e);
      // Either the follower sees the crash loop first, or the server fails the release.
      const d = describe(err);
      t.diagnostic(d.message);
      assert.equal(d.severity, "error");
      assert.ok(d.actions.includes("tailLogs"), d.message);
      assert.match(d.message, /crash-looping|failed/, d.message);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test("canary: pauses, promote one step, promote fully, succeeds", async (t) => {
    const { release } = await deployHello({ type: "canary", weights: [20, 50] });
    assert.equal(release.target_version, 2);
    // Without pause_secs every weight waits for a promote. A server without the control
    // would leave the release waiting forever: find out first, without side effects.
    if (!(await hasRoute([...releasePath(release.id), "promote"]))) {
      try {
        await client.promote(NS, "hello", release.id, false);
      } catch (e) {
        if (missingEndpoint(e)) {
          // Clear the way for the next tests where the server can.
          await client.abort(NS, "hello", release.id).catch(() => undefined);
          return loudSkip(t, "POST .../releases/{id}/promote", e);
        }
        throw e;
      }
    }
    let paused = await untilPaused(release.id);
    const weight = paused.progress?.weight ?? 0;
    const next = await client.promote(NS, "hello", release.id, false);
    assert.ok(["progressing", "paused"].includes(next.state), next.state);
    paused = await untilPaused(release.id, (r) => (r.progress?.weight ?? 0) > weight);
    assert.ok((paused.progress?.weight ?? 0) > weight);
    await client.promote(NS, "hello", release.id, true);
    const done = await settleRelease(client, NS, "hello", release.id, POLL);
    assert.equal(done.state, "succeeded");
    assert.equal((await client.getApp(NS, "hello")).current_version, 2);
  });

  test("abort: a canary is aborted and reported with its reason", async (t) => {
    const active = (await client.listReleases(NS, "hello", 5)).find((r) => ["pending", "progressing", "paused"].includes(r.state));
    if (!(await hasRoute([...releasePath(active?.id ?? 1), "abort"]))) {
      try {
        await client.abort(NS, "hello", active?.id ?? 1);
      } catch (e) {
        if (missingEndpoint(e)) return loudSkip(t, "POST .../releases/{id}/abort", e);
        throw e;
      }
    }
    const { release } = await deployHello({ type: "canary", weights: [30] });
    try {
      await client.abort(NS, "hello", release.id);
    } catch (e) {
      if (missingEndpoint(e)) return loudSkip(t, "POST .../releases/{id}/abort", e);
      throw e;
    }
    const err = await settleRelease(client, NS, "hello", release.id, POLL).catch((e: unknown) => e);
    assert.ok(err instanceof ReleaseEndedError, String(err));
    assert.equal(err.release.state, "aborted");
    t.diagnostic(describe(err).message);
    assert.match(describe(err).message, new RegExp(`^Release ${release.id} of hello \\(→ v${release.target_version}\\) aborted`));
  });

  test("deploying over an active release asks, then supersedes it", async (t) => {
    const doc = (await (await fetch(`${s.url}/api/v1/openapi.json`)).json()) as {
      components: { schemas: Record<string, { properties?: Record<string, unknown> }> };
    };
    if (!doc.components.schemas.ReleaseCreate?.properties?.supersede) {
      const note = "ReleaseCreate.supersede is not in this server's OpenAPI document; SKIPPED";
      console.error(`\n!!! ${note}\n`);
      return t.skip(note);
    }
    const first = await deployHello({ type: "canary", weights: [40] }).then((r) => r.release);
    let asked = 0;
    let second: Release;
    try {
      second = (
        await deploy(client, {
          dir: HELLO,
          namespace: NS,
          app: "hello",
          strategy: { type: "immediate" },
          onReleaseInProgress: async (e) => {
            asked++;
            assert.equal(e.code, "release_in_progress");
            return true;
          },
        })
      ).release;
    } catch (e) {
      await client.abort(NS, "hello", first.id).catch(() => undefined);
      if (e instanceof ApiError && (e.status === 400 || e.status === 422) && /supersede/.test(e.message)) {
        return loudSkip(t, "ReleaseCreate.supersede", e);
      }
      throw e;
    }
    assert.equal(asked, 1);
    assert.equal((await client.getRelease(NS, "hello", first.id)).state, "superseded");
    const done = await settleRelease(client, NS, "hello", second, POLL);
    assert.equal(done.state, "succeeded");

    // Declining leaves the active release alone and stops the deploy.
    const third = await deployHello({ type: "canary", weights: [40] }).then((r) => r.release);
    const declined = await deploy(client, {
      dir: HELLO,
      namespace: NS,
      app: "hello",
      strategy: { type: "immediate" },
      onReleaseInProgress: async () => false,
    }).catch((e: unknown) => e);
    assert.ok(declined instanceof CancelledError, String(declined));
    assert.ok(["pending", "progressing", "paused"].includes((await client.getRelease(NS, "hello", third.id)).state));
    await client.abort(NS, "hello", third.id);
  });

  test("rollback: back to the previous version", async (t) => {
    // With a release in progress, a rollback returns to its stable version instead.
    for (const r of await client.listReleases(NS, "hello", 5)) {
      if (["pending", "progressing", "paused"].includes(r.state)) await client.abort(NS, "hello", r.id).catch(() => undefined);
    }
    const before = (await client.getApp(NS, "hello")).current_version;
    let release: Release;
    try {
      release = await client.rollback(NS, "hello");
    } catch (e) {
      if (missingEndpoint(e)) return loudSkip(t, "POST .../apps/{app}/rollback", e);
      throw e;
    }
    assert.notEqual(release.target_version, before);
    const done = await settleRelease(client, NS, "hello", release, POLL);
    assert.equal(done.state, "succeeded");
    assert.equal((await client.getApp(NS, "hello")).current_version, release.target_version);
  });

  function releasePath(id: number): string[] {
    return ["namespaces", NS, "apps", "hello", "releases", String(id)];
  }

  /** Whether the server routes `segments` at all: a GET on a POST-only route is a 405, on
   * no route a 404. */
  async function hasRoute(segments: string[]): Promise<boolean> {
    try {
      await client.send("GET", segments);
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return false;
      if (e instanceof ApiError && e.status === 405) return true;
      throw e;
    }
  }

  /** Follows a release until it is paused (and `also` holds), failing if it ends first. */
  async function untilPaused(id: number, also: (r: Release) => boolean = () => true): Promise<Release> {
    for await (const u of followRelease(client, NS, "hello", id, { ...POLL, watchInstances: false })) {
      if (u.release.state === "paused" && also(u.release)) return u.release;
      assert.ok(u.release.state !== "failed" && u.release.state !== "aborted", `release ${id} ${u.release.state}: ${u.release.reason}`);
    }
    assert.fail(`release ${id} ended before pausing`);
  }
});
