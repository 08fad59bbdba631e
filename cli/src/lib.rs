//! The `tideway` command-line client: every subcommand except `server` (which the control
//! plane binary adds) lives here, and each one is a thin wrapper over the public REST API
//! (`/api/v1`) plus the local login file.
//!
//! This crate only speaks HTTP. It must never open the store or depend on the control plane
//! or any other internal crate; its sole Tideway dependency is `tideway-api-types`, the wire
//! contract. Anything the CLI needs that the API cannot do is a missing API endpoint, not a
//! reason to reach around it.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use clap::{Args, Subcommand};
use comfy_table::Table;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tideway_api_types::{name, App, AppCreate, Event, Instance, Page, Scale, Version};
use tokio::io::{AsyncBufReadExt, BufReader};

pub mod client;
mod config;
mod deploy;
mod logs;
#[cfg(test)]
mod mock_tests;
mod output;
mod pack;
mod release;
mod strategy;

use client::ApiClient;
use logs::Since;
pub use output::Format;
use release::{ReleaseArgs, RollbackArgs};
use strategy::StrategyArgs;

/// The client subcommands of `tideway`.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check a token against a server and save both for later commands.
    Login(LoginArgs),
    /// List, create, show and delete apps.
    Apps(AppsArgs),
    /// Show one page of the event log, oldest first.
    Events(EventsArgs),
    /// List the versions of an app.
    Versions(AppArgs),
    /// List the instances of an app.
    Instances(AppArgs),
    /// Set the desired instance count of an app.
    Scale(ScaleArgs),
    /// Pack a directory, upload it as a new version and release it.
    Deploy(Box<DeployArgs>),
    /// Start, follow and steer releases: canary, gray, batch and blue-green.
    Release(ReleaseArgs),
    /// Go back to an earlier version at once, replacing any active release.
    Rollback(RollbackArgs),
    /// Show (and follow) the output of an app's instances.
    Logs(LogsArgs),
}

/// Options every API command takes.
#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Namespace to work in.
    #[arg(
        short,
        long,
        global = true,
        env = "TIDEWAY_NAMESPACE",
        default_value = "default",
        value_parser = dns_label
    )]
    namespace: String,
    /// How to print the result.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
}

#[derive(Args, Debug)]
pub struct LoginArgs {
    /// Server root URL.
    #[arg(long, env = config::URL_VAR, default_value = config::DEFAULT_URL)]
    url: String,
    /// API token; read from the first line of stdin when absent, which keeps it out of
    /// shell history.
    #[arg(long)]
    token: Option<String>,
}

#[derive(Args, Debug)]
pub struct AppsArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: AppsCommand,
}

