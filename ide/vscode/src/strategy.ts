// Release strategies as people type and read them. No `vscode` import.

import type { Strategy } from "./types";

/** `20, 50` (or `20 50`, `20%,50%`) as canary weights: whole percents, 1–100, rising. */
export function parseWeights(text: string): number[] {
  const parts = text
    .split(/[\s,;]+/)
    .map((p) => p.trim().replace(/%$/, ""))
    .filter((p) => p !== "");
  if (parts.length === 0) throw new Error("give at least one weight, e.g. 20, 50");
  const weights = parts.map((p) => {
    if (!/^\d+$/.test(p)) throw new Error(`“${p}” is not a whole percent`);
    const n = Number(p);
    if (n < 1 || n > 100) throw new Error(`${n}% is not between 1 and 100`);
    return n;
  });
  for (let i = 1; i < weights.length; i++) {
    if (weights[i] <= weights[i - 1]) {
      throw new Error("weights must rise, e.g. 10, 50, 80");
    }
  }
  return weights;
}

/**
 * A duration in whole seconds: `30`, `30s`, `5m`, `1h`, `1m30s`. Empty means none
 * (`undefined`: wait for a promote).
 */
export function parseSeconds(text: string): number | undefined {
  const t = text.toLowerCase().replace(/\s+/g, "");
  if (t === "") return undefined;
  if (/^\d+$/.test(t)) return Number(t);
  const re = /(\d+)\s*(h|m|s)/gy;
  let total = 0;
  let end = 0;
  for (let m = re.exec(t); m; m = re.exec(t)) {
    total += Number(m[1]) * (m[2] === "h" ? 3600 : m[2] === "m" ? 60 : 1);
    end = re.lastIndex;
  }
  if (end !== t.length || end === 0) {
    throw new Error(`“${text}” is not a duration; use e.g. 30, 30s, 5m or 1m30s`);
  }
  return total;
}

/** A whole number of at least `min`. */
export function parseCount(text: string, min = 1, max = 100): number {
  const t = text.trim();
  if (!/^\d+$/.test(t)) throw new Error(`“${text}” is not a whole number`);
  const n = Number(t);
  if (n < min || n > max) throw new Error(`${n} is not between ${min} and ${max}`);
  return n;
}

/** One line for a strategy: `canary 20% → 50%, 10 s pauses`. */
export function describeStrategy(s: Strategy): string {
  switch (s.type) {
    case "immediate":
      return "immediate";
    case "canary": {
      let steps: string;
      if (s.weights && s.weights.length > 0) steps = s.weights.map((w) => `${w}%`).join(" → ");
      else if (s.linear) steps = `+${s.linear.step}% up to ${s.linear.up_to}%`;
      else steps = `${s.steps?.length ?? 0} steps`;
      const pauses = s.steps?.length
        ? ""
        : s.pause_secs === undefined
          ? ", promote by hand"
          : `, ${s.pause_secs} s pauses`;
      return `canary ${steps}${pauses}`;
    }
    case "batch":
      return `batch: ${s.batches} batches${
        s.interval_secs === undefined ? ", promote by hand" : ` every ${s.interval_secs} s`
      }${s.beta ? ", beta first" : ""}`;
    case "blue_green":
      return `blue-green${
        s.auto_promote_secs === undefined
          ? ", promote by hand"
          : `, promotes ${s.auto_promote_secs} s after ready`
      }`;
    case "gray":
      return `gray: ${s.rules.length} rule${s.rules.length === 1 ? "" : "s"}${s.weight ? ` + ${s.weight}%` : ""}`;
    default:
      return (s as { type: string }).type;
  }
}

/** Whether two strategies are the same (for "last used" marks). */
export function sameStrategy(a: Strategy, b: Strategy): boolean {
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

function canonical(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(canonical);
  if (v && typeof v === "object") {
    return Object.fromEntries(
      Object.keys(v as object)
        .sort()
        .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
        .map((k) => [k, canonical((v as Record<string, unknown>)[k])]),
    );
  }
  return v;
}
