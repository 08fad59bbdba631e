import assert from "node:assert/strict";
import { test } from "node:test";

import {
  BuildFailedError,
  CancelledError,
  CrashLoopError,
  describe,
  ReleaseEndedError,
  WaitTimeoutError,
} from "../errors";
import { describeUpdate, followRelease, settleRelease, waitForBuild, type FollowApi } from "../follow";
import type { Instance, Release, ReleaseState, Version } from "../types";

function release(state: ReleaseState, extra: Partial<Release> = {}): Release {
  return {
    id: 7,
    namespace: "default",
    app: "web",
    from_versions: [1],
    target_version: 2,
    strategy: { type: "canary", weights: [20, 50] },
    state,
    reason: "",
    progress: { step: 0, weight: 0 },
    created_at: "2025-06-01T12:00:00Z",
    updated_at: "2025-06-01T12:00:00Z",
    generation: 1,
    ...extra,
  };
}

function instance(id: string, version: number, state: Instance["state"], message?: string): Instance {
  return { id, namespace: "default", app: "web", version, state, restarts: 0, message, created_at: "", updated_at: "" };
}

/** A fake server that plays `script` one poll at a time (the last entry repeats). */
function fakeApi(script: Array<{ release: Release; instances?: Instance[] }>): FollowApi & { polls: number } {
  let i = 0;
  const api = {
    polls: 0,
    async getRelease() {
      api.polls++;
      return script[Math.min(i++, script.length - 1)].release;
    },
    async listInstances() {
      return script[Math.min(Math.max(i - 1, 0), script.length - 1)].instances ?? [];
    },
    async getApp() {
      return { replicas: 2 } as never;
    },
    async getVersion() {
      throw new Error("unused");
    },
    async getBuildLog() {
      throw new Error("unused");
    },
  };
  return api as unknown as FollowApi & { polls: number };
}

test("following yields each change once and ends with the final state", async () => {
  const api = fakeApi([
    { release: release("pending") },
    { release: release("pending") },
    { release: release("progressing", { progress: { step: 0, weight: 20 } }), instances: [instance("a", 2, "starting")] },
    { release: release("progressing", { progress: { step: 0, weight: 20 } }), instances: [instance("a", 2, "ready")] },
    { release: release("paused", { progress: { step: 1, weight: 20 } }), instances: [instance("a", 2, "ready")] },
    { release: release("succeeded", { reason: "v2 has 2/2 instances ready", progress: { step: 3, weight: 100 } }) },
  ]);
  const seen: string[] = [];
  for await (const u of followRelease(api, "default", "web", 7, { intervalMs: 1 })) {
    seen.push(`${u.release.state}:${u.release.progress?.weight}:${u.ready}/${u.wanted}`);
  }
  assert.deepEqual(seen, [
    "pending:0:0/2",
    "progressing:20:0/2",
    "progressing:20:1/2",
    "paused:20:1/2",
    "succeeded:100:0/2",
  ]);
});

test("settling returns a succeeded release and throws the reason of any other end", async () => {
  const ok = await settleRelease(fakeApi([{ release: release("progressing") }, { release: release("succeeded") }]), "default", "web", 7, {
    intervalMs: 1,
  });
  assert.equal(ok.state, "succeeded");

  const failed = release("failed", { reason: "analysis: success rate 70.0% < 99.0%" });
  const err = await settleRelease(fakeApi([{ release: failed }]), "default", "web", 7, { intervalMs: 1 }).catch((e: unknown) => e);
  assert.ok(err instanceof ReleaseEndedError);
  const d = describe(err);
  assert.equal(d.message, "Release 7 of web (→ v2) failed: analysis: success rate 70.0% < 99.0%");
  assert.deepEqual(d.actions, ["tailLogs", "rollback"]);

  const aborted = describe(new ReleaseEndedError(release("aborted", { reason: "aborted by admin" })));
  assert.match(aborted.message, /aborted: aborted by admin$/);
});

test("a crash-looping target instance stops the follow with its message", async () => {
  const api = fakeApi([
    { release: release("progressing"), instances: [instance("web-2-x", 2, "crash_loop", "exited with status 3"), instance("web-1-y", 1, "ready")] },
  ]);
  const err = await settleRelease(api, "default", "web", 7, { intervalMs: 1 }).catch((e: unknown) => e);
  assert.ok(err instanceof CrashLoopError);
  assert.match(describe(err).message, /^Instance web-2-x of v2 is crash-looping: exited with status 3\./);
});

test("following gives up after its timeout and stops when cancelled", async () => {
  const api = fakeApi([{ release: release("progressing") }]);
  await assert.rejects(settleRelease(api, "default", "web", 7, { intervalMs: 5, timeoutMs: 30 }), WaitTimeoutError);

  const abort = new AbortController();
  const pending = settleRelease(fakeApi([{ release: release("progressing") }]), "default", "web", 7, {
    intervalMs: 10,
    signal: abort.signal,
  });
  setTimeout(() => abort.abort(), 30);
  await assert.rejects(pending, CancelledError);
});

test("waiting for a build: ready, or the failure with its log", async () => {
  const version = (state: Version["state"]): Version => ({
    namespace: "default",
    app: "web",
    number: 3,
    artifact_digest: "sha256:00",
    run: { command: "x" },
    build_command: "make",
    state,
    created_at: "",
  });
  let polls = 0;
  const api = {
    async getVersion() {
      return version(++polls < 3 ? "building" : "ready");
    },
    async getBuildLog(): Promise<string> {
      throw new Error("unused");
    },
  };
  const ready = await waitForBuild(api, version("building"), { intervalMs: 1 });
  assert.equal(ready.state, "ready");
  assert.equal(polls, 3);

  const failing = {
    async getVersion() {
      return version("build_failed");
    },
    async getBuildLog() {
      return Array.from({ length: 50 }, (_, i) => `line ${i + 1}`).join("\n") + "\nerror: cannot compile\n";
    },
  };
  const err = await waitForBuild(failing, version("building"), { intervalMs: 1 }).catch((e: unknown) => e);
  assert.ok(err instanceof BuildFailedError);
  const d = describe(err);
  assert.equal(d.message, "The build of web v3 failed: error: cannot compile");
  assert.ok(d.detail?.includes("line 50\nerror: cannot compile"));
  assert.ok(!d.detail?.includes("line 20\n"), "only the tail of the log");
  assert.deepEqual(d.actions, ["showBuildLog"]);
});

test("progress lines say what a person needs", () => {
  assert.equal(
    describeUpdate({ release: release("paused", { progress: { step: 1, weight: 20 } }), ready: 1, wanted: 2 }),
    "release 7: paused — step 2, 20% of traffic to v2 — waiting for promote — 1/2 instances of v2 ready",
  );
  assert.equal(
    describeUpdate({ release: release("succeeded", { strategy: { type: "immediate" }, reason: "v2 has 2/2 instances ready" }) }),
    "release 7: succeeded — v2 has 2/2 instances ready",
  );
});
