// Gitignore pattern files (`.gitignore`, `.tidewayignore`): parsing and matching one path
// against one file's rules. How several files combine is `pack.ts`'s business.
//
// A path is matched by itself only — its parent directories are the walker's concern, which
// never descends into an excluded directory. That is what lets a `.tidewayignore` bring
// back a directory a `.gitignore` leaves out.

export type Verdict = "ignore" | "include" | undefined;

interface Rule {
  regex: RegExp;
  negated: boolean;
  dirOnly: boolean;
}

/** The rules of one ignore file, matched against paths relative to the file's directory. */
export class IgnoreFile {
  private readonly rules: Rule[];
  /** Lines that could not be turned into a pattern. */
  readonly invalid: string[] = [];

  constructor(text: string) {
    this.rules = [];
    for (const raw of text.split("\n")) {
      const rule = parseLine(raw.replace(/\r$/, ""));
      if (rule === undefined) continue;
      if (rule === null) {
        this.invalid.push(raw);
        continue;
      }
      this.rules.push(rule);
    }
  }

  /**
   * What this file says about `path` (`/`-separated, relative to the file's directory, no
   * leading `./`): the last matching rule decides; `undefined` when none matches.
   */
  match(path: string, isDir: boolean): Verdict {
    for (let i = this.rules.length - 1; i >= 0; i--) {
      const rule = this.rules[i];
      if (rule.dirOnly && !isDir) continue;
      if (rule.regex.test(path)) return rule.negated ? "include" : "ignore";
    }
    return undefined;
  }
}

/** One line as a rule; `undefined` for blanks and comments, `null` for a broken pattern. */
function parseLine(line: string): Rule | undefined | null {
  if (line === "" || line.startsWith("#")) return undefined;
  let pattern = trimTrailingSpaces(line);
  let negated = false;
  if (pattern.startsWith("!")) {
    negated = true;
    pattern = pattern.slice(1);
  }
  // `\!` and `\#` at the start are literal; the escape is handled by the translation.
  let dirOnly = false;
  if (pattern.endsWith("/") && !pattern.endsWith("\\/")) {
    dirOnly = true;
    pattern = pattern.replace(/\/+$/, "");
  }
  if (pattern === "") return undefined;
  // A slash at the start or in the middle anchors the pattern to the file's directory;
  // otherwise it matches at any depth.
  const anchored = pattern.includes("/");
  if (pattern.startsWith("/")) pattern = pattern.slice(1);
  if (!anchored) pattern = "**/" + pattern;
  try {
    return { regex: new RegExp(`^${translate(pattern)}$`), negated, dirOnly };
  } catch {
    return null;
  }
}

/** Trailing spaces are dropped unless escaped with a backslash. */
function trimTrailingSpaces(s: string): string {
  let end = s.length;
  while (end > 0 && s[end - 1] === " ") {
    let backslashes = 0;
    for (let i = end - 2; i >= 0 && s[i] === "\\"; i--) backslashes++;
    if (backslashes % 2 === 1) break;
    end--;
  }
  return s.slice(0, end);
}

/** A glob with `/` separators as a regular expression source. */
function translate(glob: string): string {
  const segments = glob.split("/");
  const last = segments.length - 1;
  let out = "";
  for (let i = 0; i <= last; i++) {
    const seg = segments[i];
    if (seg === "**") {
      if (i === last) {
        // `a/**`: everything inside `a` (not `a` itself); `**` alone: everything.
        out += i === 0 ? ".*" : ".+";
      } else {
        // `**/b`, `a/**/b`: zero or more directories.
        out += "(?:.*/)?";
      }
      continue;
    }
    out += translateSegment(seg);
    if (i < last) out += "/";
  }
  return out;
}

/** One path segment: `*`, `?`, `[…]` never match `/`; `\x` is a literal `x`. */
function translateSegment(seg: string): string {
  let out = "";
  for (let i = 0; i < seg.length; i++) {
    const c = seg[i];
    if (c === "\\") {
      i++;
      if (i < seg.length) out += escapeRegex(seg[i]);
      continue;
    }
    if (c === "*") {
      // Two or more stars inside a segment act like one.
      while (seg[i + 1] === "*") i++;
      out += "[^/]*";
      continue;
    }
    if (c === "?") {
      out += "[^/]";
      continue;
    }
    if (c === "[") {
      const cls = bracket(seg, i);
      if (cls) {
        out += cls.source;
        i = cls.end;
        continue;
      }
      out += "\\[";
      continue;
    }
    out += escapeRegex(c);
  }
  return out;
}

/** A bracket expression starting at `seg[start]`, or `undefined` when it is not closed. */
function bracket(seg: string, start: number): { source: string; end: number } | undefined {
  let i = start + 1;
  let negate = false;
  if (seg[i] === "!" || seg[i] === "^") {
    negate = true;
    i++;
  }
  let body = "";
  let first = true;
  for (; i < seg.length; i++) {
    const c = seg[i];
    if (c === "]" && !first) {
      if (body === "") return undefined;
      return { source: `(?!/)[${negate ? "^" : ""}${body}]`, end: i };
    }
    first = false;
    if (c === "\\") {
      i++;
      if (i >= seg.length) return undefined;
      body += escapeClassChar(seg[i]);
      continue;
    }
    if (c === "-" && body !== "" && seg[i + 1] !== "]" && i + 1 < seg.length) {
      body += "-";
      continue;
    }
    body += escapeClassChar(c);
  }
  return undefined;
}

function escapeRegex(c: string): string {
  return /[.*+?^${}()|[\]\\/]/.test(c) ? `\\${c}` : c;
}

function escapeClassChar(c: string): string {
  return /[\]\\^-]/.test(c) ? `\\${c}` : c;
}
