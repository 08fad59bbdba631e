// Checks a packaged .vsix: it holds the compiled extension and everything it loads (and no
// tests, sources or dev tooling), and the extension activates from it and registers every
// command package.json declares. Usage: node scripts/check-vsix.mjs <file.vsix>

import { createRequire, builtinModules } from "node:module";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, posix } from "node:path";
import { inflateRawSync } from "node:zlib";

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/check-vsix.mjs <file.vsix>");
  process.exit(2);
}

/** The entries of a zip archive: name → contents. */
function unzip(buf) {
  let eocd = -1;
  for (let i = buf.length - 22; i >= Math.max(0, buf.length - 65_557); i--) {
    if (buf.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error(`${file} is not a zip archive`);
  const count = buf.readUInt16LE(eocd + 10);
  let at = buf.readUInt32LE(eocd + 16);
  const entries = new Map();
  for (let n = 0; n < count; n++) {
    if (buf.readUInt32LE(at) !== 0x02014b50) throw new Error("broken central directory");
    const method = buf.readUInt16LE(at + 10);
    const compressed = buf.readUInt32LE(at + 20);
    const nameLen = buf.readUInt16LE(at + 28);
    const extraLen = buf.readUInt16LE(at + 30);
    const commentLen = buf.readUInt16LE(at + 32);
    const local = buf.readUInt32LE(at + 42);
    const name = buf.toString("utf8", at + 46, at + 46 + nameLen);
    at += 46 + nameLen + extraLen + commentLen;
    const dataAt = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    const raw = buf.subarray(dataAt, dataAt + compressed);
    if (name.endsWith("/")) continue;
    entries.set(name, method === 8 ? inflateRawSync(raw) : Buffer.from(raw));
  }
  return entries;
}

const problems = [];
const check = (ok, what) => {
  if (!ok) problems.push(what);
};

const entries = unzip(readFileSync(file));
const names = [...entries.keys()].sort();
const pkg = JSON.parse(entries.get("extension/package.json")?.toString("utf8") ?? "{}");

check(entries.has("extension.vsixmanifest"), "no extension.vsixmanifest");
check(pkg.name === "tideway-vscode", "no extension/package.json of tideway-vscode");
const main = posix.join("extension", pkg.main ?? "");
check(entries.has(main), `the main file ${main} is missing`);
for (const n of names) {
  check(!/\/(node_modules|src|test)\//.test(n), `${n} should not be packaged`);
  check(!n.endsWith(".ts") && !n.endsWith(".map"), `${n} should not be packaged`);
}

// Everything the extension requires is in the package, a Node built-in, or `vscode`.
const builtins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
const seen = new Set();
const walk = (name) => {
  if (seen.has(name)) return;
  seen.add(name);
  const text = entries.get(name)?.toString("utf8");
  if (text === undefined) {
    problems.push(`${name} is required but not packaged`);
    return;
  }
  for (const m of text.matchAll(/require\("([^"]+)"\)/g)) {
    const spec = m[1];
    if (spec.startsWith(".")) {
      const target = posix.normalize(posix.join(posix.dirname(name), spec));
      walk(target.endsWith(".js") ? target : `${target}.js`);
    } else {
      check(spec === "vscode" || builtins.has(spec), `${name} requires ${spec}, which is not packaged`);
    }
  }
};
walk(main);

// Activate it from an unpacked copy, with a stand-in for the `vscode` module.
const dir = mkdtempSync(join(tmpdir(), "tideway-vsix-check-"));
const registered = [];
try {
  for (const [name, data] of entries) {
    if (!name.startsWith("extension/")) continue;
    const out = join(dir, name);
    mkdirSync(dirname(out), { recursive: true });
    writeFileSync(out, data);
  }
  const stub = join(dir, "extension", "node_modules", "vscode");
  mkdirSync(stub, { recursive: true });
  writeFileSync(
    join(stub, "index.js"),
    `const noop = () => undefined;
const disposable = { dispose: noop };
const channel = () => ({ appendLine: noop, append: noop, clear: noop, show: noop, dispose: noop });
module.exports = {
  commands: { registerCommand: (id) => { globalThis.__registered.push(id); return disposable; }, executeCommand: noop },
  window: {
    createOutputChannel: channel,
    createStatusBarItem: () => ({ show: noop, hide: noop, dispose: noop }),
    showInformationMessage: async () => undefined, showWarningMessage: async () => undefined, showErrorMessage: async () => undefined,
  },
  workspace: { getConfiguration: () => ({ get: (_k, d) => d }) },
  StatusBarAlignment: { Left: 1, Right: 2 },
  ProgressLocation: { Notification: 15 },
  QuickPickItemKind: { Separator: -1, Default: 0 },
};
`,
  );
  globalThis.__registered = registered;
  const require = createRequire(join(dir, "extension", "package.json"));
  const ext = require(join(dir, main));
  const subscriptions = [];
  ext.activate({
    subscriptions,
    secrets: { get: async () => undefined, store: async () => undefined, delete: async () => undefined },
    workspaceState: { get: (_k, d) => d, update: async () => undefined },
    extension: { packageJSON: pkg },
  });
  const declared = (pkg.contributes?.commands ?? []).map((c) => c.command).sort();
  check(
    JSON.stringify([...registered].sort()) === JSON.stringify(declared),
    `registered commands ${JSON.stringify(registered)} differ from package.json's ${JSON.stringify(declared)}`,
  );
  for (const s of subscriptions) s.dispose?.();
} catch (e) {
  problems.push(`activating the packaged extension failed: ${e?.stack ?? e}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}

const size = statSync(file).size;
console.log(`${file}: ${(size / 1024).toFixed(1)} KiB, ${names.length} files`);
for (const n of names) console.log(`  ${n} (${entries.get(n).length} B)`);
console.log(`activated from the package; registered ${registered.length} commands: ${registered.join(", ")}`);
if (problems.length > 0) {
  for (const p of problems) console.error(`vsix check: ${p}`);
  process.exit(1);
}
console.log("vsix check: ok");
