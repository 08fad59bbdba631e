// Starts a real `tideway server` for the end-to-end tests: a temporary data dir, every
// `--*-addr` flag its `--help` lists on 127.0.0.1:0 (so parallel runs never collide), and
// the URLs and admin token parsed from what it prints.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import {
  closeSync,
  existsSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmdirSync,
  rmSync,
} from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

/** The repository root (this file runs from `ide/vscode/out/test/`). */
export const REPO_ROOT = resolve(__dirname, "..", "..", "..", "..");

export function tidewayBin(): string {
  return (
    process.env.TIDEWAY_BIN ||
    join(homedir(), ".cache", "tideway-target", "debug", "tideway")
  );
}

export interface TestServer {
  url: string;
  gatewayUrl: string;
  token: string;
  dataDir: string;
  /** The server's stderr so far. */
  log(): string;
  stop(): Promise<void>;
}

/** The `--something-addr` flags of `tideway server --help`. */
export function addrFlags(bin: string): string[] {
  const help = spawnSync(bin, ["server", "--help"], { encoding: "utf8" });
  if (help.error) throw help.error;
  const flags = new Set<string>();
  for (const m of help.stdout.matchAll(/^\s*(--[a-z0-9-]+-addr)\b/gm)) flags.add(m[1]);
  return [...flags];
}

export async function startServer(): Promise<TestServer> {
  const bin = tidewayBin();
  if (!existsSync(bin)) {
    throw new Error(
      `no tideway binary at ${bin}: build it with \`cargo build -p tideway --bin tideway\` ` +
        "(CARGO_TARGET_DIR=~/.cache/tideway-target) or set TIDEWAY_BIN",
    );
  }
  const dataDir = mkdtempSync(join(tmpdir(), "tideway-vscode-test-"));
  const args = ["server", "--data-dir", dataDir];
  for (const flag of addrFlags(bin)) args.push(flag, "127.0.0.1:0");
  const errFile = join(dataDir, "server.log");
  const errFd = openSync(errFile, "w");
  const child: ChildProcess = spawn(bin, args, {
    stdio: ["ignore", "pipe", errFd],
    env: { ...process.env, TIDEWAY_LOG: process.env.TIDEWAY_LOG ?? "warn" },
  });
  closeSync(errFd);
  const log = () => {
    try {
      return readFileSync(errFile, "utf8");
    } catch {
      return "";
    }
  };
  let url = "";
  let gatewayUrl = "";
  let token = "";
  const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)));
  const lines = createInterface({ input: child.stdout! });
  const ready = new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`tideway server did not start within 60 s; log:\n${log()}`)), 60_000);
    lines.on("line", (line) => {
      const take = (prefix: string) => (line.startsWith(prefix) ? line.slice(prefix.length).trim() : undefined);
      token = take("tideway: admin token: ") ?? token;
      gatewayUrl = take("tideway: gateway listening on ") ?? gatewayUrl;
      url = take("tideway: api listening on ") ?? url;
      if (url && gatewayUrl) {
        clearTimeout(timer);
        res();
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      rej(new Error(`tideway server exited (${code}) before listening; log:\n${log()}`));
    });
  });
  try {
    await ready;
  } catch (e) {
    child.kill("SIGKILL");
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  if (!token) token = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
  return {
    url,
    gatewayUrl,
    token,
    dataDir,
    log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGTERM");
        const killer = setTimeout(() => child.kill("SIGKILL"), 20_000);
        await exited;
        clearTimeout(killer);
      }
      lines.close();
      await killInstances(dataDir);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Polls `probe` until it returns a value other than `undefined`. */
export async function eventually<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 30_000,
  intervalMs = 200,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${what}${lastError ? `: ${String(lastError)}` : ""}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * Instances outlive the control plane by design; tests must not leak them, nor the cgroups
 * the driver made for them. Kills (by pid) every process whose working directory is inside
 * the server's data dir, then removes the cgroup directories named after its instances.
 * Linux only; elsewhere there is no /proc to look in.
 */
async function killInstances(dataDir: string): Promise<void> {
  if (!existsSync("/proc/self")) return;
  let ids: string[] = [];
  try {
    ids = readdirSync(join(dataDir, "runtime", "instances"));
  } catch {
    // No instance ever started.
  }
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cwd = readlinkSync(`/proc/${entry}/cwd`);
      if (cwd === dataDir || cwd.startsWith(dataDir + "/")) pids.push(Number(entry));
    } catch {
      // Gone, or not ours to read.
    }
  }
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
  for (let i = 0; i < 50 && pids.some((p) => existsSync(`/proc/${p}`)); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  if (ids.length === 0) return;
  const stack: Array<[string, number]> = [["/sys/fs/cgroup", 0]];
  while (stack.length > 0) {
    const [dir, depth] = stack.pop()!;
    let entries;
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const path = join(dir, e.name);
      if (ids.includes(e.name)) {
        try {
          rmdirSync(path);
        } catch {
          // Still busy or not ours.
        }
      } else if (depth < 6) {
        stack.push([path, depth + 1]);
      }
    }
  }
}
