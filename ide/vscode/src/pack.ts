// Packing an app directory into the tar.gz artifact a deploy uploads, the way the `tideway`
// CLI does (cli/src/pack.rs):
//
// - every file under the directory, hidden ones included, except what a `.gitignore` or
//   `.tidewayignore` inside it excludes, and any `.git` directory or file;
// - only ignore files inside the directory count (not its parents, not the user's global
//   git excludes), so the same directory packs the same way on every machine;
// - a deeper ignore file wins over a shallower one, and `.tidewayignore` wins over
//   `.gitignore` (so `!dist/` in `.tidewayignore` deploys build output git ignores); a
//   `.gitignore` above a nested repository (a directory holding `.git`) does not reach in;
// - symlinks are stored as symlinks, never followed; files keep only whether they are
//   executable (0755 or 0644); sockets, fifos and devices are skipped with a warning;
// - entries are sorted and carry no owner, so an unchanged tree packs to the same bytes.
//
// No `vscode` import.

import { createWriteStream } from "node:fs";
import { lstat, mkdtemp, readFile, readdir, readlink, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";

import { PackError } from "./errors";
import { IgnoreFile } from "./gitignore";
import { tarStream, type TarEntry } from "./tar";

/** The manifest every artifact must carry at its root. */
export const MANIFEST_FILE = "tideway.toml";
/** Ignore file read in addition to `.gitignore`, with the same syntax and precedence over it. */
export const IGNORE_FILE = ".tidewayignore";
const GITIGNORE = ".gitignore";

export interface PackSummary {
  /** Regular files and symlinks (directories are not counted). */
  files: number;
  /** Bytes of regular file contents, before compression. */
  contentBytes: number;
  /** Entries left out for a reason the user should hear about, and unreadable patterns. */
  warnings: string[];
  /** Archive names in archive order (directories end in `/`). */
  entries: string[];
}

/** Ignore rules that apply below one directory. */
interface Level {
  /** The directory, relative to the root (`""` for the root). */
  rel: string;
  tideway?: IgnoreFile;
  git?: IgnoreFile;
  /** The directory holds `.git`: `.gitignore` files above it do not apply below it. */
  hasGit: boolean;
}

/** Checks that `dir` is a directory with a `tideway.toml`, before any packing. */
export async function checkAppDir(dir: string): Promise<void> {
  let meta;
  try {
    meta = await stat(dir);
  } catch (e) {
    throw new PackError(`cannot read ${dir}: ${(e as Error).message}`);
  }
  if (!meta.isDirectory()) throw new PackError(`${dir} is not a directory`);
  let manifest;
  try {
    manifest = await stat(join(dir, MANIFEST_FILE));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") {
      throw new PackError(
        `${dir} has no ${MANIFEST_FILE}: open the app's folder, or a workspace with a ${MANIFEST_FILE} in it`,
      );
    }
    throw new PackError(`cannot read ${join(dir, MANIFEST_FILE)}: ${(e as Error).message}`);
  }
  if (!manifest.isFile()) throw new PackError(`${join(dir, MANIFEST_FILE)} is not a regular file`);
}

/** What would go into the archive of `dir`, in archive order, without writing anything. */
export async function collect(dir: string): Promise<{ entries: TarEntry[]; warnings: string[] }> {
  await checkAppDir(dir);
  const entries: TarEntry[] = [];
  const warnings: string[] = [];
  await walk(dir, "", [], entries, warnings);
  const manifest = entries.find((e) => e.name === MANIFEST_FILE);
  if (!manifest || manifest.type !== "file") {
    throw new PackError(
      `${MANIFEST_FILE} is excluded by .gitignore or ${IGNORE_FILE}; the artifact needs it at its root`,
    );
  }
  return { entries, warnings };
}

/** Writes `dir` as a gzip-compressed tar to `outFile`. */
export async function pack(dir: string, outFile: string): Promise<PackSummary> {
  const { entries, warnings } = await collect(dir);
  await pipeline(Readable.from(tarStream(entries)), createGzip({ level: 6 }), createWriteStream(outFile));
  let files = 0;
  let contentBytes = 0;
  for (const e of entries) {
    if (e.type === "dir") continue;
    files++;
    if (e.type === "file") contentBytes += e.size;
  }
  return {
    files,
    contentBytes,
    warnings,
    entries: entries.map((e) => (e.type === "dir" ? `${e.name}/` : e.name)),
  };
}

