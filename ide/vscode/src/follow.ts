// Following a build and a release by polling, as the CLI's `deploy --wait` does. No `vscode`
// import: the extension shows the updates in a progress notification.

import {
  BuildFailedError,
  CancelledError,
  CrashLoopError,
  ReleaseEndedError,
  WaitTimeoutError,
} from "./errors";
import type { TidewayClient } from "./client";
import { isActive, type Instance, type Release, type Version } from "./types";

/** The calls following needs; tests pass fakes. */
export type FollowApi = Pick<
  TidewayClient,
  "getRelease" | "listInstances" | "getApp" | "getVersion" | "getBuildLog"
>;

export interface PollOptions {
  /** Between two polls, in milliseconds. */
  intervalMs?: number;
  /** Give up after this long (the work goes on on the server); default: never. */
  timeoutMs?: number;
  signal?: AbortSignal;
}

export interface FollowOptions extends PollOptions {
  /** Also watch the target version's instances: count the ready ones and stop on a crash
   * loop. Default true. */
  watchInstances?: boolean;
}

/** One observation of a release. */
export interface ReleaseUpdate {
  release: Release;
  /** Ready instances of the target version (when instances are watched). */
  ready?: number;
  /** The app's desired instance count (when instances are watched). */
  wanted?: number;
}

export const DEFAULT_RELEASE_POLL_MS = 1000;
export const DEFAULT_BUILD_POLL_MS = 500;

/**
 * Polls a release and yields it whenever something a person would notice changes (state,
 * step, weight, reason, ready instances); the first observation is always yielded and the
 * last one is the release in a final state, after which the iteration ends.
 *
 * Throws `CrashLoopError` when an instance of the target version is crash-looping (the
 * release itself goes on), `WaitTimeoutError` after `timeoutMs`, `CancelledError` when
 * `signal` aborts.
 */
export async function* followRelease(
  api: FollowApi,
  ns: string,
  app: string,
  start: number | Release,
  options: FollowOptions = {},
): AsyncGenerator<ReleaseUpdate> {
  const interval = options.intervalMs ?? DEFAULT_RELEASE_POLL_MS;
  const watch = options.watchInstances ?? true;
  const deadline = options.timeoutMs === undefined ? Infinity : Date.now() + options.timeoutMs;
  const { signal } = options;
  let release =
    typeof start === "number" ? await api.getRelease(ns, app, start, signal) : start;
  const wanted = watch ? (await api.getApp(ns, app, signal)).replicas : undefined;
  let shown = "";
  for (;;) {
    let ready: number | undefined;
    if (watch) {
      const instances = await api.listInstances(ns, app, signal);
      const ofTarget = instances.filter((i) => i.version === release.target_version);
      ready = ofTarget.filter((i) => i.state === "ready").length;
      const crashed = ofTarget.find((i) => i.state === "crash_loop");
      if (crashed && isActive(release.state)) {
        throw new CrashLoopError(release, crashed.id, crashed.message ?? "no message from the server");
      }
    }
    const update: ReleaseUpdate = { release, ready, wanted };
    const key = changeKey(update);
    if (key !== shown || !isActive(release.state)) {
      shown = key;
      yield update;
    }
    if (!isActive(release.state)) return;
    if (Date.now() >= deadline) {
      throw new WaitTimeoutError(
        `release ${release.id} is still ${release.state} after ${Math.round((options.timeoutMs ?? 0) / 1000)} s; it goes on on the server`,
      );
    }
    await sleep(interval, signal);
    release = await api.getRelease(ns, app, release.id, signal);
  }
}

/** Follows a release to its end; returns it when it succeeded, else throws
 * `ReleaseEndedError` (or what `followRelease` throws). */
export async function settleRelease(
  api: FollowApi,
  ns: string,
  app: string,
  start: number | Release,
  options: FollowOptions & { onUpdate?: (u: ReleaseUpdate) => void } = {},
): Promise<Release> {
  let last: Release | undefined;
  for await (const update of followRelease(api, ns, app, start, options)) {
    options.onUpdate?.(update);
    last = update.release;
  }
  if (!last) throw new Error("the release was never observed");
  if (last.state !== "succeeded") throw new ReleaseEndedError(last);
  return last;
}

/**
 * Waits while a version builds; returns it once `ready`. A failed build throws
 * `BuildFailedError` carrying the build log (or why it could not be read).
 */
export async function waitForBuild(
  api: Pick<FollowApi, "getVersion" | "getBuildLog">,
  version: Version,
  options: PollOptions & { onPoll?: (v: Version, elapsedMs: number) => void } = {},
): Promise<Version> {
  const interval = options.intervalMs ?? DEFAULT_BUILD_POLL_MS;
  const started = Date.now();
  const deadline = options.timeoutMs === undefined ? Infinity : started + options.timeoutMs;
  let current = version;
  while (current.state === "building") {
    options.onPoll?.(current, Date.now() - started);
    if (Date.now() >= deadline) {
      throw new WaitTimeoutError(
        `v${current.number} is still building after ${Math.round((options.timeoutMs ?? 0) / 1000)} s; it goes on on the server`,
      );
    }
    await sleep(interval, options.signal);
    current = await api.getVersion(current.namespace, current.app, current.number, options.signal);
  }
  if (current.state === "build_failed") {
    let log: string;
    try {
      log = await api.getBuildLog(current.namespace, current.app, current.number, options.signal);
    } catch (e) {
      log = `(cannot fetch the build log: ${e instanceof Error ? e.message : String(e)})`;
    }
    throw new BuildFailedError(current, log);
  }
  return current;
}

/** What the release is doing, for a progress line:
 * `release 7: progressing — 20% of traffic to v3 — 1/2 instances ready`. */
export function describeUpdate(u: ReleaseUpdate): string {
  const r = u.release;
  const parts = [`release ${r.id}: ${r.state.replace("_", " ")}`];
  const p = r.progress;
  if (isActive(r.state) && r.strategy.type !== "immediate" && p) {
    parts.push(`step ${(p.step ?? 0) + 1}, ${p.weight ?? 0}% of traffic to v${r.target_version}`);
    if (r.state === "paused") {
      parts.push(p.paused_by_user ? "paused by a user" : "waiting for promote");
    } else if (p.pause_until) {
      parts.push(`next step at ${clock(new Date(p.pause_until))}`);
    }
  }
  if (u.ready !== undefined && u.wanted !== undefined && isActive(r.state)) {
    parts.push(`${u.ready}/${u.wanted} instances of v${r.target_version} ready`);
  }
  if (!isActive(r.state) && r.reason) parts.push(r.reason);
  return parts.join(" — ");
}

/** `14:03:07` in local time. */
function clock(d: Date): string {
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

function changeKey(u: ReleaseUpdate): string {
  const r = u.release;
  const p = r.progress ?? {};
  return JSON.stringify([r.state, r.reason, p.step, p.weight, p.paused_by_user, p.pause_until, u.ready]);
}

/** Resolves after `ms`, or rejects with `CancelledError` as soon as `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new CancelledError());
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(new CancelledError());
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Instances of `version` by state, e.g. `2 ready, 1 starting`. */
export function countStates(instances: Instance[], version?: number): string {
  const counts = new Map<string, number>();
  for (const i of instances) {
    if (version !== undefined && i.version !== version) continue;
    counts.set(i.state, (counts.get(i.state) ?? 0) + 1);
  }
  return [...counts].map(([s, n]) => `${n} ${s.replace("_", " ")}`).join(", ") || "none";
}
