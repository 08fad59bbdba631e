// A stand-in for the `vscode` module, enough to drive the extension's commands from a test:
// every dialog is answered by a handler the test sets, and whatever the extension shows
// (messages, output channels, progress, status bar) is recorded.

import { readdirSync } from "node:fs";
import Module from "node:module";
import { join, relative } from "node:path";

export interface Shown {
  kind: "info" | "warning" | "error";
  text: string;
  items: string[];
  modal: boolean;
}

type QuickPickItem = { label: string; kind?: number; description?: string; detail?: string };

export const ui = {
  quickPick: async (_items: QuickPickItem[], _options: { title?: string }): Promise<QuickPickItem | undefined> => undefined,
  inputBox: async (options: { title?: string; prompt?: string; value?: string }): Promise<string | undefined> =>
    options.value,
  /** Answers a message; by default dismisses it. */
  message: async (_m: Shown): Promise<string | undefined> => undefined,
  messages: [] as Shown[],
  channels: new Map<string, string[]>(),
  progress: [] as Array<{ title: string; messages: string[]; cancel: () => void }>,
  config: new Map<string, unknown>(),
  folders: [] as string[],
  statusBar: { text: "", visible: false },
  executed: [] as unknown[][],
  waiters: [] as Array<{ re: RegExp; resolve: (m: Shown) => void }>,

  /** Resolves with the first message (shown from now on, or already shown after index
   * `since`) whose text matches. */
  waitForMessage(re: RegExp, since = 0, timeoutMs = 60_000): Promise<Shown> {
    const already = ui.messages.slice(since).find((m) => re.test(m.text));
    if (already) return Promise.resolve(already);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no message matching ${re} in ${timeoutMs} ms; saw:\n${ui.messages.map((m) => m.text).join("\n")}`)),
        timeoutMs,
      );
      ui.waiters.push({
        re,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
      });
    });
  },

  channel(name: string): string {
    return (ui.channels.get(name) ?? []).join("\n");
  },
};

function show(kind: Shown["kind"]) {
  return async (text: string, ...rest: unknown[]): Promise<string | undefined> => {
    let modal = false;
    if (rest.length > 0 && typeof rest[0] === "object" && rest[0] !== null) {
      modal = Boolean((rest.shift() as { modal?: boolean }).modal);
    }
    const m: Shown = { kind, text, items: rest as string[], modal };
    ui.messages.push(m);
    for (const w of [...ui.waiters]) {
      if (w.re.test(text)) {
        ui.waiters.splice(ui.waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
    return ui.message(m);
  };
}

const disposable = { dispose: () => undefined };
const commands = new Map<string, (...args: unknown[]) => unknown>();

function manifests(dir: string, out: string[]): void {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === "node_modules" || e.name === ".git") continue;
    if (e.isDirectory()) manifests(join(dir, e.name), out);
    else if (e.name === "tideway.toml") out.push(join(dir, e.name));
  }
}

export const vscode = {
  StatusBarAlignment: { Left: 1, Right: 2 },
  ProgressLocation: { SourceControl: 1, Window: 10, Notification: 15 },
  QuickPickItemKind: { Separator: -1, Default: 0 },
  commands: {
    registerCommand(id: string, run: (...args: unknown[]) => unknown) {
      commands.set(id, run);
      return { dispose: () => commands.delete(id) };
    },
    async executeCommand(id: string, ...args: unknown[]) {
      ui.executed.push([id, ...args]);
      return commands.get(id)?.(...args);
    },
  },
  window: {
    activeTextEditor: undefined,
    createOutputChannel(name: string) {
      const lines: string[] = [];
      ui.channels.set(name, lines);
      return {
        name,
        appendLine: (l: string) => lines.push(...l.split("\n")),
        append: (t: string) => lines.push(t),
        clear: () => lines.splice(0),
        show: () => undefined,
        dispose: () => undefined,
      };
    },
    createStatusBarItem() {
      return {
        set text(t: string) {
          ui.statusBar.text = t;
        },
        get text() {
          return ui.statusBar.text;
        },
        command: "",
        tooltip: "",
        show: () => (ui.statusBar.visible = true),
        hide: () => (ui.statusBar.visible = false),
        dispose: () => undefined,
      };
    },
    showInformationMessage: show("info"),
    showWarningMessage: show("warning"),
    showErrorMessage: show("error"),
    showQuickPick: (items: QuickPickItem[] | Promise<QuickPickItem[]>, options: { title?: string } = {}) =>
      Promise.resolve(items).then((list) => ui.quickPick(list, options)),
    showInputBox: async (options: { title?: string; prompt?: string; value?: string; validateInput?: (v: string) => unknown }) => {
      const v = await ui.inputBox(options);
      if (v !== undefined && options.validateInput) {
        const problem = await options.validateInput(v);
        if (problem) throw new Error(`the input box would refuse ${JSON.stringify(v)}: ${String(problem)}`);
      }
      return v;
    },
    async withProgress<T>(
      options: { title?: string },
      task: (p: { report: (v: { message?: string }) => void }, token: unknown) => Promise<T>,
    ): Promise<T> {
      const listeners: Array<() => void> = [];
      const record = {
        title: options.title ?? "",
        messages: [] as string[],
        cancel: () => listeners.forEach((l) => l()),
      };
      ui.progress.push(record);
      const token = {
        isCancellationRequested: false,
        onCancellationRequested: (l: () => void) => {
          listeners.push(l);
          return disposable;
        },
      };
      return task({ report: (v) => v.message && record.messages.push(v.message) }, token);
    },
  },
  workspace: {
    get workspaceFolders() {
      return ui.folders.map((f, index) => ({ uri: { fsPath: f, scheme: "file" }, name: f, index }));
    },
    getConfiguration() {
      return { get: <T>(key: string, fallback: T): T => (ui.config.has(key) ? (ui.config.get(key) as T) : fallback) };
    },
    async findFiles() {
      const found: string[] = [];
      for (const f of ui.folders) manifests(f, found);
      return found.map((fsPath) => ({ fsPath, scheme: "file" }));
    },
    asRelativePath(p: string) {
      const folder = ui.folders.find((f) => p.startsWith(f));
      return folder ? relative(folder, p) || "." : p;
    },
  },
};

/** The ids of the commands registered so far. */
export function registeredCommands(): string[] {
  return [...commands.keys()];
}

/** Makes `require("vscode")` load this module's `vscode` object. */
export function installFakeVscode(): void {
  const mod = Module as unknown as {
    _resolveFilename: (request: string, ...rest: unknown[]) => string;
  };
  const original = mod._resolveFilename;
  const fakePath = join(__dirname, "fake-vscode-module.js");
  mod._resolveFilename = function (request: string, ...rest: unknown[]) {
    if (request === "vscode") return fakePath;
    return original.call(this, request, ...rest);
  };
  require.cache[fakePath] = {
    id: fakePath,
    filename: fakePath,
    loaded: true,
    exports: vscode,
  } as NodeJS.Module;
}

/** A fake extension context with in-memory secrets and workspace state. */
export function fakeContext(packageJSON: unknown) {
  const secrets = new Map<string, string>();
  const state = new Map<string, unknown>();
  return {
    secrets: {
      get: async (k: string) => secrets.get(k),
      store: async (k: string, v: string) => void secrets.set(k, v),
      delete: async (k: string) => void secrets.delete(k),
    },
    workspaceState: {
      get: <T>(k: string, fallback?: T) => (state.has(k) ? (state.get(k) as T) : fallback),
      update: async (k: string, v: unknown) => void state.set(k, v),
    },
    subscriptions: [] as Array<{ dispose(): unknown }>,
    extension: { packageJSON },
    secretsMap: secrets,
  };
}
