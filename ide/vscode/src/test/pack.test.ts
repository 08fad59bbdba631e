import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";

import * as tar from "tar";

import { PackError } from "../errors";
import { pack, packToTemp } from "../pack";
import { REPO_ROOT } from "./harness";

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "tideway-pack-test-"));
  dirs.push(d);
  return d;
}

function write(root: string, rel: string, text: string): void {
  const p = join(root, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
}

interface Listed {
  type: string;
  mode: number;
  linkpath?: string;
  size: number;
  uid?: number;
  body?: string;
}

/** The archive's entries as an independent reader (node-tar) sees them. */
async function listArchive(file: string): Promise<Map<string, Listed>> {
  const out = new Map<string, Listed>();
  const pending: Promise<void>[] = [];
  await tar.t({
    file,
    onReadEntry: (e) => {
      const name = e.path.replace(/\/$/, "");
      assert.ok(!out.has(name), `${name} twice`);
      const item: Listed = { type: e.type, mode: e.mode ?? -1, linkpath: e.linkpath || undefined, size: e.size ?? 0, uid: e.uid };
      out.set(name, item);
      const chunks: Buffer[] = [];
      e.on("data", (c: Buffer) => chunks.push(c));
      pending.push(new Promise((res) => e.on("end", () => {
        item.body = Buffer.concat(chunks).toString("utf8");
        res();
      })));
    },
  });
  await Promise.all(pending);
  return out;
}

async function packed(root: string): Promise<{ file: string; names: string[]; listing: Map<string, Listed> }> {
  const file = join(tempDir(), "a.tar.gz");
  const summary = await pack(root, file);
  const listing = await listArchive(file);
  assert.deepEqual([...listing.keys()], summary.entries.map((e) => e.replace(/\/$/, "")));
  return { file, names: [...listing.keys()], listing };
}

test("pack honours .gitignore and .tidewayignore, keeps links and normalizes modes", async () => {
  const root = tempDir();
  write(root, "tideway.toml", '[run]\ncommand = "./run.sh"\n');
  write(root, "run.sh", "#!/bin/sh\nexec ./server\n");
  chmodSync(join(root, "run.sh"), 0o700);
  write(root, "src/main.py", "print('hi')\n");
  chmodSync(join(root, "src/main.py"), 0o600);
  write(root, ".env.example", "A=1\n");
  write(root, ".gitignore", "*.log\n/build/\n");
  write(root, ".tidewayignore", "secrets.txt\ndocs/\n");
  write(root, "app.log", "noise");
  write(root, "build/out.bin", "x");
  write(root, "secrets.txt", "hunter2");
  write(root, "docs/readme.md", "# docs");
  // A nested .gitignore applies below its own directory only.
  write(root, "src/.gitignore", "cache/\n!keep.log\n");
  write(root, "src/cache/x.pyc", "bytecode");
  write(root, "src/keep.log", "kept by negation");
  write(root, "src/other.log", "ignored from the root file");
  write(root, "other/cache/y.txt", "not under src, so kept");
  write(root, ".git/HEAD", "ref: refs/heads/main\n");
  write(root, "sub/.git", "gitdir: ../.git/modules/sub\n");
  write(root, "sub/lib.py", "");
  mkdirSync(join(root, "empty"));
  symlinkSync("src/main.py", join(root, "main-link"));
  // A link to a directory is stored as a link, not walked into.
  symlinkSync("src", join(root, "src-link"));

  const file = join(tempDir(), "a.tar.gz");
  const summary = await pack(root, file);
  const listing = await listArchive(file);
  // Archive order is a walk, each directory sorted; compare as a sorted set.
  assert.deepEqual(
    [...listing.keys()].sort(),
    [
      ".env.example",
      ".gitignore",
      ".tidewayignore",
      "empty",
      "main-link",
      "other",
      "other/cache",
      "other/cache/y.txt",
      "run.sh",
      "src",
      "src-link",
      "src/.gitignore",
      "src/keep.log",
      "src/main.py",
      "sub",
      "sub/lib.py",
      "tideway.toml",
    ],
  );
  assert.equal(listing.get("run.sh")?.type, "File");
  assert.equal(listing.get("run.sh")?.mode, 0o755);
  assert.equal(listing.get("src/main.py")?.mode, 0o644);
  assert.equal(listing.get("src/main.py")?.body, "print('hi')\n");
  assert.equal(listing.get("src")?.type, "Directory");
  assert.equal(listing.get("src")?.mode, 0o755);
  assert.equal(listing.get("main-link")?.type, "SymbolicLink");
  assert.equal(listing.get("main-link")?.linkpath, "src/main.py");
  assert.equal(listing.get("src-link")?.type, "SymbolicLink");
  assert.equal(listing.get("tideway.toml")?.uid, 0);
  // 10 regular files and 2 links.
  assert.equal(summary.files, 12);
  assert.deepEqual(summary.warnings, []);
});

test(".tidewayignore can bring back what .gitignore leaves out", async () => {
  // Typical: build output is kept out of git but is exactly what gets deployed.
  const root = tempDir();
  write(root, "tideway.toml", '[run]\ncommand = "x"\n');
  write(root, ".gitignore", "dist/\nnode_modules/\n*.map\n");
  write(root, ".tidewayignore", "!dist/\n");
  write(root, "dist/app.js", "");
  write(root, "dist/app.js.map", "");
  write(root, "node_modules/x/index.js", "");
  const { names } = await packed(root);
  assert.ok(names.includes("dist/app.js"), String(names));
  // The .gitignore still applies to what is inside the brought-back directory.
  assert.ok(!names.includes("dist/app.js.map"), String(names));
  assert.ok(!names.some((n) => n.startsWith("node_modules")), String(names));
});

test("a deeper ignore file wins over a shallower one", async () => {
  const root = tempDir();
  write(root, "tideway.toml", '[run]\ncommand = "x"\n');
  write(root, ".gitignore", "*.txt\n");
  write(root, "a/.gitignore", "!wanted.txt\n");
  write(root, "a/wanted.txt", "");
  write(root, "a/other.txt", "");
  write(root, "b/wanted.txt", "");
  const { names } = await packed(root);
  assert.ok(names.includes("a/wanted.txt"));
  assert.ok(!names.includes("a/other.txt"));
  assert.ok(!names.includes("b/wanted.txt"));
});

test("the same tree packs to the same bytes", async () => {
  const root = tempDir();
  write(root, "tideway.toml", '[run]\ncommand = "x"\n');
  write(root, "a/b.txt", "b");
  const one = join(tempDir(), "1.tar.gz");
  const two = join(tempDir(), "2.tar.gz");
  await pack(root, one);
  await pack(root, two);
  assert.deepEqual(readFileSync(one), readFileSync(two));
});

test("long and non-ASCII names survive (pax records)", async () => {
  const root = tempDir();
  write(root, "tideway.toml", '[run]\ncommand = "x"\n');
  const long = `${"d".repeat(120)}/${"f".repeat(110)}.txt`;
  write(root, long, "long");
  write(root, "données/été.txt", "accents");
  const { listing } = await packed(root);
  assert.equal(listing.get(long)?.body, "long");
  assert.equal(listing.get("données/été.txt")?.body, "accents");
  if (!spawnSync("tar", ["--version"]).error) {
    // The system tar, when there is one, reads the archive the same way.
    const file = join(tempDir(), "c.tar.gz");
    await pack(root, file);
    const listed = spawnSync("tar", ["-tzf", file], { encoding: "utf8" });
    assert.equal(listed.status, 0, listed.stderr);
    assert.ok(listed.stdout.split("\n").includes(long), listed.stdout);
  }
});

test("a directory without tideway.toml, or one that ignores it, is refused", async () => {
  const root = tempDir();
  write(root, "app.py", "");
  await assert.rejects(pack(root, join(tempDir(), "x.tar.gz")), (e: unknown) => e instanceof PackError && /has no tideway\.toml/.test(e.message));
  await assert.rejects(pack(join(root, "missing"), join(tempDir(), "x.tar.gz")), /cannot read/);

  write(root, "tideway.toml", '[run]\ncommand = "x"\n');
  write(root, ".tidewayignore", "*.toml\n");
  await assert.rejects(pack(root, join(tempDir(), "x.tar.gz")), /excluded by \.gitignore or \.tidewayignore/);
});

test("examples/hello packs with its manifest at the root", async () => {
  const { file, summary, dispose } = await packToTemp(join(REPO_ROOT, "examples", "hello"));
  try {
    const listing = await listArchive(file);
    assert.ok(listing.has("tideway.toml"));
    assert.ok(listing.has("app.py"));
    assert.equal(summary.files, listing.size);
  } finally {
    await dispose();
  }
});
