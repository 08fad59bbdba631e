// The VS Code side: commands, pickers, progress notifications and output channels. All the
// work is done by the plain modules next to this one; this file only wires them to the UI.

import * as path from "node:path";

import * as vscode from "vscode";

import { TidewayClient } from "./client";
import { deploy, type DeployStep } from "./deploy";
import {
  ApiError,
  CancelledError,
  ConfigError,
  describe,
  NoTokenError,
  ReleaseEndedError,
  type Action,
} from "./errors";
import { describeUpdate, followRelease, type ReleaseUpdate } from "./follow";
import { ago, deployStepText, formatLogLine, loadSnapshot, renderSnapshot, toDnsLabel } from "./format";
import { tailLogs } from "./logs";
import { MANIFEST_FILE } from "./pack";
import { describeStrategy, parseCount, parseSeconds, parseWeights, sameStrategy } from "./strategy";
import { isActive, type Release, type Strategy } from "./types";

const TOKEN_KEY = "tideway.token";
const TARGETS_KEY = "tideway.targets";
const LAST_APP_KEY = "tideway.lastApp";
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

/** Where a workspace folder was last deployed, and how. */
interface Target {
  namespace: string;
  app: string;
  strategy: Strategy;
}

interface AppRef {
  namespace: string;
  app: string;
}

const ACTION_LABELS: Record<Action, string> = {
  setToken: "Set Token",
  openSettings: "Open Settings",
  showBuildLog: "Show Build Log",
  tailLogs: "Tail Logs",
  rollback: "Rollback",
  showApp: "Show App",
  manageRelease: "Manage Release",
};

export function activate(context: vscode.ExtensionContext): void {
  const ext = new TidewayExtension(context);
  const commands: Array<[string, (...args: unknown[]) => Promise<unknown>]> = [
    // From the explorer's context menu, with the tideway.toml clicked on.
    ["tideway.deploy", (uri) => ext.deployWorkspace(isFileUri(uri) ? path.dirname(uri.fsPath) : undefined)],
    ["tideway.tailLogs", () => ext.tailLogs()],
    ["tideway.stopLogs", async () => ext.stopLogs()],
    ["tideway.showApp", () => ext.showApp()],
    ["tideway.rollback", () => ext.rollback()],
    ["tideway.manageRelease", () => ext.manageRelease()],
    ["tideway.setToken", () => ext.setToken()],
    ["tideway.clearToken", () => ext.clearToken()],
  ];
  for (const [id, run] of commands) {
    context.subscriptions.push(
      vscode.commands.registerCommand(id, (...args: unknown[]) => ext.guard(() => run(...args))),
    );
  }
  context.subscriptions.push(ext);
}

function isFileUri(v: unknown): v is { fsPath: string } {
  return typeof v === "object" && v !== null && (v as { scheme?: unknown }).scheme === "file" && typeof (v as { fsPath?: unknown }).fsPath === "string";
}

export function deactivate(): void {
  // Subscriptions dispose everything.
}

