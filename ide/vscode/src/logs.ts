// Tailing an app's output for as long as the caller wants: reconnects when the stream ends
// or breaks (a server restart, a proxy timeout), resuming from the last line seen. No
// `vscode` import.

import type { LogQuery, TidewayClient } from "./client";
import { ApiError, CancelledError, describe } from "./errors";
import { sleep } from "./follow";
import type { LogLine } from "./types";

export interface TailOptions {
  /** Lines of history per instance on the first connection. */
  tail?: number;
  signal: AbortSignal;
  onLine: (line: LogLine | string) => void;
  /** Something about the stream itself (ended, broke off, reconnecting). */
  onNotice?: (message: string) => void;
  reconnectMs?: number;
}

/**
 * Streams `ns/app`'s log lines to `onLine` until `signal` aborts. A first connection that
 * fails, and errors that reconnecting cannot fix (a bad token, an app that does not exist),
 * are thrown; a stream that ends or breaks later is reported through `onNotice` and
 * resumed.
 */
export async function tailLogs(
  client: Pick<TidewayClient, "openLogs">,
  ns: string,
  app: string,
  options: TailOptions,
): Promise<void> {
  const { signal } = options;
  const reconnectMs = options.reconnectMs ?? 2000;
  let since: string | undefined;
  // Lines already shown whose time is `since`: a resumed stream starts at that time again.
  let shownAtSince = new Set<string>();
  for (let attempt = 1; ; attempt++) {
    const query: LogQuery = since ? { follow: true, since } : { follow: true, tail: options.tail };
    let lines: AsyncIterable<LogLine | string> | undefined;
    try {
      lines = await client.openLogs(ns, app, query, signal);
    } catch (e) {
      if (signal.aborted || e instanceof CancelledError) return;
      // A first connection that fails, and refusals (bad token, no such app), are final.
      if (attempt === 1 || (e instanceof ApiError && e.status >= 400 && e.status < 500)) throw e;
      options.onNotice?.(`cannot reconnect (${describe(e).message}); trying again in ${reconnectMs / 1000} s`);
    }
    if (lines) {
      try {
        for await (const line of lines) {
          if (typeof line !== "string") {
            const key = `${line.instance}\u0000${line.stream}\u0000${line.line}`;
            if (line.time === since) {
              if (shownAtSince.has(key)) continue;
            } else {
              since = line.time;
              shownAtSince = new Set();
            }
            shownAtSince.add(key);
          }
          options.onLine(line);
        }
        if (signal.aborted) return;
        options.onNotice?.(`the log stream ended; reconnecting in ${reconnectMs / 1000} s`);
      } catch (e) {
        if (signal.aborted || e instanceof CancelledError) return;
        options.onNotice?.(
          `the log stream broke off (${describe(e).message}); reconnecting in ${reconnectMs / 1000} s`,
        );
      }
    }
    try {
      await sleep(reconnectMs, signal);
    } catch {
      return;
    }
  }
}
