// A minimal tar writer (POSIX ustar, with pax records for long names): directories, regular
// files and symlinks, owned by 0:0, with the modes the caller gives. Enough for Tideway
// artifacts and fully deterministic, which is why it is not delegated to a library whose
// archives depend on the packing machine's umask and owners.

import { createReadStream } from "node:fs";

const BLOCK = 512;
/** Largest size the 11 octal digits of a ustar size field hold (8 GiB - 1). */
const MAX_OCTAL_SIZE = 0o77777777777;

export type TarEntry =
  | { type: "dir"; name: string; mode: number; mtime: number }
  | { type: "symlink"; name: string; target: string; mode: number; mtime: number }
  | {
      type: "file";
      name: string;
      mode: number;
      mtime: number;
      size: number;
      /** Where the contents are read from. */
      source: string;
    };

/** The archive's bytes, entry after entry, then the two zero blocks that end it. */
export async function* tarStream(entries: Iterable<TarEntry>): AsyncGenerator<Buffer> {
  for (const entry of entries) {
    const name = entry.type === "dir" ? `${entry.name}/` : entry.name;
    const linkname = entry.type === "symlink" ? entry.target : "";
    const size = entry.type === "file" ? entry.size : 0;
    const pax: Record<string, string> = {};
    const fitted = fitName(name);
    if (!fitted) pax.path = name;
    if (Buffer.byteLength(linkname) > 100 || !isAscii(linkname)) pax.linkpath = linkname;
    if (size > MAX_OCTAL_SIZE) pax.size = String(size);
    if (Object.keys(pax).length > 0) {
      const body = paxBody(pax);
      yield header({
        name: fitted?.name ?? paxName(name),
        prefix: fitted?.prefix ?? "",
        mode: 0o644,
        size: body.length,
        mtime: entry.mtime,
        typeflag: "x",
        linkname: "",
      });
      yield pad(body);
    }
    yield header({
      name: fitted?.name ?? paxName(name),
      prefix: fitted?.prefix ?? "",
      mode: entry.mode,
      size: Math.min(size, MAX_OCTAL_SIZE),
      mtime: entry.mtime,
      typeflag: entry.type === "dir" ? "5" : entry.type === "symlink" ? "2" : "0",
      linkname: pax.linkpath ? "" : linkname,
    });
    if (entry.type === "file") {
      yield* fileBlocks(entry.source, entry.size, entry.name);
    }
  }
  yield Buffer.alloc(BLOCK * 2);
}

/** Exactly `size` bytes of `path`, padded to a block; a file that shrank fails the pack
 * (its header already promised `size` bytes). */
async function* fileBlocks(path: string, size: number, name: string): AsyncGenerator<Buffer> {
  let left = size;
  if (size > 0) {
    for await (const chunk of createReadStream(path, { start: 0, end: size - 1 })) {
      const bytes = chunk as Buffer;
      left -= bytes.length;
      yield bytes;
    }
  }
  if (left > 0) throw new Error(`${name} shrank while being packed`);
  const rest = size % BLOCK;
  if (rest) yield Buffer.alloc(BLOCK - rest);
}

/** Splits a name into ustar's `prefix` (155 bytes) and `name` (100 bytes) at a slash, or
 * `undefined` when it does not fit (or is not ASCII, which goes into a pax record). */
function fitName(name: string): { name: string; prefix: string } | undefined {
  if (!isAscii(name)) return undefined;
  if (name.length <= 100) return { name, prefix: "" };
  // Directory names end in '/', which may not be where the split happens.
  for (let i = name.indexOf("/"); i >= 0; i = name.indexOf("/", i + 1)) {
    const prefix = name.slice(0, i);
    const rest = name.slice(i + 1);
    if (prefix.length <= 155 && rest.length <= 100 && rest.length > 0) {
      return { name: rest, prefix };
    }
  }
  return undefined;
}

/** A readable stand-in for the ustar name field of an entry whose real name is in pax. */
function paxName(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, "_");
  return Buffer.from(ascii).subarray(0, 100).toString("latin1");
}

function isAscii(s: string): boolean {
  return /^[\x20-\x7e]*$/.test(s);
}

/** pax records: `<len> <key>=<value>\n`, where `<len>` counts the whole record. */
function paxBody(fields: Record<string, string>): Buffer {
  const records = Object.entries(fields).map(([k, v]) => {
    const rest = ` ${k}=${v}\n`;
    const restLen = Buffer.byteLength(rest);
    let len = restLen + 1;
    while (String(len).length + restLen !== len) len = String(len).length + restLen;
    return `${len}${rest}`;
  });
  return Buffer.from(records.join(""), "utf8");
}

function pad(body: Buffer): Buffer {
  const rest = body.length % BLOCK;
  return rest ? Buffer.concat([body, Buffer.alloc(BLOCK - rest)]) : body;
}

interface HeaderFields {
  name: string;
  prefix: string;
  mode: number;
  size: number;
  mtime: number;
  typeflag: string;
  linkname: string;
}

function header(h: HeaderFields): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(h.name, 0, 100, "latin1");
  octal(b, 100, 8, h.mode & 0o7777);
  octal(b, 108, 8, 0);
  octal(b, 116, 8, 0);
  octal(b, 124, 12, h.size);
  octal(b, 136, 12, Math.max(0, Math.floor(h.mtime)));
  b.write(h.typeflag, 156, 1, "latin1");
  b.write(h.linkname, 157, 100, "latin1");
  b.write("ustar\u000000", 257, 8, "latin1");
  b.write(h.prefix, 345, 155, "latin1");
  // The checksum is computed with its own field read as spaces.
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of b) sum += byte;
  b.write(sum.toString(8).padStart(6, "0") + "\u0000 ", 148, 8, "latin1");
  return b;
}

/** A NUL-terminated, zero-padded octal number filling `width` bytes. */
function octal(b: Buffer, offset: number, width: number, value: number): void {
  const digits = value.toString(8);
  if (digits.length > width - 1) throw new Error(`${value} does not fit a tar header field`);
  b.write(digits.padStart(width - 1, "0") + "\u0000", offset, width, "latin1");
}
