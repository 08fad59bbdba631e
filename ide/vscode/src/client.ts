// A small client of Tideway's `/api/v1` on Node's fetch: bearer auth, JSON in and out, and
// every failure turned into one of the errors of `./errors` so users see the server's own
// message (or a clear "cannot reach") rather than a stack trace. No `vscode` import.

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";

import {
  ApiError,
  CancelledError,
  ConfigError,
  TimeoutError,
  UnreachableError,
} from "./errors";
import type {
  App,
  Instance,
  LogLine,
  Namespace,
  Page,
  Release,
  Strategy,
  TrafficPolicyState,
  Version,
} from "./types";

/** Whole-request limit of ordinary JSON calls; uploads and log streams have none. */
export const DEFAULT_TIMEOUT_MS = 60_000;
/** Page size used when walking a whole list; the server caps it anyway. */
const PAGE_LIMIT = 100;
/** Longest log line kept waiting for its newline. */
const MAX_PENDING_CHARS = 4 << 20;
const UPLOAD_CHUNK = 64 * 1024;
/** Tries of a release control that races the release reconciler (see `releaseControl`). */
const CONTROL_ATTEMPTS = 4;

export interface ClientOptions {
  /** Limit of ordinary JSON calls, in milliseconds. */
  timeoutMs?: number;
  /** Sent as `User-Agent`. */
  userAgent?: string;
  /** For tests: a replacement of the global fetch. */
  fetch?: typeof fetch;
}

interface RequestOptions {
  query?: Record<string, string | number | boolean | undefined>;
  json?: unknown;
  body?: string | Uint8Array | AsyncIterable<Uint8Array>;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /** Whole-request limit in ms; 0 for none (streams, uploads). */
  timeoutMs?: number;
}

export interface UploadProgress {
  sent: number;
  total: number;
}

export interface LogQuery {
  follow?: boolean;
  /** Only the last N lines of each instance's output (the server allows at most 10000). */
  tail?: number;
  /** RFC 3339 time: only lines at or after it. */
  since?: string;
  instance?: string;
}

/** Checks and normalizes the server URL: `http(s)://host[:port][/prefix]`, no trailing slash. */
export function normalizeServerUrl(raw: string): string {
  const text = raw.trim();
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(
      `Invalid server URL “${raw}”: expected something like http://127.0.0.1:7070`,
    );
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new ConfigError(`Invalid server URL “${raw}”: expected http:// or https://`);
  }
  url.search = "";
  url.hash = "";
  return url.toString().replace(/\/+$/, "");
}

/** Talks to one Tideway server with one token. */
export class TidewayClient {
  readonly serverUrl: string;
  private readonly timeoutMs: number;
  private readonly fetchImpl: typeof fetch;
  private readonly userAgent: string;

  constructor(
    serverUrl: string,
    private readonly token: string,
    options: ClientOptions = {},
  ) {
    this.serverUrl = normalizeServerUrl(serverUrl);
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.fetchImpl = options.fetch ?? fetch;
    this.userAgent = options.userAgent ?? "tideway-vscode";
  }

