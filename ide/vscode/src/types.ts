// The JSON shapes of Tideway's `/api/v1` that the extension reads and writes. They mirror
// the server's `api-types` crate; only the fields the extension uses are spelled out, and
// every shape tolerates fields it does not know.

export interface Page<T> {
  items: T[];
  next_cursor?: string;
}

export interface ErrorBody {
  error: { code: string; message: string; details?: unknown };
}

export interface Namespace {
  name: string;
  labels: Record<string, string>;
  created_at: string;
}

export interface App {
  namespace: string;
  name: string;
  description: string;
  labels: Record<string, string>;
  replicas: number;
  domains?: string[];
  path_prefixes?: string[];
  /** The version serving traffic, once a release has succeeded. */
  current_version?: number;
  created_at: string;
  updated_at: string;
  generation: number;
}

export type VersionState = "building" | "ready" | "build_failed";

export interface Version {
  namespace: string;
  app: string;
  number: number;
  /** `sha256:<64 hex>`. */
  artifact_digest: string;
  run: { command: string };
  build_command?: string;
  state: VersionState;
  created_at: string;
}

export interface PauseStep {
  duration_secs?: number;
}

export type CanaryStep =
  | { set_weight: number }
  | { pause: PauseStep }
  | { analysis: { checks?: number } };

/** How a release moves traffic to its target version (`type` is the discriminator). */
export type Strategy =
  | { type: "immediate" }
  | {
      type: "canary";
      steps?: CanaryStep[];
      weights?: number[];
      linear?: { step: number; up_to: number };
      /** Pause after each weight; absent means wait for `promote`. */
      pause_secs?: number;
      analysis?: Record<string, unknown>;
    }
  | {
      type: "batch";
      batches: number;
      /** Absent means wait for `promote` after each batch. */
      interval_secs?: number;
      min_available?: number;
      beta?: boolean;
    }
  | {
      type: "blue_green";
      preview_host?: string;
      /** Absent means wait for `promote`. */
      auto_promote_secs?: number;
      keep_old_secs?: number;
    }
  | {
      type: "gray";
      rules: unknown[];
      weight?: number;
      pause_secs?: number;
    };

export type ReleaseState =
  | "pending"
  | "progressing"
  | "paused"
  | "succeeded"
  | "failed"
  | "aborted"
  | "superseded";

export interface ReleaseProgress {
  step?: number;
  step_started_at?: string;
  pause_until?: string;
  pause_remaining_ms?: number;
  paused_by_user?: boolean;
  stable_version?: number;
  /** Percent of unmatched traffic currently sent to the target. */
  weight?: number;
  target_replicas?: number;
  stable_replicas?: number;
  failed_checks?: number;
}

export interface Release {
  id: number;
  namespace: string;
  app: string;
  from_versions: number[];
  target_version: number;
  strategy: Strategy;
  state: ReleaseState;
  /** Why the release is in its state. */
  reason: string;
  progress?: ReleaseProgress;
  created_at: string;
  updated_at: string;
  generation: number;
}

/** Whether a release can still change state. */
export function isActive(state: ReleaseState): boolean {
  return state === "pending" || state === "progressing" || state === "paused";
}

export type InstanceState =
  | "starting"
  | "ready"
  | "unhealthy"
  | "draining"
  | "stopped"
  | "crash_loop";

export interface Instance {
  id: string;
  namespace: string;
  app: string;
  version: number;
  state: InstanceState;
  address?: string;
  pid?: number;
  restarts: number;
  message?: string;
  cpu_percent?: number;
  memory_bytes?: number;
  created_at: string;
  updated_at: string;
}

export interface VersionWeight {
  version: number;
  weight: number;
}

export interface TrafficPolicy {
  /** Percent of unmatched traffic per version; empty: all to the current version. */
  weights: VersionWeight[];
  rules: Array<Record<string, unknown> & { version: number }>;
  sticky?: Record<string, unknown>;
}

export interface TrafficPolicyState {
  policy: TrafficPolicy;
  generation: number;
  updated_at: string;
}

export type LogStream = "stdout" | "stderr";

export interface LogLine {
  time: string;
  instance: string;
  version: number;
  stream: LogStream;
  line: string;
}
