import assert from "node:assert/strict";
import { test } from "node:test";

import { IgnoreFile } from "../gitignore";

function verdicts(rules: string, paths: Array<[string, boolean]>): Record<string, string> {
  const file = new IgnoreFile(rules);
  return Object.fromEntries(paths.map(([p, dir]) => [p, file.match(p, dir) ?? "-"]));
}

test("patterns without a slash match at any depth, by name", () => {
  assert.deepEqual(
    verdicts("*.log\nbuild\n", [
      ["app.log", false],
      ["src/deep/x.log", false],
      [".log", false],
      ["app.logs", false],
      ["build", true],
      ["src/build", false],
      ["building", true],
    ]),
    {
      "app.log": "ignore",
      "src/deep/x.log": "ignore",
      ".log": "ignore",
      "app.logs": "-",
      build: "ignore",
      "src/build": "ignore",
      building: "-",
    },
  );
});

test("a leading or inner slash anchors to the file's directory", () => {
  assert.deepEqual(
    verdicts("/dist\ndocs/api\n", [
      ["dist", true],
      ["src/dist", true],
      ["docs/api", true],
      ["x/docs/api", true],
    ]),
    { dist: "ignore", "src/dist": "-", "docs/api": "ignore", "x/docs/api": "-" },
  );
});

test("a trailing slash matches directories only", () => {
  const file = new IgnoreFile("cache/\n");
  assert.equal(file.match("cache", true), "ignore");
  assert.equal(file.match("a/cache", true), "ignore");
  assert.equal(file.match("cache", false), undefined);
});

test("stars, question marks and brackets never cross a slash", () => {
  const file = new IgnoreFile("a*b\nf?o\n[xy]z\n[!0-9]q\n");
  assert.equal(file.match("a-anything-b", false), "ignore");
  assert.equal(file.match("a/b", false), undefined);
  assert.equal(file.match("foo", false), "ignore");
  assert.equal(file.match("f/o", false), undefined);
  assert.equal(file.match("xz", false), "ignore");
  assert.equal(file.match("wz", false), undefined);
  assert.equal(file.match("aq", false), "ignore");
  assert.equal(file.match("5q", false), undefined);
});

test("double stars: any depth at the start, in the middle and at the end", () => {
  const file = new IgnoreFile("**/tmp\nlogs/**/*.txt\nvendor/**\n");
  assert.equal(file.match("tmp", true), "ignore");
  assert.equal(file.match("a/b/tmp", true), "ignore");
  assert.equal(file.match("logs/x.txt", false), "ignore");
  assert.equal(file.match("logs/a/b/x.txt", false), "ignore");
  assert.equal(file.match("vendor/x/y", false), "ignore");
  assert.equal(file.match("vendor", true), undefined, "vendor/** is what is inside, not vendor");
});

test("the last matching rule wins and ! re-includes", () => {
  const file = new IgnoreFile("*.log\n!keep.log\n");
  assert.equal(file.match("a.log", false), "ignore");
  assert.equal(file.match("keep.log", false), "include");
  assert.equal(new IgnoreFile("!keep.log\n*.log\n").match("keep.log", false), "ignore");
});

test("comments, blanks, escapes and trailing spaces", () => {
  const file = new IgnoreFile("# a comment\n\n\\#hash\n\\!bang\ntrail   \nkept\\ \r\n");
  assert.equal(file.match("# a comment", false), undefined);
  assert.equal(file.match("#hash", false), "ignore");
  assert.equal(file.match("!bang", false), "ignore");
  assert.equal(file.match("trail", false), "ignore");
  assert.equal(file.match("kept ", false), "ignore");
  assert.equal(file.match("kept", false), undefined);
});

test("regex characters in names are literal", () => {
  const file = new IgnoreFile("a.b+(c)\n");
  assert.equal(file.match("a.b+(c)", false), "ignore");
  assert.equal(file.match("aXb+(c)", false), undefined);
  assert.equal(new IgnoreFile("[oops\n").match("[oops", false), "ignore");
});

test("matching is case-sensitive", () => {
  assert.equal(new IgnoreFile("README\n").match("readme", false), undefined);
});