class TidewayExtension implements vscode.Disposable {
  private readonly output = vscode.window.createOutputChannel("Tideway");
  private readonly appOutput = vscode.window.createOutputChannel("Tideway App");
  private readonly logOutput = vscode.window.createOutputChannel("Tideway Logs");
  private readonly logStatus = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Left, 10);
  private logTail?: AbortController;
  /** Releases a pause prompt is showing for (id:step), so one pause asks once. */
  private readonly prompted = new Set<string>();

  constructor(private readonly context: vscode.ExtensionContext) {
    this.logStatus.command = "tideway.stopLogs";
    this.logStatus.tooltip = "Stop tailing logs";
  }

  dispose(): void {
    this.stopLogs();
    this.output.dispose();
    this.appOutput.dispose();
    this.logOutput.dispose();
    this.logStatus.dispose();
  }

  /** Runs a command, turning any failure into a message with its buttons. */
  async guard(run: () => PromiseLike<unknown>, ref?: AppRef): Promise<void> {
    try {
      await run();
    } catch (e) {
      await this.report(e, ref);
    }
  }

  private async report(err: unknown, ref?: AppRef): Promise<void> {
    if (err instanceof CancelledError) return;
    const d = describe(err);
    this.log(`error: ${d.message}`);
    if (d.detail) this.output.appendLine(d.detail);
    const actions = d.actions.filter((a) => ref || !["tailLogs", "rollback", "showApp", "manageRelease"].includes(a));
    const show = d.severity === "error" ? vscode.window.showErrorMessage : vscode.window.showWarningMessage;
    const picked = await show(d.message, ...actions.map((a) => ACTION_LABELS[a]));
    const action = actions.find((a) => ACTION_LABELS[a] === picked);
    if (action) await this.runAction(action, ref);
  }

  private async runAction(action: Action, ref?: AppRef): Promise<void> {
    switch (action) {
      case "setToken":
        return this.guard(() => this.setToken());
      case "openSettings":
        await vscode.commands.executeCommand("workbench.action.openSettings", "tideway.serverUrl");
        return;
      case "showBuildLog":
        this.output.show(true);
        return;
      case "tailLogs":
        return this.guard(() => this.tailLogs(ref), ref);
      case "rollback":
        return this.guard(() => this.rollback(ref), ref);
      case "showApp":
        return this.guard(() => this.showApp(ref), ref);
      case "manageRelease":
        return this.guard(() => this.manageRelease(ref), ref);
    }
  }

  private log(line: string): void {
    const now = new Date();
    const stamp = [now.getHours(), now.getMinutes(), now.getSeconds()]
      .map((n) => String(n).padStart(2, "0"))
      .join(":");
    this.output.appendLine(`[${stamp}] ${line}`);
  }

  // --- connection ------------------------------------------------------------------------

  private config() {
    return vscode.workspace.getConfiguration("tideway");
  }

  private serverUrl(): string {
    return this.config().get<string>("serverUrl", "http://127.0.0.1:7070");
  }

  /** A client for the configured server; asks for a token when none is stored. */
  private async client(): Promise<TidewayClient> {
    const url = this.serverUrl();
    let token = await this.context.secrets.get(TOKEN_KEY);
    if (!token) {
      const choice = await vscode.window.showWarningMessage(
        `No Tideway token is set for ${url}.`,
        ACTION_LABELS.setToken,
      );
      if (choice !== ACTION_LABELS.setToken || !(await this.setToken())) throw new NoTokenError();
      token = await this.context.secrets.get(TOKEN_KEY);
      if (!token) throw new NoTokenError();
    }
    return new TidewayClient(url, token, { userAgent: `tideway-vscode/${this.version()}` });
  }

  private version(): string {
    return String(this.context.extension.packageJSON.version ?? "0");
  }

  /** Asks for a token, checks it against the server and stores it. Returns whether one was
   * stored. */
  async setToken(): Promise<boolean> {
    const url = this.serverUrl();
    const token = (
      await vscode.window.showInputBox({
        title: "Tideway: Set Token",
        prompt: `API token for ${url} (printed by \`tideway server\` or made with \`tideway token create\`). Kept in VS Code's secret storage.`,
        placeHolder: "tw_…",
        password: true,
        ignoreFocusOut: true,
        validateInput: (v) => (v.trim() ? undefined : "The token cannot be empty"),
      })
    )?.trim();
    if (!token) return false;
    const client = new TidewayClient(url, token);
    try {
      const namespaces = await client.listNamespaces();
      await this.context.secrets.store(TOKEN_KEY, token);
      void vscode.window.showInformationMessage(
        `Tideway: token saved; ${url} answers (${namespaces.length} namespace${namespaces.length === 1 ? "" : "s"} visible).`,
      );
      return true;
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        await this.report(e);
        return false;
      }
      // Unreachable or otherwise unverifiable: keep it, say so.
      await this.context.secrets.store(TOKEN_KEY, token);
      void vscode.window.showWarningMessage(
        `Tideway: token saved, but it could not be checked: ${describe(e).message}`,
      );
      return true;
    }
  }

  async clearToken(): Promise<void> {
    await this.context.secrets.delete(TOKEN_KEY);
    void vscode.window.showInformationMessage("Tideway: token removed.");
  }

  // --- deploy ----------------------------------------------------------------------------

  async deployWorkspace(given?: string): Promise<void> {
    const dir = given ?? (await this.pickAppDir());
    if (!dir) return;
    const client = await this.client();
    const target = await this.pickDeployTarget(client, dir);
    if (!target) return;
    const ref = { namespace: target.namespace, app: target.app };
    await this.rememberTarget(dir, target);
    await this.context.workspaceState.update(LAST_APP_KEY, ref);
    this.log(`deploying ${dir} to ${target.namespace}/${target.app} (${describeStrategy(target.strategy)}) on ${client.serverUrl}`);

    await this.guard(
      () =>
        vscode.window.withProgress(
          {
            location: vscode.ProgressLocation.Notification,
            title: `Tideway: ${target.namespace}/${target.app}`,
            cancellable: true,
          },
          async (progress, cancel) => {
            const abort = new AbortController();
            cancel.onCancellationRequested(() => abort.abort());
            let uploaded = 0;
            const onStep = (step: DeployStep) => {
              const text = deployStepText(step);
              if (step.kind === "uploading") {
                const pct = step.total ? (step.sent / step.total) * 50 : 0;
                progress.report({ message: text, increment: pct - uploaded });
                uploaded = pct;
                return;
              }
              progress.report({ message: text });
              if (step.kind !== "building") this.log(text);
              for (const w of step.kind === "packed" ? step.summary.warnings : []) this.log(`warning: ${w}`);
            };
            let release: Release;
            try {
              ({ release } = await deploy(client, {
                dir,
                namespace: target.namespace,
                app: target.app,
                strategy: target.strategy,
                signal: abort.signal,
                onStep,
                onReleaseInProgress: async (e) => {
                  const picked = await vscode.window.showWarningMessage(
                    `${target.namespace}/${target.app} already has a release in progress (${e.message}). Take over from it? It will be marked superseded.`,
                    { modal: true },
                    "Supersede",
                  );
                  return picked === "Supersede";
                },
              }));
            } catch (e) {
              if (e instanceof CancelledError) {
                this.log("deploy cancelled");
                void vscode.window.showInformationMessage(
                  "Tideway: deploy stopped. A version already uploaded stays on the server (and finishes building) without a release.",
                );
                return;
              }
              throw e;
            }
            await this.follow(client, ref, release, progress, abort.signal, uploaded);
          },
        ),
      ref,
    );
  }

  /**
   * Follows a release in a progress notification: each change is shown and logged; a pause
   * offers Promote / Abort / Rollback; the end is reported with its reason.
   */
  private async follow(
    client: TidewayClient,
    ref: AppRef,
    start: Release,
    progress: vscode.Progress<{ message?: string; increment?: number }>,
    signal: AbortSignal,
    shown = 0,
  ): Promise<void> {
    const interval = this.config().get<number>("pollIntervalMs", 1000);
    let last: ReleaseUpdate | undefined;
    try {
      for await (const update of followRelease(client, ref.namespace, ref.app, start, {
        intervalMs: interval,
        signal,
      })) {
        last = update;
        const text = describeUpdate(update);
        this.log(text);
        const r = update.release;
        const weight = r.state === "succeeded" ? 100 : r.progress?.weight ?? 0;
        const pct = 50 + weight / 2;
        progress.report({ message: text, increment: Math.max(0, pct - shown) });
        shown = Math.max(shown, pct);
        if (r.state === "paused") this.offerPauseActions(client, ref, r);
      }
    } catch (e) {
      if (e instanceof CancelledError && last) {
        const r = last.release;
        this.log(`stopped following release ${r.id}`);
        void vscode.window.showInformationMessage(
          `Tideway: stopped following release ${r.id} of ${ref.namespace}/${ref.app}; it goes on on the server.`,
        );
        return;
      }
      throw e;
    }
    const r = last?.release;
    if (!r) return;
    if (r.state !== "succeeded") throw new ReleaseEndedError(r);
    void vscode.window
      .showInformationMessage(
        `Tideway: ${ref.namespace}/${ref.app} now runs v${r.target_version} (release ${r.id} succeeded).`,
        ACTION_LABELS.showApp,
        ACTION_LABELS.tailLogs,
      )
      .then((picked) => {
        if (picked === ACTION_LABELS.showApp) return this.runAction("showApp", ref);
        if (picked === ACTION_LABELS.tailLogs) return this.runAction("tailLogs", ref);
        return undefined;
      });
  }

  /** Once per paused step: Promote (one step or fully), Resume, Abort or Rollback. Not
   * awaited: following goes on, and picks up whatever the action changes. */
  private offerPauseActions(client: TidewayClient, ref: AppRef, r: Release): void {
    const key = `${client.serverUrl}:${r.id}:${r.progress?.step ?? 0}:${r.progress?.paused_by_user ?? false}`;
    if (this.prompted.has(key)) return;
    this.prompted.add(key);
    const byUser = r.progress?.paused_by_user ?? false;
    const where = `${r.progress?.weight ?? 0}% of traffic on v${r.target_version}`;
    const message = byUser
      ? `Release ${r.id} of ${ref.namespace}/${ref.app} was paused (${where}).`
      : `Release ${r.id} of ${ref.namespace}/${ref.app} waits for promotion (${where})${r.reason ? `: ${r.reason}` : "."}`;
    const choices = byUser ? ["Resume", "Abort", "Rollback"] : ["Promote", "Promote Fully", "Abort", "Rollback"];
    void vscode.window.showWarningMessage(message, ...choices).then((picked) =>
      this.guard(async () => {
        if (!picked) return;
        const current = await client.getRelease(ref.namespace, ref.app, r.id);
        if (!isActive(current.state)) {
          void vscode.window.showInformationMessage(`Tideway: release ${r.id} is already ${current.state}.`);
          return;
        }
        let after: Release;
        switch (picked) {
          case "Promote":
            after = await client.promote(ref.namespace, ref.app, r.id, false);
            break;
          case "Promote Fully":
            after = await client.promote(ref.namespace, ref.app, r.id, true);
            break;
          case "Resume":
            after = await client.resume(ref.namespace, ref.app, r.id);
            break;
          case "Abort":
            after = await client.abort(ref.namespace, ref.app, r.id);
            break;
          default:
            after = await client.rollback(ref.namespace, ref.app);
            this.log(`rollback of ${ref.namespace}/${ref.app} started as release ${after.id}`);
            await this.followInNotification(client, ref, after, `rolling ${ref.namespace}/${ref.app} back to v${after.target_version}`);
            return;
        }
        this.log(`${picked.toLowerCase()}: release ${after.id} is ${after.state}`);
      }, ref),
    );
  }

  private followInNotification(client: TidewayClient, ref: AppRef, release: Release, title: string): Thenable<void> {
    return vscode.window.withProgress(
      {
        location: vscode.ProgressLocation.Notification,
        title: `Tideway: ${title}`,
        cancellable: true,
      },
      async (progress, cancel) => {
        const abort = new AbortController();
        cancel.onCancellationRequested(() => abort.abort());
        await this.follow(client, ref, release, progress, abort.signal);
      },
    );
  }

  /** The directory holding `tideway.toml` to deploy: the one around the active editor's
   * file, else the only one, else the user's pick. */
  private async pickAppDir(): Promise<string | undefined> {
    const folders = vscode.workspace.workspaceFolders ?? [];
    if (folders.length === 0) {
      throw new ConfigError("Open a folder with a tideway.toml to deploy it.");
    }
    const found = await vscode.workspace.findFiles(`**/${MANIFEST_FILE}`, "**/{node_modules,.git}/**", 100);
    const dirs = [...new Set(found.map((u) => path.dirname(u.fsPath)))].sort();
    if (dirs.length === 0) {
      throw new ConfigError(`No ${MANIFEST_FILE} in the workspace: Tideway deploys a folder with a ${MANIFEST_FILE} at its root.`);
    }
    const active = vscode.window.activeTextEditor?.document.uri;
    if (active?.scheme === "file") {
      const around = dirs
        .filter((d) => active.fsPath === d || active.fsPath.startsWith(d + path.sep))
        .sort((a, b) => b.length - a.length)[0];
      if (around) return around;
    }
    if (dirs.length === 1) return dirs[0];
    const picked = await vscode.window.showQuickPick(
      dirs.map((d) => ({ label: vscode.workspace.asRelativePath(d, true), description: d, dir: d })),
      { title: "Tideway: which app folder to deploy?", placeHolder: `Folders with a ${MANIFEST_FILE}` },
    );
    return picked?.dir;
  }

  private targets(): Record<string, Target> {
    return this.context.workspaceState.get<Record<string, Target>>(TARGETS_KEY, {});
  }

  private async rememberTarget(dir: string, target: Target): Promise<void> {
    await this.context.workspaceState.update(TARGETS_KEY, { ...this.targets(), [dir]: target });
  }

  private async pickDeployTarget(client: TidewayClient, dir: string): Promise<Target | undefined> {
    const remembered = this.targets()[dir];
    if (remembered) {
      const again = {
        label: `$(rocket) Deploy to ${remembered.namespace}/${remembered.app}`,
        description: describeStrategy(remembered.strategy),
        detail: dir,
      };
      const change = { label: "$(gear) Choose namespace, app or strategy…" };
      const picked = await vscode.window.showQuickPick([again, change], {
        title: "Tideway: Deploy Workspace",
      });
      if (!picked) return undefined;
      if (picked === again) return remembered;
    }
    const namespace = await this.pickNamespace(client, remembered?.namespace);
    if (!namespace) return undefined;
    const suggested = remembered?.app ?? toDnsLabel(path.basename(dir));
    const app = (
      await vscode.window.showInputBox({
        title: `Tideway: app in ${namespace}`,
        prompt: "The app to deploy to (created if it does not exist)",
        value: suggested,
        ignoreFocusOut: true,
        validateInput: (v) =>
          DNS_LABEL.test(v.trim()) ? undefined : "1–63 of a-z, 0-9 and -, starting and ending with a letter or digit",
      })
    )?.trim();
    if (!app) return undefined;
    const strategy = await this.pickStrategy(remembered?.strategy);
    if (!strategy) return undefined;
    return { namespace, app, strategy };
  }

  private async pickNamespace(client: TidewayClient, preferred?: string): Promise<string | undefined> {
    let names: string[];
    try {
      names = (await client.listNamespaces()).map((n) => n.name);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 403)) throw e;
      names = [];
    }
    if (names.length === 0) {
      return (
        await vscode.window.showInputBox({ title: "Tideway: namespace", value: preferred ?? "default", ignoreFocusOut: true })
      )?.trim();
    }
    if (names.length === 1) return names[0];
    const order = (n: string) => (n === preferred ? 0 : n === "default" ? 1 : 2);
    names.sort((a, b) => order(a) - order(b) || a.localeCompare(b));
    const picked = await vscode.window.showQuickPick(
      names.map((n) => ({ label: n, description: n === preferred ? "last used" : undefined })),
      { title: "Tideway: namespace" },
    );
    return picked?.label;
  }

  private async pickStrategy(last?: Strategy): Promise<Strategy | undefined> {
    type Item = vscode.QuickPickItem & { make: () => Promise<Strategy | undefined> };
    const items: Item[] = [];
    if (last && last.type !== "immediate") {
      items.push({ label: `$(history) ${describeStrategy(last)}`, description: "last used", make: async () => last });
    }
    items.push(
      {
        label: "Immediate",
        description: "everything at once",
        make: async () => ({ type: "immediate" }),
      },
      {
        label: "Canary",
        description: "shift a growing share of traffic, with pauses or promotions between steps",
        make: () => this.canary(last),
      },
      {
        label: "Batch",
        description: "replace instances in batches",
        make: async () => {
          const batches = await this.ask("Number of batches", "3", (v) => parseCount(v, 1, 100));
          if (batches === null) return undefined;
          const interval = await this.ask(
            "Seconds between batches (empty: wait for Promote after each batch)",
            "",
            parseSeconds,
          );
          if (interval === null) return undefined;
          return { type: "batch", batches, ...(interval === undefined ? {} : { interval_secs: interval }) };
        },
      },
      {
        label: "Blue-green",
        description: "bring the new version up beside the old one, then switch at once",
        make: async () => {
          const auto = await this.ask("Promote automatically this many seconds after ready (empty: wait for Promote)", "", parseSeconds);
          if (auto === null) return undefined;
          return { type: "blue_green", ...(auto === undefined ? {} : { auto_promote_secs: auto }) };
        },
      },
    );
    const picked = await vscode.window.showQuickPick(items, {
      title: "Tideway: release strategy",
      placeHolder: last ? `Last used: ${describeStrategy(last)}` : undefined,
    });
    if (!picked) return undefined;
    const made = await picked.make();
    return made && last && sameStrategy(made, last) ? last : made;
  }

  private async canary(last?: Strategy): Promise<Strategy | undefined> {
    const lastCanary = last?.type === "canary" ? last : undefined;
    const weights = await this.ask(
      "Traffic weights of the new version, in percent, in order",
      lastCanary?.weights?.join(", ") ?? "20, 50",
      parseWeights,
    );
    if (weights === undefined || weights === null) return undefined;
    const pause = await this.ask(
      "Pause after each weight, e.g. 30s or 5m (empty: wait for Promote at each step)",
      lastCanary?.pause_secs === undefined ? "" : String(lastCanary.pause_secs),
      parseSeconds,
    );
    if (pause === null) return undefined;
    return { type: "canary", weights, ...(pause === undefined ? {} : { pause_secs: pause }) };
  }

  /** An input box whose value `parse` checks as it is typed; `null` when dismissed. */
  private async ask<T>(prompt: string, value: string, parse: (v: string) => T): Promise<T | null> {
    const text = await vscode.window.showInputBox({
      title: "Tideway: release strategy",
      prompt,
      value,
      ignoreFocusOut: true,
      validateInput: (v) => {
        try {
          parse(v);
          return undefined;
        } catch (e) {
          return (e as Error).message;
        }
      },
    });
    return text === undefined ? null : parse(text);
  }

  // --- apps ------------------------------------------------------------------------------

  /** One pick over the apps of every visible namespace, the last used one first. */
  private async pickApp(client: TidewayClient, title: string, given?: AppRef): Promise<AppRef | undefined> {
    if (given) return given;
    const last = this.context.workspaceState.get<AppRef>(LAST_APP_KEY);
    const namespaces = (await client.listNamespaces()).map((n) => n.name).slice(0, 50);
    const lists = await Promise.all(namespaces.map(async (ns) => ({ ns, apps: await client.listApps(ns) })));
    type Item = vscode.QuickPickItem & { ref?: AppRef };
    const items: Item[] = [];
    for (const { ns, apps } of lists) {
      if (apps.length === 0) continue;
      items.push({ label: ns, kind: vscode.QuickPickItemKind.Separator });
      for (const a of apps) {
        const isLast = last?.namespace === ns && last.app === a.name;
        const item: Item = {
          label: a.name,
          description: `${a.current_version === undefined ? "no version yet" : `v${a.current_version}`} · ${a.replicas} replica${a.replicas === 1 ? "" : "s"}${isLast ? " · last used" : ""}`,
          ref: { namespace: ns, app: a.name },
        };
        if (isLast) items.unshift(item);
        else items.push(item);
      }
    }
    if (!items.some((i) => i.ref)) {
      throw new ConfigError(`No apps on ${client.serverUrl} yet: deploy one with “Tideway: Deploy Workspace”.`);
    }
    const picked = await vscode.window.showQuickPick(items, { title, matchOnDescription: true });
    if (!picked?.ref) return undefined;
    await this.context.workspaceState.update(LAST_APP_KEY, picked.ref);
    return picked.ref;
  }

  async showApp(given?: AppRef): Promise<void> {
    const client = await this.client();
    const ref = await this.pickApp(client, "Tideway: Show App", given);
    if (!ref) return;
    const snapshot = await loadSnapshot(client, ref.namespace, ref.app);
    this.appOutput.clear();
    this.appOutput.appendLine(renderSnapshot(snapshot));
    this.appOutput.appendLine("");
    this.appOutput.appendLine(`(from ${client.serverUrl} at ${new Date().toLocaleTimeString()})`);
    this.appOutput.show(true);
  }

  async tailLogs(given?: AppRef): Promise<void> {
    const client = await this.client();
    const ref = await this.pickApp(client, "Tideway: Tail Logs", given);
    if (!ref) return;
    this.stopLogs();
    const abort = new AbortController();
    this.logTail = abort;
    const tail = this.config().get<number>("logs.tail", 100);
    this.logOutput.appendLine(`──── ${ref.namespace}/${ref.app} on ${client.serverUrl} (last ${tail} lines, then live) ────`);
    this.logOutput.show(true);
    this.logStatus.text = `$(debug-stop) Tideway logs: ${ref.app}`;
    this.logStatus.show();
    void tailLogs(client, ref.namespace, ref.app, {
      tail,
      signal: abort.signal,
      onLine: (line) => this.logOutput.appendLine(formatLogLine(line)),
      onNotice: (m) => this.logOutput.appendLine(`──── ${m} ────`),
    })
      .catch((e) => this.report(e, ref))
      .finally(() => {
        if (this.logTail === abort) {
          this.logTail = undefined;
          this.logStatus.hide();
        }
      });
  }

  stopLogs(): void {
    if (!this.logTail) return;
    this.logTail.abort();
    this.logTail = undefined;
    this.logStatus.hide();
    this.logOutput.appendLine("──── stopped ────");
  }

  async rollback(given?: AppRef): Promise<void> {
    const client = await this.client();
    const ref = await this.pickApp(client, "Tideway: Rollback", given);
    if (!ref) return;
    const [app, versions] = await Promise.all([
      client.getApp(ref.namespace, ref.app),
      client.listVersions(ref.namespace, ref.app, 30),
    ]);
    type Item = vscode.QuickPickItem & { version?: number };
    const now = new Date();
    const items: Item[] = [
      { label: "$(history) The previous version", description: "the one that served before the current one" },
      ...versions
        .filter((v) => v.state === "ready" && v.number !== app.current_version)
        .map((v) => ({ label: `v${v.number}`, description: `built ${ago(v.created_at, now)}`, version: v.number })),
    ];
    const picked = await vscode.window.showQuickPick(items, {
      title: `Tideway: roll ${ref.namespace}/${ref.app} back (now ${app.current_version === undefined ? "no version" : `v${app.current_version}`})`,
    });
    if (!picked) return;
    const to = picked.version === undefined ? "the previous version" : `v${picked.version}`;
    const ok = await vscode.window.showWarningMessage(
      `Roll ${ref.namespace}/${ref.app} back to ${to}?`,
      { modal: true },
      "Rollback",
    );
    if (ok !== "Rollback") return;
    const release = await client.rollback(ref.namespace, ref.app, picked.version);
    this.log(`rollback of ${ref.namespace}/${ref.app} to v${release.target_version} started as release ${release.id}`);
    await this.followInNotification(client, ref, release, `rolling ${ref.namespace}/${ref.app} back to v${release.target_version}`);
  }

  /** The app's active release: follow it, or promote, pause, resume or abort it. */
  async manageRelease(given?: AppRef): Promise<void> {
    const client = await this.client();
    const ref = await this.pickApp(client, "Tideway: Manage Release", given);
    if (!ref) return;
    const release = (await client.listReleases(ref.namespace, ref.app, 10)).find((r) => isActive(r.state));
    if (!release) {
      void vscode.window.showInformationMessage(`Tideway: ${ref.namespace}/${ref.app} has no release in progress.`);
      return;
    }
    const actions: Array<[string, () => Promise<Release>]> = [
      ["Follow", async () => release],
      ["Promote", () => client.promote(ref.namespace, ref.app, release.id, false)],
      ["Promote Fully", () => client.promote(ref.namespace, ref.app, release.id, true)],
      ["Pause", () => client.pause(ref.namespace, ref.app, release.id)],
      ["Resume", () => client.resume(ref.namespace, ref.app, release.id)],
      ["Abort", () => client.abort(ref.namespace, ref.app, release.id)],
    ];
    const picked = await vscode.window.showQuickPick(
      actions.map(([label]) => ({ label })),
      { title: `Tideway: ${describeUpdate({ release })}` },
    );
    const action = actions.find(([label]) => label === picked?.label);
    if (!action) return;
    const after = await action[1]();
    this.log(`${action[0].toLowerCase()}: release ${after.id} is ${after.state}`);
    await this.followInNotification(client, ref, after, `release ${after.id} of ${ref.namespace}/${ref.app}`);
  }
}