#[derive(Subcommand, Debug)]
pub enum AppsCommand {
    /// List the apps of the namespace.
    List,
    /// Create an app.
    Create {
        #[arg(value_parser = dns_label)]
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Desired instances; the server defaults to 1.
        #[arg(long)]
        replicas: Option<u32>,
    },
    /// Show one app.
    Show {
        #[arg(value_parser = dns_label)]
        name: String,
    },
    /// Delete an app and everything under it.
    Delete {
        #[arg(value_parser = dns_label)]
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    #[command(flatten)]
    common: Common,
    /// Only events of this app.
    #[arg(long, value_parser = dns_label)]
    app: Option<String>,
    /// Only events of this type, e.g. `AppCreated`.
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<String>,
    /// Only events with a larger id: pass the id printed at the end of the previous page.
    #[arg(long, value_name = "ID")]
    after: Option<i64>,
    /// Page size.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    limit: u32,
    /// Events of every namespace (and none) instead of just --namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
}

#[derive(Args, Debug)]
pub struct AppArgs {
    #[command(flatten)]
    common: Common,
    #[arg(value_parser = dns_label)]
    app: String,
}

#[derive(Args, Debug)]
pub struct ScaleArgs {
    #[command(flatten)]
    common: Common,
    #[arg(value_parser = dns_label)]
    app: String,
    replicas: u32,
}

#[derive(Args, Debug)]
pub struct DeployArgs {
    #[command(flatten)]
    common: Common,
    /// The app's directory, with `tideway.toml` at its root. Files matched by `.gitignore`
    /// or `.tidewayignore` files inside it are left out, and so is `.git`.
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// App to deploy to; created when it does not exist.
    #[arg(long, value_parser = dns_label)]
    app: String,
    /// Desired instances: for a new app, or scaled to when the app exists.
    #[arg(long)]
    replicas: Option<u32>,
    /// Wait until the release succeeds, fails or pauses for a promote, showing instances
    /// becoming ready.
    #[arg(long)]
    wait: bool,
    /// Seconds to wait for the build and, with --wait, for the release.
    #[arg(long, value_name = "SECS", default_value_t = 300)]
    timeout: u64,
    #[command(flatten)]
    strategy: StrategyArgs,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    #[command(flatten)]
    common: Common,
    #[arg(value_parser = dns_label)]
    app: String,
    /// Keep printing new lines until the server closes the stream or Ctrl-C.
    #[arg(short, long)]
    follow: bool,
    /// Only lines of this instance.
    #[arg(long, value_name = "ID")]
    instance: Option<String>,
    /// Only lines since this long ago (`30s`, `5m`, `1h30m`, `2d`) or this RFC 3339 time.
    #[arg(long, value_name = "DURATION|TIME", value_parser = logs::parse_since)]
    since: Option<Since>,
    /// Start with the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<u32>,
}

/// Rejects names the server would refuse anyway, before any request, using the same rule;
/// this also keeps an empty `TIDEWAY_NAMESPACE` from turning into a malformed path.
fn dns_label(s: &str) -> Result<String, String> {
    match name::dns_label_error(s) {
        None => Ok(s.to_owned()),
        Some(why) => Err(format!("not a valid name: {why}")),
    }
}

/// Runs one client subcommand against the configured server.
pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Login(args) => login(args).await,
        Command::Apps(args) => apps(args).await,
        Command::Events(args) => events(args).await,
        Command::Versions(args) => {
            let client = connect()?;
            let ns = &args.common.namespace;
            let path = ["namespaces", ns, "apps", &args.app, "versions"];
            list(&client, &path, args.common.output, |v: &[Version]| {
                output::versions(v, Utc::now())
            })
            .await
        }
        Command::Instances(args) => {
            let client = connect()?;
            let ns = &args.common.namespace;
            let path = ["namespaces", ns, "apps", &args.app, "instances"];
            list(&client, &path, args.common.output, |i: &[Instance]| {
                output::instances(i)
            })
            .await
        }
        Command::Scale(args) => {
            let client = connect()?;
            let ns = &args.common.namespace;
            let path = ["namespaces", ns, "apps", &args.app, "scale"];
            let body = Scale {
                replicas: args.replicas,
            };
            let raw = client.put(&path, &body).await?;
            show(args.common.output, raw, |s: Scale| {
                format!("Scaled {ns}/{} to {} replicas", args.app, s.replicas)
            })
        }
        Command::Deploy(args) => {
            // Flag mistakes are reported before anything is packed or uploaded.
            let strategy = args.strategy.build()?;
            let client = connect()?;
            let deploy = deploy::Deploy {
                namespace: args.common.namespace,
                app: args.app,
                dir: args.dir,
                replicas: args.replicas,
                wait: args.wait,
                timeout: Duration::from_secs(args.timeout),
                format: args.common.output,
                strategy,
                strategy_from_flags: args.strategy.uses_flags(),
            };
            deploy::run(&client, deploy).await
        }
        Command::Release(args) => {
            let client = connect()?;
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let mut io = release::Io {
                out: &mut out,
                err: &mut err,
                poll: release::POLL,
            };
            release::run(&client, args, &mut io).await
        }
        Command::Rollback(args) => {
            let client = connect()?;
            let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
            let mut io = release::Io {
                out: &mut out,
                err: &mut err,
                poll: release::POLL,
            };
            release::rollback(&client, args, &mut io).await
        }
        Command::Logs(args) => {
            let client = connect()?;
            let ns = &args.common.namespace;
            let path = ["namespaces", ns, "apps", &args.app, "logs"];
            let query = logs::query(
                args.follow,
                args.instance.as_deref(),
                args.since,
                args.tail,
                Utc::now(),
            );
            let mut stdout = std::io::stdout();
            logs::stream(&client, &path, &query, args.common.output, &mut stdout).await
        }
    }
}