/** Packs `dir` into a fresh temporary file; `dispose()` removes it. */
export async function packToTemp(
  dir: string,
): Promise<{ file: string; summary: PackSummary; dispose: () => Promise<void> }> {
  const tmp = await mkdtemp(join(tmpdir(), "tideway-pack-"));
  const dispose = () => rm(tmp, { recursive: true, force: true });
  try {
    const file = join(tmp, "artifact.tar.gz");
    const summary = await pack(dir, file);
    return { file, summary, dispose };
  } catch (e) {
    await dispose();
    throw e;
  }
}

async function walk(
  root: string,
  rel: string,
  parents: Level[],
  out: TarEntry[],
  warnings: string[],
): Promise<void> {
  const abs = rel ? join(root, ...rel.split("/")) : root;
  const names = (await readdir(abs)).sort(byBytes);
  const level: Level = {
    rel,
    tideway: await readIgnore(abs, IGNORE_FILE, rel, warnings),
    git: await readIgnore(abs, GITIGNORE, rel, warnings),
    hasGit: names.includes(".git"),
  };
  const levels = [...parents, level];
  for (const name of names) {
    if (name === ".git") continue;
    const path = rel ? `${rel}/${name}` : name;
    const full = join(abs, name);
    const meta = await lstat(full);
    const mtime = Math.floor(meta.mtimeMs / 1000);
    if (meta.isDirectory()) {
      if (!included(path, true, levels)) continue;
      out.push({ type: "dir", name: path, mode: 0o755, mtime });
      await walk(root, path, levels, out, warnings);
    } else if (meta.isSymbolicLink()) {
      if (!included(path, false, levels)) continue;
      out.push({ type: "symlink", name: path, target: await readlink(full), mode: 0o777, mtime });
    } else if (meta.isFile()) {
      if (!included(path, false, levels)) continue;
      const executable = process.platform !== "win32" && (meta.mode & 0o111) !== 0;
      out.push({
        type: "file",
        name: path,
        mode: executable ? 0o755 : 0o644,
        mtime,
        size: meta.size,
        source: full,
      });
    } else if (included(path, false, levels)) {
      warnings.push(`skipped ${path}: not a regular file, directory or symlink`);
    }
  }
}

/**
 * Whether `path` goes in: the deepest `.tidewayignore` with a matching rule decides; without
 * one, the deepest `.gitignore` with one (up to the nearest nested repository); without
 * either, it goes in.
 */
function included(path: string, isDir: boolean, levels: Level[]): boolean {
  let tideway: "ignore" | "include" | undefined;
  let git: "ignore" | "include" | undefined;
  let sawRepo = false;
  for (let i = levels.length - 1; i >= 0; i--) {
    const level = levels[i];
    const relative = level.rel ? path.slice(level.rel.length + 1) : path;
    if (tideway === undefined && level.tideway) tideway = level.tideway.match(relative, isDir);
    if (git === undefined && !sawRepo && level.git) git = level.git.match(relative, isDir);
    sawRepo ||= level.hasGit;
  }
  return (tideway ?? git) !== "ignore";
}

async function readIgnore(
  dir: string,
  name: string,
  rel: string,
  warnings: string[],
): Promise<IgnoreFile | undefined> {
  let text: string;
  try {
    const meta = await lstat(join(dir, name));
    if (!meta.isFile()) return undefined;
    text = await readFile(join(dir, name), "utf8");
  } catch {
    return undefined;
  }
  const file = new IgnoreFile(text);
  for (const line of file.invalid) {
    warnings.push(`${rel ? `${rel}/` : ""}${name}: ignored the unreadable pattern ${JSON.stringify(line)}`);
  }
  return file;
}

/** Sorts names by their UTF-8 bytes, like the CLI (and unlike JavaScript's UTF-16 order). */
function byBytes(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
