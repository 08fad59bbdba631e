// Errors the extension can meet and the words it shows for them. No `vscode` import: the
// extension turns `describe()`'s actions into buttons.

import type { Release, Version } from "./types";

/** How much of a non-API error body to show: a proxy's one-line reason, not a whole page. */
const MAX_RAW_ERROR_CHARS = 300;

/** Base of every error this package throws on purpose. */
export class TidewayError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A non-2xx answer from the server. */
export class ApiError extends TidewayError {
  /**
   * @param status the HTTP status
   * @param code the API's stable error code; `undefined` when the body was not an API error
   *   (e.g. a proxy's page), in which case `message` holds the raw body
   */
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    message: string,
    readonly details: unknown,
    readonly url: string,
  ) {
    super(message);
  }

  /** Interprets an error response body, keeping the raw text when it is not `{"error":…}`. */
  static fromBody(status: number, body: string, url: string): ApiError {
    try {
      const parsed = JSON.parse(body) as unknown;
      const error = (parsed as { error?: unknown } | null)?.error as
        | { code?: unknown; message?: unknown; details?: unknown }
        | undefined;
      if (error && typeof error.code === "string" && typeof error.message === "string") {
        return new ApiError(status, error.code, error.message, error.details ?? null, url);
      }
    } catch {
      // Not JSON: shown as text below.
    }
    const trimmed = body.trim();
    const chars = Array.from(trimmed);
    const message =
      chars.length > MAX_RAW_ERROR_CHARS
        ? chars.slice(0, MAX_RAW_ERROR_CHARS).join("") + "…"
        : trimmed;
    return new ApiError(status, undefined, message, null, url);
  }

  /** `app "web" not found (not_found)`, or `HTTP 502: upstream connect error`. */
  override toString(): string {
    if (this.code !== undefined) return `${this.message} (${this.code})`;
    return this.message ? `HTTP ${this.status}: ${this.message}` : `HTTP ${this.status}`;
  }
}

/** The server could not be reached at all: refused, unknown host, TLS failure, reset. */
export class UnreachableError extends TidewayError {
  constructor(
    readonly serverUrl: string,
    /** The system's reason, e.g. `ECONNREFUSED`. */
    readonly reason: string,
    cause?: unknown,
  ) {
    super(`cannot reach the Tideway server at ${serverUrl} (${reason})`, { cause });
  }
}

/** The server took longer than the client's limit to answer. */
export class TimeoutError extends TidewayError {
  constructor(
    readonly serverUrl: string,
    readonly seconds: number,
  ) {
    super(`the Tideway server at ${serverUrl} did not answer within ${seconds} s`);
  }
}

/** No token has been stored yet. */
export class NoTokenError extends TidewayError {
  constructor() {
    super("no Tideway token is set");
  }
}

/** The server URL setting is not an http(s) URL. */
export class ConfigError extends TidewayError {}

/** Packing the workspace failed for a reason the user can fix (no manifest, ignored manifest). */
export class PackError extends TidewayError {}

/** The version's build step failed; `log` is the whole build log (may be empty). */
export class BuildFailedError extends TidewayError {
  constructor(
    readonly version: Version,
    readonly log: string,
  ) {
    super(`the build of v${version.number} failed`);
  }
}

/** A release ended in a state other than `succeeded`. */
export class ReleaseEndedError extends TidewayError {
  constructor(readonly release: Release) {
    super(
      `release ${release.id} ${release.state}${release.reason ? `: ${release.reason}` : ""}`,
    );
  }
}

/** An instance of the release's target version keeps crashing. */
export class CrashLoopError extends TidewayError {
  constructor(
    readonly release: Release,
    readonly instance: string,
    readonly detail: string,
  ) {
    super(
      `instance ${instance} of v${release.target_version} is crash-looping: ${detail}`,
    );
  }
}

/** Something took longer than the caller's limit; it goes on on the server. */
export class WaitTimeoutError extends TidewayError {}

/** The caller stopped waiting (e.g. the user cancelled a progress notification). */
export class CancelledError extends TidewayError {
  constructor() {
    super("cancelled");
  }
}

/** What the UI can offer next to a message. */
export type Action =
  | "setToken"
  | "openSettings"
  | "showBuildLog"
  | "tailLogs"
  | "rollback"
  | "showApp"
  | "manageRelease";

export interface Description {
  /** One or two sentences for a notification. */
  message: string;
  /** Longer text for an output channel (e.g. the build log's tail), when there is one. */
  detail?: string;
  actions: Action[];
  /** Whether this is an error (rather than a warning about something the user chose). */
  severity: "error" | "warning";
}

