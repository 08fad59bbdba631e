// Text for people: log lines and the "Show App" report. No `vscode` import.

import type { TidewayClient } from "./client";
import type { DeployStep } from "./deploy";
import { humanBytes } from "./client";
import { describeStrategy } from "./strategy";
import type { App, Instance, LogLine, Release, TrafficPolicyState, Version } from "./types";
import { isActive } from "./types";

/** `HH:MM:SS.mmm <instance> | <line>`; stderr lines use `!` instead of `|`. Text that is
 * not a LogLine is shown as sent. */
export function formatLogLine(line: LogLine | string, options: { utc?: boolean } = {}): string {
  if (typeof line === "string") return line;
  const mark = line.stream === "stderr" ? "!" : "|";
  const d = new Date(line.time);
  const time = Number.isNaN(d.getTime()) ? line.time : clock(d, options.utc ?? false);
  return `${time} ${line.instance} ${mark} ${line.line.replace(/[\r\n]+$/, "")}`;
}

function clock(d: Date, utc: boolean): string {
  const [h, m, s, ms] = utc
    ? [d.getUTCHours(), d.getUTCMinutes(), d.getUTCSeconds(), d.getUTCMilliseconds()]
    : [d.getHours(), d.getMinutes(), d.getSeconds(), d.getMilliseconds()];
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(h)}:${two(m)}:${two(s)}.${String(ms).padStart(3, "0")}`;
}

/** Everything "Show App" reports. */
export interface AppSnapshot {
  app: App;
  /** Newest first. */
  versions: Version[];
  /** Newest first. */
  releases: Release[];
  instances: Instance[];
  traffic?: TrafficPolicyState;
}

/** Reads an app's state in parallel: the app, its latest versions and releases, its
 * instances and its traffic policy. */
export async function loadSnapshot(
  client: Pick<TidewayClient, "getApp" | "listVersions" | "listReleases" | "listInstances" | "getTraffic">,
  ns: string,
  app: string,
  signal?: AbortSignal,
): Promise<AppSnapshot> {
  const [a, versions, releases, instances, traffic] = await Promise.all([
    client.getApp(ns, app, signal),
    client.listVersions(ns, app, 10, signal),
    client.listReleases(ns, app, 5, signal),
    client.listInstances(ns, app, signal),
    client.getTraffic(ns, app, signal),
  ]);
  return { app: a, versions, releases, instances, traffic };
}

/** Where traffic goes: the explicit weights, or else the active release's split, or else
 * everything to the current version. */
export function trafficSplit(s: AppSnapshot): string {
  const weights = s.traffic?.policy.weights ?? [];
  const rules = s.traffic?.policy.rules ?? [];
  let text: string;
  if (weights.length > 0) {
    text = weights.map((w) => `v${w.version} ${w.weight}%`).join(", ");
  } else {
    const active = s.releases.find((r) => isActive(r.state));
    const weight = active?.progress?.weight ?? 0;
    const stable = active?.progress?.stable_version ?? s.app.current_version;
    if (active && weight > 0 && weight < 100 && stable !== undefined) {
      text = `v${stable} ${100 - weight}%, v${active.target_version} ${weight}% (release ${active.id})`;
    } else if (s.app.current_version !== undefined) {
      text = `v${s.app.current_version} 100%`;
    } else {
      text = "no version serves yet";
    }
  }
  if (rules.length > 0) text += ` + ${rules.length} match rule${rules.length === 1 ? "" : "s"}`;
  return text;
}

/** A plain-text report of an app, for an output channel. */
export function renderSnapshot(s: AppSnapshot, now: Date = new Date()): string {
  const a = s.app;
  const out: string[] = [];
  out.push(`${a.namespace}/${a.name}${a.description ? ` — ${a.description}` : ""}`);
  out.push(`  current version: ${a.current_version === undefined ? "none yet" : `v${a.current_version}`}`);
  out.push(`  replicas:        ${a.replicas}`);
  out.push(`  traffic:         ${trafficSplit(s)}`);
  out.push(`  reached at:      ${[`${a.name}.${a.namespace}.localhost`, ...(a.domains ?? []), ...(a.path_prefixes ?? []).map((p) => `*${p}`)].join(", ")}`);
  out.push("");

  out.push(`Instances (${s.instances.length})`);
  if (s.instances.length === 0) out.push("  none");
  for (const i of [...s.instances].sort((x, y) => y.version - x.version || x.id.localeCompare(y.id))) {
    const extra = [
      i.restarts ? `${i.restarts} restarts` : "",
      i.cpu_percent !== undefined ? `cpu ${i.cpu_percent.toFixed(0)}%` : "",
      i.memory_bytes !== undefined ? `mem ${humanBytes(i.memory_bytes)}` : "",
      i.message ?? "",
    ].filter(Boolean);
    out.push(`  ${i.id}  v${i.version}  ${i.state.replace("_", " ")}${extra.length ? `  (${extra.join(", ")})` : ""}`);
  }
  out.push("");

  out.push(`Versions (latest ${s.versions.length})`);
  if (s.versions.length === 0) out.push("  none");
  for (const v of s.versions) {
    const mark = v.number === a.current_version ? "  ← current" : "";
    out.push(`  v${v.number}  ${v.state.replace("_", " ")}  ${ago(v.created_at, now)}  ${v.artifact_digest.slice(0, 19)}…${mark}`);
  }
  out.push("");

  out.push(`Releases (latest ${s.releases.length})`);
  if (s.releases.length === 0) out.push("  none");
  for (const r of s.releases) {
    const from = r.from_versions.length ? r.from_versions.map((v) => `v${v}`).join("+") : "nothing";
    const progress =
      isActive(r.state) && r.progress && r.strategy.type !== "immediate"
        ? ` step ${(r.progress.step ?? 0) + 1}, ${r.progress.weight ?? 0}%`
        : "";
    out.push(
      `  #${r.id}  ${from} → v${r.target_version}  ${r.state}${progress}  ${describeStrategy(r.strategy)}  ${ago(r.created_at, now)}${r.reason ? `\n        ${r.reason}` : ""}`,
    );
  }
  return out.join("\n");
}