async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let token = match args.token {
        Some(token) => token,
        None => read_token().await?,
    };
    let token = token.trim();
    if token.is_empty() {
        anyhow::bail!("no token given: pass --token or write it on stdin");
    }
    let client = ApiClient::new(&args.url, token)?;
    // Listing namespaces needs a valid token but no particular role, so it checks the URL
    // and the token without assuming what the token may do.
    client.get::<Value>(&["namespaces"], &[]).await?;

    let path = config::config_path(&config::process_env)
        .context("cannot find a config directory: set HOME or XDG_CONFIG_HOME")?;
    let saved = config::Saved {
        url: args.url,
        token: token.to_owned(),
    };
    config::save(&path, &saved)?;
    println!("Logged in to {}", saved.url);
    Ok(())
}

async fn read_token() -> anyhow::Result<String> {
    // Only prompt people; a piped token should produce no noise.
    if std::io::stdin().is_terminal() {
        eprint!("Token: ");
    }
    let mut line = String::new();
    BufReader::new(tokio::io::stdin())
        .read_line(&mut line)
        .await
        .context("reading the token from stdin")?;
    Ok(line)
}

async fn apps(args: AppsArgs) -> anyhow::Result<()> {
    let client = connect()?;
    let Common {
        namespace: ns,
        output,
    } = &args.common;
    let output = *output;
    match args.command {
        AppsCommand::List => {
            let path = ["namespaces", ns, "apps"];
            list(&client, &path, output, |a: &[App]| {
                output::apps(a, Utc::now())
            })
            .await
        }
        AppsCommand::Create {
            name,
            description,
            replicas,
        } => {
            let body = AppCreate {
                name,
                description: description.unwrap_or_default(),
                labels: Default::default(),
                replicas,
                domains: Vec::new(),
                path_prefixes: Vec::new(),
                registries: Vec::new(),
            };
            let raw = client.post(&["namespaces", ns, "apps"], &body).await?;
            show(output, raw, |a: App| {
                format!(
                    "Created app {}/{} ({} replicas)",
                    a.namespace, a.name, a.replicas
                )
            })
        }
        AppsCommand::Show { name } => {
            let raw = client.get(&["namespaces", ns, "apps", &name], &[]).await?;
            show(output, raw, |a: App| output::app_details(&a, Utc::now()))
        }
        AppsCommand::Delete { name } => {
            client.delete(&["namespaces", ns, "apps", &name]).await?;
            // A 204 has no body, so `-o json` has nothing to print.
            if output == Format::Table {
                println!("Deleted app {ns}/{name}");
            }
            Ok(())
        }
    }
}

async fn events(args: EventsArgs) -> anyhow::Result<()> {
    let client = connect()?;
    let mut query = vec![("limit", args.limit.to_string())];
    if !args.all_namespaces {
        query.push(("namespace", args.common.namespace));
    }
    query.extend(args.app.map(|a| ("app", a)));
    query.extend(args.kind.map(|t| ("type", t)));
    query.extend(args.after.map(|id| ("after", id.to_string())));
    let raw: Value = client.get(&["events"], &query).await?;
    match args.common.output {
        Format::Json => output::print_json(&raw),
        Format::Table => {
            let page: Page<Event> = typed(raw)?;
            println!("{}", output::events(&page.items));
            // On stderr so the table stays clean when piped.
            if let Some(next) = page.next_cursor {
                eprintln!("More events: rerun with --after {next}");
            }
            Ok(())
        }
    }
}

/// The client for the server and token resolved from the environment and saved login.
fn connect() -> anyhow::Result<ApiClient> {
    let target = config::resolve(&config::process_env)?;
    ApiClient::new(&target.url, &target.token)
}

