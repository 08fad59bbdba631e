import assert from "node:assert/strict";
import { test } from "node:test";

import { deployStepText, formatLogLine, renderSnapshot, toDnsLabel, trafficSplit, type AppSnapshot } from "../format";
import { describeStrategy, parseCount, parseSeconds, parseWeights, sameStrategy } from "../strategy";
import type { Release } from "../types";

test("canary weights as typed", () => {
  assert.deepEqual(parseWeights("20, 50"), [20, 50]);
  assert.deepEqual(parseWeights(" 1 2;10 80% "), [1, 2, 10, 80]);
  assert.throws(() => parseWeights(""), /at least one/);
  assert.throws(() => parseWeights("50, 20"), /must rise/);
  assert.throws(() => parseWeights("0"), /between 1 and 100/);
  assert.throws(() => parseWeights("12.5"), /whole percent/);
});

test("durations and counts as typed", () => {
  assert.equal(parseSeconds(""), undefined);
  assert.equal(parseSeconds(" 30 "), 30);
  assert.equal(parseSeconds("30s"), 30);
  assert.equal(parseSeconds("5m"), 300);
  assert.equal(parseSeconds("1h"), 3600);
  assert.equal(parseSeconds("1m 30s"), 90);
  assert.throws(() => parseSeconds("soon"), /not a duration/);
  assert.throws(() => parseSeconds("5x"), /not a duration/);
  assert.equal(parseCount("3"), 3);
  assert.throws(() => parseCount("0"), /between 1 and 100/);
});

test("strategies read back in one line", () => {
  assert.equal(describeStrategy({ type: "immediate" }), "immediate");
  assert.equal(describeStrategy({ type: "canary", weights: [20, 50], pause_secs: 10 }), "canary 20% → 50%, 10 s pauses");
  assert.equal(describeStrategy({ type: "canary", weights: [20, 50] }), "canary 20% → 50%, promote by hand");
  assert.equal(describeStrategy({ type: "batch", batches: 3, interval_secs: 30 }), "batch: 3 batches every 30 s");
  assert.equal(describeStrategy({ type: "blue_green" }), "blue-green, promote by hand");
  assert.ok(sameStrategy({ type: "canary", weights: [1], pause_secs: undefined }, { weights: [1], type: "canary" }));
  assert.ok(!sameStrategy({ type: "canary", weights: [1] }, { type: "canary", weights: [2] }));
});

test("log lines: time, instance, stream mark", () => {
  const line = { time: "2025-06-01T12:03:04.056789Z", instance: "web-3-ab12", version: 3, stream: "stdout" as const, line: "listening\n" };
  assert.equal(formatLogLine(line, { utc: true }), "12:03:04.056 web-3-ab12 | listening");
  assert.equal(formatLogLine({ ...line, stream: "stderr", line: "oops" }, { utc: true }), "12:03:04.056 web-3-ab12 ! oops");
  assert.equal(formatLogLine("raw text"), "raw text");
});

test("folder names become app names", () => {
  assert.equal(toDnsLabel("hello"), "hello");
  assert.equal(toDnsLabel("My_Service.v2"), "my-service-v2");
  assert.equal(toDnsLabel("__"), "app");
  assert.equal(toDnsLabel("x".repeat(80)).length, 63);
});

test("deploy steps read as progress lines", () => {
  assert.equal(deployStepText({ kind: "uploading", sent: 1536, total: 3 * 1024 * 1024 }), "uploading 1.5 KiB of 3.0 MiB");
  assert.equal(
    deployStepText({ kind: "packed", summary: { files: 1, contentBytes: 10, warnings: [], entries: [] }, bytes: 100 }),
    "packed 1 file (100 B)",
  );
});

test("the app report shows a canary split while it runs", () => {
  const release: Release = {
    id: 4,
    namespace: "default",
    app: "web",
    from_versions: [1],
    target_version: 2,
    strategy: { type: "canary", weights: [20, 50] },
    state: "paused",
    reason: "waiting for promote",
    progress: { step: 1, weight: 20, stable_version: 1 },
    created_at: "2025-06-01T11:59:00Z",
    updated_at: "2025-06-01T11:59:00Z",
    generation: 3,
  };
  const snap: AppSnapshot = {
    app: {
      namespace: "default",
      name: "web",
      description: "",
      labels: {},
      replicas: 2,
      current_version: 1,
      created_at: "",
      updated_at: "",
      generation: 1,
    },
    versions: [],
    releases: [release],
    instances: [],
    traffic: { policy: { weights: [], rules: [] }, generation: 0, updated_at: "" },
  };
  assert.equal(trafficSplit(snap), "v1 80%, v2 20% (release 4)");
  const text = renderSnapshot(snap, new Date("2025-06-01T12:00:00Z"));
  assert.match(text, /#4 +v1 → v2 +paused step 2, 20% +canary 20% → 50%, promote by hand +1 min ago\n +waiting for promote/);
  snap.traffic!.policy.weights = [
    { version: 1, weight: 90 },
    { version: 2, weight: 10 },
  ];
  assert.equal(trafficSplit(snap), "v1 90%, v2 10%");
});