  /** `<server>/api/v1/<segments>?<query>`, each segment percent-encoded so user input can
   * never change which route is hit. */
  url(segments: string[], query?: RequestOptions["query"]): string {
    const path = segments.map((s) => encodeURIComponent(s)).join("/");
    const url = new URL(`${this.serverUrl}/api/v1/${path}`);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, String(v));
    }
    return url.toString();
  }

  // --- namespaces and apps -------------------------------------------------------------

  listNamespaces(signal?: AbortSignal): Promise<Namespace[]> {
    return this.getAll<Namespace>(["namespaces"], signal);
  }

  listApps(ns: string, signal?: AbortSignal): Promise<App[]> {
    return this.getAll<App>(["namespaces", ns, "apps"], signal);
  }

  getApp(ns: string, app: string, signal?: AbortSignal): Promise<App> {
    return this.json<App>("GET", appPath(ns, app), { signal });
  }

  createApp(ns: string, app: string, replicas?: number, signal?: AbortSignal): Promise<App> {
    const body: Record<string, unknown> = { name: app };
    if (replicas !== undefined) body.replicas = replicas;
    return this.json<App>("POST", ["namespaces", ns, "apps"], { json: body, signal });
  }

  /** Creates the app unless it exists (the server's `409 already_exists`). */
  async ensureApp(
    ns: string,
    app: string,
    signal?: AbortSignal,
  ): Promise<{ app: App; created: boolean }> {
    try {
      return { app: await this.createApp(ns, app, undefined, signal), created: true };
    } catch (e) {
      if (e instanceof ApiError && e.code === "already_exists") {
        return { app: await this.getApp(ns, app, signal), created: false };
      }
      throw e;
    }
  }

  // --- versions --------------------------------------------------------------------------

  /** Newest first; `limit` caps how many (default: all). */
  async listVersions(ns: string, app: string, limit?: number, signal?: AbortSignal): Promise<Version[]> {
    if (limit !== undefined) {
      const page = await this.json<Page<Version>>("GET", [...appPath(ns, app), "versions"], {
        query: { limit },
        signal,
      });
      return page.items;
    }
    return this.getAll<Version>([...appPath(ns, app), "versions"], signal);
  }

  getVersion(ns: string, app: string, number: number, signal?: AbortSignal): Promise<Version> {
    return this.json<Version>("GET", [...appPath(ns, app), "versions", String(number)], { signal });
  }

  /** The output of the version's build step (`404` when it has none). */
  async getBuildLog(ns: string, app: string, number: number, signal?: AbortSignal): Promise<string> {
    const res = await this.send(
      "GET",
      [...appPath(ns, app), "versions", String(number), "build-log"],
      { headers: { accept: "text/plain" }, signal, timeoutMs: this.timeoutMs },
    );
    return res.text();
  }

  /**
   * Uploads the artifact at `file` (a tar.gz with `tideway.toml` at its root) as a new
   * version, streaming it with `Content-Length` so the server can refuse an oversized one
   * before it arrives. No overall timeout: an upload takes as long as it takes.
   */
  async uploadVersion(
    ns: string,
    app: string,
    file: string,
    options: { onProgress?: (p: UploadProgress) => void; signal?: AbortSignal } = {},
  ): Promise<Version> {
    const total = (await stat(file)).size;
    const { onProgress, signal } = options;
    async function* chunks(): AsyncGenerator<Uint8Array> {
      let sent = 0;
      onProgress?.({ sent, total });
      for await (const chunk of createReadStream(file, { highWaterMark: UPLOAD_CHUNK })) {
        const bytes = chunk as Buffer;
        sent += bytes.length;
        yield new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        onProgress?.({ sent, total });
      }
    }
    try {
      const res = await this.send("POST", [...appPath(ns, app), "versions"], {
        body: chunks(),
        headers: { "content-type": "application/gzip", "content-length": String(total) },
        signal,
        timeoutMs: 0,
      });
      return (await readJson(res)) as Version;
    } catch (e) {
      if (e instanceof UnreachableError && e.reason !== "connection refused") {
        // A server that refuses a body early (e.g. on its Content-Length) and closes the
        // connection often leaves the client a broken pipe instead of its answer.
        throw new UnreachableError(
          this.serverUrl,
          `${e.reason} while uploading ${humanBytes(total)}; the server may have refused ` +
            "the artifact before reading it all, e.g. for being larger than its limit",
          e,
        );
      }
      throw e;
    }
  }

  // --- releases ------------------------------------------------------------------------

  /**
   * Starts a release of `targetVersion`. With `supersede`, takes over from the app's active
   * release instead of failing with 409 `release_in_progress` (only sent when asked for, so
   * servers that predate it keep working).
   */
  createRelease(
    ns: string,
    app: string,
    targetVersion: number,
    strategy: Strategy = { type: "immediate" },
    options: { supersede?: boolean; signal?: AbortSignal } = {},
  ): Promise<Release> {
    const body: Record<string, unknown> = { target_version: targetVersion, strategy };
    if (options.supersede) body.supersede = true;
    return this.json<Release>("POST", [...appPath(ns, app), "releases"], {
      json: body,
      signal: options.signal,
    });
  }

  getRelease(ns: string, app: string, id: number, signal?: AbortSignal): Promise<Release> {
    return this.json<Release>("GET", [...appPath(ns, app), "releases", String(id)], { signal });
  }

  /** Newest first. */
  async listReleases(ns: string, app: string, limit = 20, signal?: AbortSignal): Promise<Release[]> {
    const page = await this.json<Page<Release>>("GET", [...appPath(ns, app), "releases"], {
      query: { limit },
      signal,
    });
    return page.items;
  }

  /** Moves a paused release on by one step, or (`full`) finishes it now. */
  promote(ns: string, app: string, id: number, full = false, signal?: AbortSignal): Promise<Release> {
    return this.releaseControl(ns, app, id, "promote", { full }, signal);
  }

  pause(ns: string, app: string, id: number, signal?: AbortSignal): Promise<Release> {
    return this.releaseControl(ns, app, id, "pause", {}, signal);
  }

  resume(ns: string, app: string, id: number, signal?: AbortSignal): Promise<Release> {
    return this.releaseControl(ns, app, id, "resume", {}, signal);
  }

  abort(ns: string, app: string, id: number, signal?: AbortSignal): Promise<Release> {
    return this.releaseControl(ns, app, id, "abort", {}, signal);
  }

  /** Starts a release back to `version` (default: the version that served before). */
  rollback(ns: string, app: string, version?: number, signal?: AbortSignal): Promise<Release> {
    return this.json<Release>("POST", [...appPath(ns, app), "rollback"], {
      json: version === undefined ? {} : { version },
      signal,
    });
  }

  /**
   * A release control. The server applies it to the release as it read it; when the
   * release reconciler moved the release on meanwhile, it answers 412
   * `precondition_failed` although the client sent no `If-Match`. Such a race is retried a
   * few times: the control is asked again of the release as it now is.
   */
  private async releaseControl(
    ns: string,
    app: string,
    id: number,
    action: string,
    body: unknown,
    signal?: AbortSignal,
  ): Promise<Release> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.json<Release>("POST", [...appPath(ns, app), "releases", String(id), action], {
          json: body,
          signal,
        });
      } catch (e) {
        const raced = e instanceof ApiError && e.status === 412 && e.code === "precondition_failed";
        if (!raced || attempt >= CONTROL_ATTEMPTS) throw e;
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }

  // --- runtime -------------------------------------------------------------------------

  listInstances(ns: string, app: string, signal?: AbortSignal): Promise<Instance[]> {
    return this.getAll<Instance>([...appPath(ns, app), "instances"], signal);
  }

  getTraffic(ns: string, app: string, signal?: AbortSignal): Promise<TrafficPolicyState> {
    return this.json<TrafficPolicyState>("GET", [...appPath(ns, app), "traffic"], { signal });
  }

  /**
   * The app's captured output, line by line, until the server closes the stream or
   * `signal` aborts (which ends the iteration quietly). Asks for Server-Sent Events, whose
   * keep-alives stop an idle follow from timing out, and also reads newline-delimited JSON.
   * Lines that are not a LogLine are yielded as text rather than dropped.
   */
  async *streamLogs(
    ns: string,
    app: string,
    query: LogQuery = {},
    signal?: AbortSignal,
  ): AsyncGenerator<LogLine | string> {
    let lines: AsyncIterable<LogLine | string>;
    try {
      lines = await this.openLogs(ns, app, query, signal);
    } catch (e) {
      if (e instanceof CancelledError) return;
      throw e;
    }
    yield* lines;
  }

  /** Connects to the log stream (failing here if the server is unreachable or refuses)
   * and hands back its lines, as `streamLogs` yields them. */
  async openLogs(
    ns: string,
    app: string,
    query: LogQuery = {},
    signal?: AbortSignal,
  ): Promise<AsyncIterable<LogLine | string>> {
    const res = await this.send("GET", [...appPath(ns, app), "logs"], {
      query: {
        follow: query.follow ?? false,
        tail: query.tail,
        since: query.since,
        instance: query.instance,
      },
      headers: { accept: "text/event-stream, application/x-ndjson;q=0.9" },
      signal,
      timeoutMs: 0,
    });
    const sse = (res.headers.get("content-type") ?? "").includes("text/event-stream");
    const parse = sse ? sseLines() : ndjsonLines();
    const transportError = (e: unknown) => this.transportError(e, signal, 0);
    return {
      async *[Symbol.asyncIterator]() {
        try {
          for await (const text of decodeLines(res, signal)) {
            const payload = parse(text);
            if (payload !== undefined) yield toLogLine(payload);
          }
        } catch (e) {
          if (signal?.aborted) return;
          throw transportError(e);
        }
      },
    };
  }

  // --- plumbing ------------------------------------------------------------------------

  /** Every item of a paginated list, following `next_cursor` to the last page. */
  async getAll<T>(segments: string[], signal?: AbortSignal): Promise<T[]> {
    const items: T[] = [];
    let cursor: string | undefined;
    for (;;) {
      const page = await this.json<Page<T>>("GET", segments, {
        query: { limit: PAGE_LIMIT, cursor },
        signal,
      });
      items.push(...page.items);
      if (!page.next_cursor) return items;
      if (page.next_cursor === cursor) {
        throw new Error(`the server returned the same page cursor twice (${cursor})`);
      }
      cursor = page.next_cursor;
    }
  }

  /** An ordinary JSON call, bounded by the client's timeout. */
  async json<T>(method: string, segments: string[], options: RequestOptions = {}): Promise<T> {
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const res = await this.send(method, segments, { ...options, timeoutMs });
    return (await readJson(res)) as T;
  }

  /** Sends a request; any non-2xx answer becomes an `ApiError`, any transport failure an
   * `UnreachableError`, `TimeoutError` or `CancelledError`. */
  async send(method: string, segments: string[], options: RequestOptions = {}): Promise<Response> {
    const url = this.url(segments, options.query);
    const headers: Record<string, string> = {
      authorization: `Bearer ${this.token}`,
      "user-agent": this.userAgent,
      accept: "application/json",
      ...options.headers,
    };
    let body = options.body;
    if (options.json !== undefined) {
      headers["content-type"] = "application/json";
      body = JSON.stringify(options.json);
    }
    const timeoutMs = options.timeoutMs ?? this.timeoutMs;
    const controller = new AbortController();
    const onAbort = () => controller.abort(options.signal?.reason);
    if (options.signal?.aborted) throw new CancelledError();
    options.signal?.addEventListener("abort", onAbort, { once: true });
    const timer =
      timeoutMs > 0 ? setTimeout(() => controller.abort(new TimeoutMarker()), timeoutMs) : undefined;
    const streamed = body !== undefined && typeof body === "object" && Symbol.asyncIterator in body;
    let res: Response;
    try {
      res = await this.fetchImpl(url, {
        method,
        headers,
        body: body as RequestInit["body"],
        signal: controller.signal,
        ...(streamed ? { duplex: "half" } : {}),
      } as RequestInit);
      if (!res.ok) {
        const text = await res.text();
        throw ApiError.fromBody(res.status, text, url);
      }
    } catch (e) {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
      throw this.transportError(e, controller.signal, timeoutMs);
    }
    if (timer === undefined) {
      // Streams stay tied to the caller's signal until they are read to the end.
      return res;
    }
    // The timeout also covers reading the body: hand back a response already read.
    try {
      const bytes = await res.arrayBuffer();
      const nullBody = res.status === 204 || res.status === 205 || res.status === 304;
      const buffered = new Response(nullBody ? null : bytes, { status: res.status, headers: res.headers });
      Object.defineProperty(buffered, "url", { value: res.url });
      return buffered;
    } catch (e) {
      throw this.transportError(e, controller.signal, timeoutMs);
    } finally {
      clearTimeout(timer);
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  private transportError(e: unknown, signal: AbortSignal | undefined, timeoutMs: number): unknown {
    if (e instanceof ApiError || e instanceof CancelledError) return e;
    if (signal?.aborted) {
      return signal.reason instanceof TimeoutMarker
        ? new TimeoutError(this.serverUrl, Math.round(timeoutMs / 1000))
        : new CancelledError();
    }
    if (e instanceof TypeError || isSystemError(e)) {
      return new UnreachableError(this.serverUrl, networkReason(e), e);
    }
    return e;
  }
}

class TimeoutMarker extends Error {}

function appPath(ns: string, app: string): string[] {
  return ["namespaces", ns, "apps", app];
}

async function readJson(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new ApiError(
      res.status,
      undefined,
      `unexpected (non-JSON) response: ${text.slice(0, 200)}`,
      null,
      res.url,
    );
  }
}