/// Prints every item of a paginated list. `-o json` gets one `{"items": [...]}` page of the
/// raw items, the same shape as a single API page, so scripts need not care how many pages
/// the server used.
async fn list<T: DeserializeOwned>(
    client: &ApiClient,
    path: &[&str],
    format: Format,
    render: impl FnOnce(&[T]) -> Table,
) -> anyhow::Result<()> {
    let items: Vec<Value> = client.get_all(path).await?;
    match format {
        Format::Json => output::print_json(&json!({ "items": items })),
        Format::Table => {
            let items: Vec<T> = typed(Value::Array(items))?;
            println!("{}", render(&items));
            Ok(())
        }
    }
}

/// Prints a single response: raw for `-o json`, rendered from its typed form otherwise.
fn show<T: DeserializeOwned>(
    format: Format,
    raw: Value,
    render: impl FnOnce(T) -> String,
) -> anyhow::Result<()> {
    match format {
        Format::Json => output::print_json(&raw),
        Format::Table => {
            println!("{}", render(typed(raw)?));
            Ok(())
        }
    }
}

/// Responses are fetched untyped so `-o json` shows exactly what the server sent; tables
/// need the typed shape.
pub(crate) fn typed<T: DeserializeOwned>(raw: Value) -> anyhow::Result<T> {
    serde_json::from_value(raw)
        .context("the server's response does not match the API types this CLI was built with")
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    /// Mirrors how the `tideway` binary mounts these commands.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    fn parse(args: &[&str]) -> Command {
        Cli::try_parse_from(std::iter::once("tideway").chain(args.iter().copied()))
            .unwrap()
            .command
    }

    #[test]
    fn cli_definition_is_valid() {
        Cli::command().debug_assert();
    }

    #[test]
    fn common_options_work_before_and_after_apps_subcommands() {
        for args in [
            &["apps", "-n", "prod", "-o", "json", "list"][..],
            &["apps", "list", "-n", "prod", "-o", "json"][..],
        ] {
            let Command::Apps(apps) = parse(args) else {
                panic!("not apps: {args:?}")
            };
            assert_eq!(apps.common.namespace, "prod", "{args:?}");
            assert_eq!(apps.common.output, Format::Json, "{args:?}");
        }
    }

    #[test]
    fn events_flags() {
        let Command::Events(e) = parse(&["events", "-A", "--type", "AppCreated", "--after", "7"])
        else {
            panic!("not events")
        };
        assert!(e.all_namespaces);
        assert_eq!(e.kind.as_deref(), Some("AppCreated"));
        assert_eq!(e.after, Some(7));
        assert_eq!(e.limit, 50);
        assert_eq!(e.common.output, Format::Table);
    }

    #[test]
    fn names_are_checked_before_any_request() {
        let err = Cli::try_parse_from(["tideway", "apps", "create", "Web_1"]).unwrap_err();
        assert!(err.to_string().contains("not a valid name"), "{err}");
        assert!(Cli::try_parse_from(["tideway", "versions", "web", "-n", ""]).is_err());
    }

    #[test]
    fn deploy_flags_and_defaults() {
        let Command::Deploy(d) = parse(&["deploy", "--app", "web"]) else {
            panic!("not deploy")
        };
        assert_eq!(d.dir, PathBuf::from("."));
        assert_eq!(
            (d.app.as_str(), d.replicas, d.wait, d.timeout),
            ("web", None, false, 300)
        );

        let Command::Deploy(d) = parse(&[
            "deploy",
            "./svc",
            "--app",
            "api",
            "--replicas",
            "3",
            "--wait",
            "--timeout",
            "60",
            "-n",
            "prod",
            "-o",
            "json",
        ]) else {
            panic!("not deploy")
        };
        assert_eq!(d.dir, PathBuf::from("./svc"));
        assert_eq!((d.replicas, d.wait, d.timeout), (Some(3), true, 60));
        assert_eq!(d.common.namespace, "prod");
        assert_eq!(d.common.output, Format::Json);

        assert!(Cli::try_parse_from(["tideway", "deploy"]).is_err());
        assert!(Cli::try_parse_from(["tideway", "deploy", "--app", "Bad_Name"]).is_err());
    }

    #[test]
    fn logs_flags() {
        let Command::Logs(l) = parse(&[
            "logs",
            "web",
            "-f",
            "--instance",
            "web-1",
            "--since",
            "5m",
            "--tail",
            "20",
        ]) else {
            panic!("not logs")
        };
        assert!(l.follow);
        assert_eq!(l.instance.as_deref(), Some("web-1"));
        assert_eq!(l.since, Some(Since::Ago(chrono::Duration::minutes(5))));
        assert_eq!(l.tail, Some(20));

        let Command::Logs(l) = parse(&["logs", "web"]) else {
            panic!("not logs")
        };
        assert!(!l.follow && l.since.is_none() && l.tail.is_none());

        let err = Cli::try_parse_from(["tideway", "logs", "web", "--since", "5 minutes"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("duration"), "{err}");
    }

    #[test]
    fn scale_takes_app_and_count() {
        let Command::Scale(s) = parse(&["scale", "web", "3"]) else {
            panic!("not scale")
        };
        assert_eq!((s.app.as_str(), s.replicas), ("web", 3));
    }

    #[test]
    fn release_commands_parse() {
        let Command::Release(r) = parse(&[
            "release",
            "start",
            "web",
            "--version",
            "3",
            "--strategy",
            "canary",
            "--steps",
            "20,50",
            "--wait",
            "--until-done",
            "--timeout",
            "10m",
            "-n",
            "prod",
        ]) else {
            panic!("not release")
        };
        assert_eq!(r.common.namespace, "prod");
        let release::ReleaseCommand::Start(start) = &r.command else {
            panic!("not start: {r:?}")
        };
        let text = format!("{start:?}");
        for part in [
            "version: 3",
            "wait: true",
            "until_done: true",
            "timeout: Some(600)",
        ] {
            assert!(text.contains(part), "{part}: {text}");
        }

        for args in [
            &["release", "status", "web", "7", "--watch"][..],
            &["release", "list", "web"][..],
            &["release", "promote", "web", "--full"][..],
            &["release", "pause", "web", "7"][..],
            &["release", "resume", "web"][..],
            &["release", "abort", "web", "-o", "json"][..],
            &["rollback", "web"][..],
            &["rollback", "web", "2", "--wait", "--timeout", "30s"][..],
        ] {
            Cli::try_parse_from(std::iter::once("tideway").chain(args.iter().copied()))
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        }

        for (args, why) in [
            (&["release", "start", "web"][..], "--version <N>"),
            (
                &[
                    "release",
                    "start",
                    "web",
                    "--version",
                    "3",
                    "--dry-run",
                    "--wait",
                ][..],
                "cannot be used with",
            ),
            (&["release", "status", "web", "--until-done"][..], "--watch"),
            (&["release", "status", "web", "0"][..], "0 is not in 1.."),
            (
                &[
                    "release",
                    "start",
                    "web",
                    "--version",
                    "3",
                    "--timeout",
                    "1m",
                ][..],
                "--wait",
            ),
            (&["rollback", "Web"][..], "not a valid name"),
        ] {
            let err = Cli::try_parse_from(std::iter::once("tideway").chain(args.iter().copied()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{args:?}: {err}");
        }
    }

    #[test]
    fn deploy_shares_the_strategy_flags() {
        let Command::Deploy(d) = parse(&[
            "deploy",
            "--app",
            "web",
            "--strategy",
            "batch",
            "--batches",
            "3",
            "--wait",
        ]) else {
            panic!("not deploy")
        };
        assert_eq!(
            d.strategy.build().unwrap(),
            Some(json!({"type": "batch", "batches": 3}))
        );
        let Command::Deploy(d) = parse(&["deploy", "--app", "web", "--steps", "20"]) else {
            panic!("not deploy")
        };
        let err = d.strategy.build().unwrap_err().to_string();
        assert_eq!(err, "--steps needs --strategy canary");
    }
}