/** The last `lines` lines of `text`, without a trailing empty line. */
export function tail(text: string, lines: number): string {
  const all = text.replace(/\r\n/g, "\n").replace(/\n+$/, "").split("\n");
  return all.slice(Math.max(0, all.length - lines)).join("\n");
}

/** How many build-log lines a failure message carries. */
export const BUILD_LOG_TAIL_LINES = 30;

/** Words for a user: what happened and what to do about it. */
export function describe(err: unknown): Description {
  if (err instanceof UnreachableError) {
    return {
      message:
        `Cannot reach the Tideway server at ${err.serverUrl} (${err.reason}). ` +
        "Is it running? Check the tideway.serverUrl setting.",
      actions: ["openSettings"],
      severity: "error",
    };
  }
  if (err instanceof TimeoutError) {
    return {
      message: `The Tideway server at ${err.serverUrl} did not answer within ${err.seconds} s.`,
      actions: ["openSettings"],
      severity: "error",
    };
  }
  if (err instanceof NoTokenError) {
    return {
      message: "No Tideway token is set. Run “Tideway: Set Token” with a token from `tideway server` or `tideway token create`.",
      actions: ["setToken"],
      severity: "error",
    };
  }
  if (err instanceof ConfigError) {
    return { message: err.message, actions: ["openSettings"], severity: "error" };
  }
  if (err instanceof ApiError) {
    // `app 'default/web' not found (404 not_found)`, or `HTTP 502: bad gateway`.
    const what =
      err.code !== undefined
        ? `${err.message} (${err.status} ${err.code})`
        : err.message
          ? `HTTP ${err.status}: ${err.message}`
          : `HTTP ${err.status}`;
    switch (err.status) {
      case 401:
        return {
          message: `The Tideway server rejected the token: ${what}. Run “Tideway: Set Token” with a valid token.`,
          actions: ["setToken"],
          severity: "error",
        };
      case 403:
        return {
          message: `The token is not allowed to do this: ${what}.`,
          actions: ["setToken"],
          severity: "error",
        };
      case 404:
        return { message: `Not found: ${what}.`, actions: [], severity: "error" };
      case 409:
        return {
          message: `Conflict: ${what}.`,
          actions: err.code === "release_in_progress" ? ["manageRelease"] : [],
          severity: "error",
        };
      case 413:
        return {
          message: `The server refused the upload: ${what}. Leave large files out with .tidewayignore.`,
          actions: [],
          severity: "error",
        };
      case 400:
      case 422:
        return { message: `The server refused the request: ${what}.`, actions: [], severity: "error" };
      default:
        return err.code !== undefined
          ? { message: `The Tideway server answered: ${what}.`, actions: [], severity: "error" }
          : { message: `The Tideway server answered ${what}.`, actions: [], severity: "error" };
    }
  }
  if (err instanceof BuildFailedError) {
    const log = tail(err.log, BUILD_LOG_TAIL_LINES);
    const last = log.split("\n").filter((l) => l.trim()).pop();
    return {
      message:
        `The build of ${err.version.app} v${err.version.number} failed` +
        (last ? `: ${last}` : " (its build log is empty)."),
      detail: log ? `--- last lines of the build log of v${err.version.number} ---\n${log}\n--- end of build log ---` : undefined,
      actions: ["showBuildLog"],
      severity: "error",
    };
  }
  if (err instanceof ReleaseEndedError) {
    const r = err.release;
    const reason = r.reason ? `: ${r.reason}` : ".";
    return {
      message: `Release ${r.id} of ${r.app} (→ v${r.target_version}) ${r.state}${reason}`,
      actions: r.state === "superseded" ? ["showApp"] : ["tailLogs", "rollback"],
      severity: r.state === "superseded" ? "warning" : "error",
    };
  }
  if (err instanceof CrashLoopError) {
    return {
      message: `${capitalize(err.message)}. The release goes on on the server.`,
      actions: ["tailLogs", "rollback"],
      severity: "error",
    };
  }
  if (err instanceof WaitTimeoutError) {
    return { message: capitalize(err.message) + ".", actions: ["showApp"], severity: "warning" };
  }
  if (err instanceof CancelledError) {
    return { message: "Cancelled.", actions: [], severity: "warning" };
  }
  if (err instanceof TidewayError) {
    return { message: capitalize(err.message) + ".", actions: [], severity: "error" };
  }
  const text = err instanceof Error ? err.message : String(err);
  return { message: `Tideway: ${text}`, actions: [], severity: "error" };
}

function capitalize(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