function isSystemError(e: unknown): e is NodeJS.ErrnoException {
  return e instanceof Error && typeof (e as NodeJS.ErrnoException).code === "string";
}

const REASONS: Record<string, string> = {
  ECONNREFUSED: "connection refused",
  ENOTFOUND: "host not found",
  EAI_AGAIN: "host name lookup failed",
  ETIMEDOUT: "connection timed out",
  UND_ERR_CONNECT_TIMEOUT: "connection timed out",
  ECONNRESET: "connection reset",
  EPIPE: "connection closed by the server",
  UND_ERR_SOCKET: "connection closed by the server",
  EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable",
  UND_ERR_BODY_TIMEOUT: "no data for too long",
  UND_ERR_HEADERS_TIMEOUT: "no answer for too long",
};

/** The innermost system reason of a fetch failure, e.g. `connection refused`. */
export function networkReason(e: unknown): string {
  let cur: unknown = e;
  let best = e instanceof Error ? e.message : String(e);
  for (let depth = 0; cur && depth < 5; depth++) {
    const err = cur as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
    if (typeof err.code === "string") {
      return REASONS[err.code] ?? (typeof err.message === "string" && err.message ? err.message : err.code);
    }
    // Happy-eyeballs failures carry one error per address.
    if (Array.isArray(err.errors) && err.errors.length > 0) {
      cur = err.errors[0];
      continue;
    }
    if (typeof err.message === "string" && err.message && err.message !== "fetch failed") {
      best = err.message;
    }
    cur = err.cause;
  }
  return best;
}

