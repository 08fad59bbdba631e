// A deploy from packing to a started release, like the CLI's `tideway deploy` without
// `--wait` (following is `follow.ts`'s job). No `vscode` import: steps are reported through
// a callback.

import { stat } from "node:fs/promises";

import type { TidewayClient, UploadProgress } from "./client";
import { ApiError, CancelledError } from "./errors";
import { waitForBuild } from "./follow";
import { packToTemp, type PackSummary } from "./pack";
import type { Release, Strategy, Version } from "./types";

export interface DeployRequest {
  /** The app directory: the one holding `tideway.toml`. */
  dir: string;
  namespace: string;
  app: string;
  strategy: Strategy;
  signal?: AbortSignal;
  /** Give up waiting for the build after this long (default 15 minutes). */
  buildTimeoutMs?: number;
  buildPollMs?: number;
  onStep?: (step: DeployStep) => void;
  /**
   * Asked when the app already has an active release (409 `release_in_progress`): resolve
   * `true` to take over from it (it becomes `superseded`), `false` to stop there. Without
   * it, the conflict is thrown.
   */
  onReleaseInProgress?: (error: ApiError) => Promise<boolean>;
}

export type DeployStep =
  | { kind: "packing" }
  | { kind: "packed"; summary: PackSummary; bytes: number }
  | { kind: "app"; created: boolean }
  | ({ kind: "uploading" } & UploadProgress)
  | { kind: "uploaded"; version: Version; bytes: number; elapsedMs: number }
  | { kind: "building"; version: Version; elapsedMs: number }
  | { kind: "built"; version: Version; elapsedMs: number }
  | { kind: "released"; release: Release };

export interface DeployResult {
  version: Version;
  release: Release;
  summary: PackSummary;
}

const DEFAULT_BUILD_TIMEOUT_MS = 15 * 60_000;

/** Packs, makes sure the app exists, uploads, waits for the build and starts a release. */
export async function deploy(
  client: Pick<
    TidewayClient,
    "ensureApp" | "uploadVersion" | "getVersion" | "getBuildLog" | "createRelease"
  >,
  req: DeployRequest,
): Promise<DeployResult> {
  const step = req.onStep ?? (() => undefined);
  const { namespace: ns, app, signal } = req;

  step({ kind: "packing" });
  const packed = await packToTemp(req.dir);
  try {
    const bytes = (await stat(packed.file)).size;
    step({ kind: "packed", summary: packed.summary, bytes });

    const { created } = await client.ensureApp(ns, app, signal);
    step({ kind: "app", created });

    const started = Date.now();
    let version = await client.uploadVersion(ns, app, packed.file, {
      signal,
      onProgress: (p) => step({ kind: "uploading", ...p }),
    });
    step({ kind: "uploaded", version, bytes, elapsedMs: Date.now() - started });

    if (version.state !== "ready") {
      const buildStarted = Date.now();
      version = await waitForBuild(client, version, {
        signal,
        intervalMs: req.buildPollMs,
        timeoutMs: req.buildTimeoutMs ?? DEFAULT_BUILD_TIMEOUT_MS,
        onPoll: (v, elapsedMs) => step({ kind: "building", version: v, elapsedMs }),
      });
      step({ kind: "built", version, elapsedMs: Date.now() - buildStarted });
    }

    let release: Release;
    try {
      release = await client.createRelease(ns, app, version.number, req.strategy, { signal });
    } catch (e) {
      const busy = e instanceof ApiError && e.status === 409 && e.code === "release_in_progress";
      if (!busy || !req.onReleaseInProgress) throw e;
      if (!(await req.onReleaseInProgress(e))) throw new CancelledError();
      release = await client.createRelease(ns, app, version.number, req.strategy, { signal, supersede: true });
    }
    step({ kind: "released", release });
    return { version, release, summary: packed.summary };
  } finally {
    await packed.dispose();
  }
}