/** `3 min ago`. */
export function ago(iso: string, now: Date): string {
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  const s = Math.max(0, Math.round((now.getTime() - t) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

/** A progress line for a deploy step. */
export function deployStepText(step: DeployStep): string {
  switch (step.kind) {
    case "packing":
      return "packing…";
    case "packed":
      return `packed ${step.summary.files} file${step.summary.files === 1 ? "" : "s"} (${humanBytes(step.bytes)})`;
    case "app":
      return step.created ? "created the app" : "the app exists";
    case "uploading":
      return `uploading ${humanBytes(step.sent)} of ${humanBytes(step.total)}`;
    case "uploaded":
      return `uploaded v${step.version.number} (${step.version.artifact_digest.slice(0, 19)}…, ${humanBytes(step.bytes)} in ${(step.elapsedMs / 1000).toFixed(1)} s)`;
    case "building":
      return `building v${step.version.number}… ${Math.round(step.elapsedMs / 1000)} s`;
    case "built":
      return `built v${step.version.number} in ${(step.elapsedMs / 1000).toFixed(1)} s`;
    case "released":
      return `release ${step.release.id} started: ${step.release.from_versions.map((v) => `v${v}`).join("+") || "nothing"} → v${step.release.target_version} (${describeStrategy(step.release.strategy)})`;
  }
}

/** A folder name as an app name: lower case, other characters as `-`. */
export function toDnsLabel(name: string): string {
  const label = name
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, "-")
    .replace(/^-+|-+$/g, "")
    .slice(0, 63)
    .replace(/-+$/, "");
  return label || "app";
}