/** The response body as text lines (without their `\r\n`/`\n`), the last one even without
 * its newline. */
async function* decodeLines(res: Response, signal?: AbortSignal): AsyncGenerator<string> {
  if (!res.body) return;
  const reader = res.body.getReader();
  const onAbort = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener("abort", onAbort, { once: true });
  const decoder = new TextDecoder();
  let pending = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      pending += decoder.decode(value, { stream: true });
      let nl: number;
      while ((nl = pending.indexOf("\n")) >= 0) {
        yield pending.slice(0, nl).replace(/\r$/, "");
        pending = pending.slice(nl + 1);
      }
      if (pending.length > MAX_PENDING_CHARS) {
        throw new Error(`the server sent a log line longer than ${MAX_PENDING_CHARS} characters`);
      }
    }
    pending += decoder.decode();
    if (pending) yield pending.replace(/\r$/, "");
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

/** NDJSON: each non-blank line is one payload. */
export function ndjsonLines(): (line: string) => string | undefined {
  return (line) => (line.trim() ? line : undefined);
}

/**
 * Server-Sent Events: `data:` lines of one event are joined; a blank line ends the event;
 * comments (keep-alives) and other fields are skipped. Returns the payload of each event
 * when its blank line arrives.
 */
export function sseLines(): (line: string) => string | undefined {
  let data: string[] = [];
  return (line) => {
    if (line === "") {
      const payload = data.length ? data.join("\n") : undefined;
      data = [];
      return payload;
    }
    if (line.startsWith(":")) return undefined;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    return undefined;
  };
}

/** A LogLine when `payload` is one, else the payload itself. */
export function toLogLine(payload: string): LogLine | string {
  try {
    const v = JSON.parse(payload) as Partial<LogLine> | null;
    if (v && typeof v === "object" && typeof v.line === "string" && typeof v.instance === "string") {
      return v as LogLine;
    }
  } catch {
    // Shown as sent.
  }
  return payload;
}

/** `1.4 MiB`. */
export function humanBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${v.toFixed(1)} ${units[i]}`;
}
