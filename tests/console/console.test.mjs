// Browser tests of the Tideway web console: a real `tideway server` (binary from TIDEWAY_BIN)
// on port 0 with a temp data dir, driven through Debian's Chromium with playwright-core.
// Steps run in order and share one app, like an operator's session.

import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, mkdirSync, cpSync, writeFileSync, rmSync, existsSync } from "node:fs";
import { tmpdir, homedir } from "node:os";
import path from "node:path";
import http from "node:http";
import readline from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, "../..");
const shots = path.join(repo, "target", "console-screenshots");
const targetDir = process.env.CARGO_TARGET_DIR || path.join(repo, "target");
const bin = process.env.TIDEWAY_BIN || path.join(targetDir, "debug", "tideway");
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const APP = "hello";
const STEP = { timeout: 60_000 };

let server, api, gateway, adminToken, dataDir, browser, context, page;
let load = null;

function startServer() {
  dataDir = mkdtempSync(path.join(tmpdir(), "tideway-console-"));
  const args = ["server", "--data-dir", dataDir];
  for (const flag of ["api", "gateway", "grpc", "otlp", "eureka", "consul"]) {
    args.push(`--${flag}-addr`, "127.0.0.1:0");
  }
  server = spawn(bin, args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" },
  });
  const log = [];
  server.stderr.on("data", (d) => log.push(String(d)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("server did not start:\n" + log.join(""))), 30_000);
    server.on("exit", (code) => reject(new Error(`server exited (${code}):\n${log.join("")}`)));
    readline.createInterface({ input: server.stdout }).on("line", (line) => {
      let m;
      if ((m = line.match(/^tideway: admin token: (\S+)/))) adminToken = m[1];
      if ((m = line.match(/^tideway: gateway listening on (\S+)/))) gateway = m[1];
      if ((m = line.match(/^tideway: api listening on (\S+)/))) {
        api = m[1];
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/// The hello example as a tar.gz; `marker` makes the artifact (and its digest) distinct.
function artifact(dir, marker) {
  const src = path.join(dir, `src-${marker}`);
  cpSync(path.join(repo, "examples", "hello"), src, {
    recursive: true,
    filter: (p) => !p.includes("__pycache__"),
  });
  writeFileSync(path.join(src, "BUILD"), `${marker}\n`);
  const out = path.join(dir, `hello-${marker}.tar.gz`);
  execFileSync("tar", ["czf", out, "-C", src, "."]);
  return out;
}

/// Requests through the gateway with a few concurrent clients until stopped.
function startLoad() {
  const url = new URL(gateway);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  let running = true;
  let sent = 0;
  const one = () =>
    new Promise((resolve) => {
      const req = http.request(
        { host: url.hostname, port: url.port, path: "/", agent, headers: { host: `${APP}.default.localhost` } },
        (res) => {
          res.resume();
          res.on("end", resolve);
        },
      );
      req.on("error", () => setTimeout(resolve, 50));
      req.end();
    });
  const worker = async () => {
    while (running) {
      await one();
      sent++;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  const workers = [worker(), worker(), worker()];
  return {
    get sent() { return sent; },
    async stop() {
      running = false;
      await Promise.all(workers);
      agent.destroy();
    },
  };
}

async function shot(name, p = page) {
  await p.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

async function apiCall(method, p, body, token = adminToken) {
  const res = await fetch(api + "/api/v1" + p, {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function login(ctx, token) {
  const p = await ctx.newPage();
  p.on("dialog", (d) => d.accept());
  await p.goto(api + "/login");
  await p.getByLabel("API token").fill(token);
  await p.getByRole("button", { name: "Sign in" }).click();
  await p.waitForURL(api + "/");
  return p;
}

async function waitState(p, states, timeout = 60_000) {
  const selector = states.map((s) => `#release-state[data-state="${s}"]`).join(", ");
  await p.waitForSelector(selector, { timeout });
  return p.getAttribute("#release-state", "data-state");
}

describe("web console", { timeout: 170_000 }, () => {
  let artifacts;

  before(async () => {
    assert.ok(existsSync(bin), `no tideway binary at ${bin}; build it or set TIDEWAY_BIN`);
    mkdirSync(shots, { recursive: true });
    await startServer();
    const dir = mkdtempSync(path.join(tmpdir(), "tideway-artifacts-"));
    artifacts = { v1: artifact(dir, "v1"), v2: artifact(dir, "v2") };
    browser = await chromium.launch({ executablePath: chromiumPath, args: ["--no-sandbox"] });
    context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  });

  after(async () => {
    if (load) await load.stop();
    await browser?.close();
    if (server && server.exitCode === null) {
      server.kill("SIGTERM");
      await new Promise((r) => setTimeout(r, 500));
      // Instances run in their own process groups; the server stops them on SIGTERM.
      if (server.exitCode === null) await new Promise((r) => server.once("exit", r));
    }
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("sends visitors to sign in and refuses an unknown token", STEP, async () => {
    const p = await context.newPage();
    await p.goto(api + "/");
    await p.waitForURL(api + "/login");
    await shot("login", p);
    await p.getByLabel("API token").fill("tw_wrong");
    await p.getByRole("button", { name: "Sign in" }).click();
    await p.getByText("That token is not valid").waitFor();
    await p.close();
  });

  it("signs in (HttpOnly, SameSite=Strict session) and refuses forms without the CSRF token", STEP, async () => {
    page = await login(context, adminToken);
    await page.getByRole("heading", { name: "Overview" }).waitFor();
    const cookie = (await context.cookies()).find((c) => c.name === "tideway_session");
    assert.ok(cookie, "session cookie set");
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "Strict");
    const forged = await page.request.post(api + "/namespaces/default/apps", {
      form: { name: "forged", namespace: "default" },
      maxRedirects: 0,
    });
    assert.equal(forged.status(), 403);
  });

  it("creates an app and uploads two versions", STEP, async () => {
    await page.getByLabel("Name", { exact: true }).fill(APP);
    await page.getByRole("button", { name: "Create app" }).click();
    await page.waitForURL(`${api}/apps/default/${APP}/deploy`);
    await page.getByText(`App ${APP} created`).waitFor();
    for (const v of ["v1", "v2"]) {
      await page.getByLabel("Artifact").setInputFiles(artifacts[v]);
      await page.getByRole("button", { name: "Upload" }).click();
      await page.getByText(`Version ${v} uploaded`).waitFor();
    }
    await shot("deploy");
  });

  it("releases v1 immediately and watches its instance become ready", STEP, async () => {
    await page.selectOption("#target_version", "1");
    await page.getByLabel("Immediate").check();
    await page.click("#start-release");
    await page.waitForURL(/\/releases\/\d+$/);
    assert.equal(await waitState(page, ["succeeded"]), "succeeded");
    await page.goto(`${api}/apps/default/${APP}`);
    await page.waitForSelector('#instances tr[data-state="ready"]', { timeout: 30_000 });
    await page.waitForSelector('#split[data-split="v1=100;"]');
  });

  it("previews a canary plan, then starts it: 20% to v2 with an indefinite pause", STEP, async () => {
    await page.goto(`${api}/apps/default/${APP}/deploy`);
    await page.selectOption("#target_version", "2");
    await page.getByLabel("Canary").check();
    await page.getByLabel("Weights (%)").fill("20");
    await page.click("#preview-plan");
    const plan = page.locator("#plan");
    await plan.waitFor();
    const text = await plan.innerText();
    assert.match(text, /set weight 20%/);
    assert.match(text, /pause until promoted/);
    await shot("deploy-plan");
    await page.click("#start-release");
    await page.waitForURL(/\/releases\/\d+$/);
    assert.equal(await waitState(page, ["paused"]), "paused");
    assert.equal((await page.innerText("#release-weight")).trim(), "20%");
  });

  it("shows the split and live charts moving under load, and tails logs", STEP, async () => {
    load = startLoad();
    await page.goto(`${api}/apps/default/${APP}`);
    await page.waitForSelector('#split[data-split="v1=80;v2=20;"]');
    await page.waitForSelector("#instances tr[data-state=ready] >> nth=1", { timeout: 30_000 });
    await page.waitForFunction(() => Number(document.querySelector("#stat-rps")?.dataset.value) > 0, null, { timeout: 20_000 });
    await page.waitForSelector('#chart-rps path[data-series="v2"]', { timeout: 20_000 });
    const before = await page.getAttribute('#chart-rps path[data-series="v1"]', "d");
    await page.waitForFunction(
      (d) => document.querySelector('#chart-rps path[data-series="v1"]')?.getAttribute("d") !== d,
      before,
      { timeout: 10_000 },
    );
    assert.ok((await page.locator("#chart-p99 path.series").count()) >= 1, "p99 chart has lines");
    // Logs: every request is logged by the app; the tail shows them.
    await page.waitForSelector("#log-lines li", { timeout: 20_000 });
    const first = await page.locator("#log-instance option").nth(1).getAttribute("value");
    await page.selectOption("#log-instance", first);
    await page.waitForFunction(
      (id) => {
        const lines = [...document.querySelectorAll("#log-lines li")];
        return lines.length > 0 && lines.every((l) => l.textContent.includes(id));
      },
      first,
      { timeout: 20_000 },
    );
    assert.ok(load.sent > 0);
    await shot("app");
  });

  it("promotes the canary, then rolls back", STEP, async () => {
    await page.goto(`${api}/apps/default/${APP}/releases/2`);
    await shot("release-paused");
    for (let i = 0; i < 3; i++) {
      const state = await page.getAttribute("#release-state", "data-state");
      if (state === "succeeded") break;
      if (state === "paused") {
        await page.click("#do-promote");
        await page.getByText(/promote done/).waitFor();
      }
      await waitState(page, ["succeeded", "paused"]);
    }
    assert.equal(await waitState(page, ["succeeded"]), "succeeded");
    await page.waitForSelector("#timeline li");
    await shot("release");
    await page.click("#do-rollback");
    await page.getByText(/Rolling back to v1/).waitFor();
    assert.equal(await waitState(page, ["succeeded"]), "succeeded");
    await page.goto(`${api}/apps/default/${APP}`);
    await page.waitForSelector('#split[data-split="v1=100;"]');
  });

  it("edits the scaling policy: min > max is refused with the field named", STEP, async () => {
    await page.goto(`${api}/apps/default/${APP}/autoscaling`);
    await page.getByLabel("Policy (JSON)").fill('{"min": 5, "max": 2}');
    await page.click("#save-policy");
    const error = await page.locator("#policy-error").innerText();
    assert.match(error, /min/);
    assert.match(error, /must not exceed max/);
    assert.equal(await page.inputValue("#policy"), '{"min": 5, "max": 2}', "the draft is kept");
    await shot("autoscaling-error");
    await page.getByLabel("Policy (JSON)").fill('{"min": 1, "max": 3, "metrics": [{"type": "concurrency", "target": 1}], "stable_window_secs": 6}');
    await page.click("#save-policy");
    await page.getByText(/Policy saved/).waitFor();
    // Under the test's load (3 clients, target 1 in flight each) the autoscaler scales up;
    // "why did it scale?" lists the decision with its reason, live.
    await page.waitForSelector("#decisions li", { timeout: 30_000 });
    assert.match(await page.locator("#decisions li").first().innerText(), /v\d+: \d+ → \d+/);
    await shot("autoscaling");
  });

  it("shows registries and the filtered event log", STEP, async () => {
    await page.goto(`${api}/registries`);
    await page.getByRole("heading", { name: /builtin/ }).waitFor();
    await shot("registries");
    await page.goto(`${api}/events`);
    await page.getByLabel("Type").fill("ReleaseSucceeded");
    await page.getByRole("button", { name: "Filter" }).click();
    await page.waitForURL(/type=ReleaseSucceeded/);
    const kinds = await page.locator("#events tbody code").allInnerTexts();
    assert.ok(kinds.length >= 2, "releases succeeded");
    assert.ok(kinds.every((k) => k === "ReleaseSucceeded"));
    await page.goto(`${api}/events?app=${APP}&namespace=default`);
    await shot("events");
  });

  it("renders the overview live, at 1280×800 and on a 390×844 phone", STEP, async () => {
    await page.goto(api + "/");
    await page.waitForSelector(`tr[data-app="${APP}"]`);
    await page.waitForFunction(
      () => Number(document.querySelector("tr[data-app] [data-rps]")?.textContent) > 0,
      null,
      { timeout: 15_000 },
    );
    await page.waitForSelector("#live-status.on");
    await shot("overview");
    const phone = await browser.newContext({
      viewport: { width: 390, height: 844 },
      deviceScaleFactor: 2,
      isMobile: true,
      storageState: await context.storageState(),
    });
    const p = await phone.newPage();
    await p.goto(api + "/");
    await p.waitForSelector(`tr[data-app="${APP}"]`);
    const width = await p.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 391, `no horizontal scrolling on a phone (${width}px)`);
    await shot("overview-phone", p);
    await p.goto(`${api}/apps/default/${APP}`);
    await p.waitForSelector("#chart-rps");
    await shot("app-phone", p);
    await phone.close();
  });

  it("shows a viewer nothing it may not do", STEP, async () => {
    const created = await apiCall("POST", "/tokens", { name: "viewer", role: "viewer" });
    assert.equal(created.status, 201);
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
    const p = await login(ctx, created.body.token);
    await p.waitForSelector(`tr[data-app="${APP}"]`);
    assert.equal(await p.locator("#create-app").count(), 0);
    await p.goto(`${api}/apps/default/${APP}`);
    assert.equal(await p.getByRole("link", { name: "Deploy" }).count(), 0);
    assert.equal(await p.getByRole("button", { name: "Roll back" }).count(), 0);
    await p.goto(`${api}/apps/default/${APP}/autoscaling`);
    assert.equal(await p.locator("#save-policy").count(), 0);
    assert.equal(await p.getAttribute("#policy", "readonly"), "");
    await ctx.close();
  });
});
