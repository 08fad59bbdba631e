import assert from "node:assert/strict";
import { test } from "node:test";

import type { LogQuery } from "../client";
import { UnreachableError } from "../errors";
import { tailLogs } from "../logs";
import type { LogLine } from "../types";

const line = (time: string, text: string): LogLine => ({ time, instance: "web-1", version: 1, stream: "stdout", line: text });

test("a broken stream is resumed from the last line's time without repeating lines", async () => {
  const queries: LogQuery[] = [];
  const abort = new AbortController();
  const streams: Array<() => AsyncGenerator<LogLine | string>> = [
    async function* () {
      yield line("t1", "a");
      yield line("t2", "b");
      throw new UnreachableError("http://x", "connection reset");
    },
    async function* () {
      // Resumed `since=t2`: the server sends t2's lines again.
      yield line("t2", "b");
      yield line("t2", "c");
      yield line("t3", "d");
      abort.abort();
    },
  ];
  const client = {
    async openLogs(_ns: string, _app: string, q: LogQuery) {
      queries.push(q);
      return streams.shift()!();
    },
  };
  const shown: string[] = [];
  const notices: string[] = [];
  await tailLogs(client as never, "default", "web", {
    tail: 5,
    signal: abort.signal,
    reconnectMs: 1,
    onLine: (l) => shown.push(typeof l === "string" ? l : l.line),
    onNotice: (m) => notices.push(m),
  });
  assert.deepEqual(shown, ["a", "b", "c", "d"]);
  assert.deepEqual(queries, [
    { follow: true, tail: 5 },
    { follow: true, since: "t2" },
  ]);
  assert.equal(notices.length, 1);
  assert.match(notices[0], /broke off \(Cannot reach .*connection reset.*\); reconnecting/);
});

test("a first connection that fails is an error, not a retry loop", async () => {
  const client = {
    async openLogs(): Promise<AsyncIterable<LogLine>> {
      throw new UnreachableError("http://x", "connection refused");
    },
  };
  await assert.rejects(
    tailLogs(client as never, "default", "web", { signal: new AbortController().signal, onLine: () => undefined }),
    UnreachableError,
  );
});
