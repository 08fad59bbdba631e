//! `tideway release …` and `tideway rollback`: start a release with a strategy (or show its
//! plan), follow it, and steer the active one with promote, pause, resume and abort.
//!
//! Following is polling: each poll's release is compared with the previous one by
//! [`changes`], a pure function, and [`settled`] decides when to stop.

use std::fmt::Display;
use std::io::Write;
use std::time::Duration;

use anyhow::{anyhow, bail};
use chrono::{DateTime, Local, TimeZone, Utc};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use tideway_api_types::{AnalysisCheck, Page, Release, ReleasePlan, ReleaseState};

use crate::client::{ApiClient, ApiError};
use crate::output::{self, wire_name};
use crate::strategy::{self, StrategyArgs};
use crate::{dns_label, typed, Common, Format};

/// Time between polls while following a release.
pub const POLL: Duration = Duration::from_secs(1);

/// Consecutive failed polls (server errors, lost connections) tolerated while following.
const MAX_POLL_FAILURES: u32 = 10;

/// Releases searched for the active one; only one is active at a time and it is the
/// newest, so the first page is plenty.
const ACTIVE_SEARCH: &str = "20";

#[derive(Args, Debug)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub(crate) common: Common,
    #[command(subcommand)]
    pub(crate) command: ReleaseCommand,
}

#[derive(Subcommand, Debug)]
pub enum ReleaseCommand {
    /// Release a version of an app with a strategy, or show the plan with --dry-run.
    Start(Box<StartArgs>),
    /// Show the latest (or a given) release: state, step, instances, analysis checks.
    Status(StatusArgs),
    /// List the releases of an app, newest first.
    List {
        #[arg(value_parser = dns_label)]
        app: String,
    },
    /// Move the release on to its next step, or with --full to the end.
    Promote(PromoteArgs),
    /// Stop the release where it is; a timed pause keeps its remaining time.
    Pause(ControlArgs),
    /// Continue a release paused with `release pause`.
    Resume(ControlArgs),
    /// Send all traffic back to the stable version and stop the release.
    Abort(ControlArgs),
}

#[derive(Args, Debug)]
pub struct StartArgs {
    #[arg(value_parser = dns_label)]
    app: String,
    /// The version to release.
    #[arg(long = "version", value_name = "N")]
    version: u32,
    /// Show the steps the server would take, and change nothing.
    #[arg(long, conflicts_with = "wait")]
    dry_run: bool,
    /// Replace the app's active release (it ends as superseded) instead of failing.
    #[arg(long)]
    supersede: bool,
    /// Follow the release until it ends or pauses, like `release status --watch`.
    #[arg(long)]
    wait: bool,
    /// With --wait, follow through pauses until the release ends.
    #[arg(long, requires = "wait")]
    until_done: bool,
    /// With --wait, stop following after this long (`10m`, `1h`); the release goes on.
    #[arg(long, value_name = "DURATION", requires = "wait", value_parser = strategy::parse_secs)]
    timeout: Option<u32>,
    // Last: its help heading would otherwise carry over to the flags after it.
    #[command(flatten)]
    strategy: StrategyArgs,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    #[arg(value_parser = dns_label)]
    app: String,
    /// A release id; the latest release by default.
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    id: Option<i64>,
    /// Poll every second and print what changes until the release ends or pauses. Exits
    /// non-zero when it fails, is aborted or is superseded.
    #[arg(short, long)]
    watch: bool,
    /// With --watch, follow through pauses until the release ends.
    #[arg(long, requires = "watch")]
    until_done: bool,
    /// With --watch, stop following after this long (`10m`, `1h`); the release goes on.
    #[arg(long, value_name = "DURATION", requires = "watch", value_parser = strategy::parse_secs)]
    timeout: Option<u32>,
}

#[derive(Args, Debug)]
pub struct ControlArgs {
    #[arg(value_parser = dns_label)]
    app: String,
    /// A release id; the app's active release by default.
    #[arg(value_parser = clap::value_parser!(i64).range(1..))]
    id: Option<i64>,
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    #[command(flatten)]
    target: ControlArgs,
    /// Skip every remaining step and finish now.
    #[arg(long)]
    full: bool,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    #[command(flatten)]
    common: Common,
    #[arg(value_parser = dns_label)]
    app: String,
    /// The version to go back to; the server picks the one that served before.
    version: Option<u32>,
    /// Follow the rollback until it ends.
    #[arg(long)]
    wait: bool,
    /// With --wait, stop following after this long (`10m`, `1h`); the rollback goes on.
    #[arg(long, value_name = "DURATION", requires = "wait", value_parser = strategy::parse_secs)]
    timeout: Option<u32>,
}

/// Where the commands write, and how fast they poll.
pub struct Io<'a> {
    /// Tables, messages and the JSON of `-o json`.
    pub out: &'a mut (dyn Write + Send),
    /// Progress and hints under `-o json`, so `out` holds only JSON.
    pub err: &'a mut (dyn Write + Send),
    pub poll: Duration,
}

/// [`Io`] with the command's output format.
struct Sink<'a, 'b> {
    io: &'a mut Io<'b>,
    format: Format,
}

impl Sink<'_, '_> {
    /// A line for people: on stdout, or stderr under `-o json`.
    fn say(&mut self, line: impl Display) -> anyhow::Result<()> {
        match self.format {
            Format::Table => writeln!(self.io.out, "{line}")?,
            Format::Json => writeln!(self.io.err, "{line}")?,
        }
        Ok(())
    }

    /// The response itself, under `-o json` only.
    fn json(&mut self, raw: &Value) -> anyhow::Result<()> {
        if self.format == Format::Json {
            writeln!(self.io.out, "{}", serde_json::to_string_pretty(raw)?)?;
        }
        Ok(())
    }

    /// A response: raw under `-o json`, rendered from its typed form otherwise.
    fn show<T: DeserializeOwned>(
        &mut self,
        raw: Value,
        render: impl FnOnce(T) -> String,
    ) -> anyhow::Result<()> {
        match self.format {
            Format::Json => self.json(&raw),
            Format::Table => {
                let text = render(typed(raw)?);
                writeln!(self.io.out, "{text}")?;
                Ok(())
            }
        }
    }
}

/// How to follow a release.
#[derive(Debug, Clone, Copy)]
struct Follow {
    poll: Duration,
    /// Keep going through pauses.
    until_done: bool,
    timeout: Option<Duration>,
}

/// A user's control over an active release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    Promote { full: bool },
    Pause,
    Resume,
    Abort,
}

impl Control {
    fn segment(self) -> &'static str {
        match self {
            Control::Promote { .. } => "promote",
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::Abort => "abort",
        }
    }

    fn done(self) -> &'static str {
        match self {
            Control::Promote { full: false } => "Promoted",
            Control::Promote { full: true } => "Fully promoted",
            Control::Pause => "Paused",
            Control::Resume => "Resumed",
            Control::Abort => "Aborted",
        }
    }
}

/// Runs `tideway release …`.
pub async fn run(client: &ApiClient, args: ReleaseArgs, io: &mut Io<'_>) -> anyhow::Result<()> {
    let ns = args.common.namespace.as_str();
    let mut sink = Sink {
        format: args.common.output,
        io,
    };
    match args.command {
        ReleaseCommand::Start(a) => start(client, ns, *a, &mut sink).await,
        ReleaseCommand::Status(a) => status(client, ns, a, &mut sink).await,
        ReleaseCommand::List { app } => {
            let raw: Vec<Value> = client.get_all(&releases_path(ns, &app)).await?;
            sink.show(json!({ "items": raw }), |page: Page<Release>| {
                output::releases(&page.items, Utc::now()).to_string()
            })
        }
        ReleaseCommand::Promote(a) => {
            let control = Control::Promote { full: a.full };
            steer(client, ns, a.target, control, &mut sink).await
        }
        ReleaseCommand::Pause(a) => steer(client, ns, a, Control::Pause, &mut sink).await,
        ReleaseCommand::Resume(a) => steer(client, ns, a, Control::Resume, &mut sink).await,
        ReleaseCommand::Abort(a) => steer(client, ns, a, Control::Abort, &mut sink).await,
    }
}

/// Runs `tideway rollback`.
pub async fn rollback(
    client: &ApiClient,
    args: RollbackArgs,
    io: &mut Io<'_>,
) -> anyhow::Result<()> {
    let ns = args.common.namespace.as_str();
    let app = args.app.as_str();
    let poll = io.poll;
    let mut sink = Sink {
        format: args.common.output,
        io,
    };
    let body = match args.version {
        Some(version) => json!({ "version": version }),
        None => json!({}),
    };
    let raw: Value = client
        .post(&["namespaces", ns, "apps", app, "rollback"], &body)
        .await?;
    let release: Release = typed(raw.clone())?;
    sink.say(format!(
        "Rolling back {ns}/{app} to v{}: release {} ({})",
        release.target_version,
        release.id,
        wire_name(&release.state)
    ))?;
    if !args.wait {
        sink.say(format!(
            "follow it with `{}`",
            command(ns, &format!("release status {app} --watch"))
        ))?;
        return sink.json(&raw);
    }
    let follow = Follow {
        poll,
        until_done: false,
        timeout: args.timeout.map(|s| Duration::from_secs(s.into())),
    };
    follow_to_end(client, ns, app, release.id, follow, &mut sink).await
}

/// The body of `POST .../releases`: only what was asked for, so the server's defaults
/// apply to the rest.
pub fn create_body(target_version: u32, strategy: Option<Value>, supersede: bool) -> Value {
    let mut body = json!({ "target_version": target_version });
    if let Some(strategy) = strategy {
        body["strategy"] = strategy;
    }
    if supersede {
        body["supersede"] = true.into();
    }
    body
}

/// Adds a hint to the errors of starting a release that the user can act on.
/// `supersede_flag`: whether the command has `--supersede`.
pub fn explain_create(
    err: anyhow::Error,
    ns: &str,
    app: &str,
    from_flags: bool,
    supersede_flag: bool,
) -> anyhow::Error {
    if ApiError::has_code(&err, "release_in_progress") {
        let status = command(ns, &format!("release status {app} --watch"));
        let abort = command(ns, &format!("release abort {app}"));
        let hint = if supersede_flag {
            format!("pass --supersede to replace it, or follow it with `{status}`")
        } else {
            format!("follow it with `{status}` or abort it with `{abort}`")
        };
        return anyhow!("{err}\nhint: {hint}");
    }
    let flag = ApiError::field_of(&err)
        .filter(|_| from_flags)
        .and_then(|field| Some((field, strategy::flag_for_field(field)?)));
    match flag {
        Some((field, flag)) => {
            let hint = format!("{field} is set by {flag}");
            anyhow!("{err}\nhint: {hint}")
        }
        None => err,
    }
}

async fn start(
    client: &ApiClient,
    ns: &str,
    a: StartArgs,
    sink: &mut Sink<'_, '_>,
) -> anyhow::Result<()> {
    let app = a.app.as_str();
    let body = create_body(a.version, a.strategy.build()?, a.supersede);
    let path = releases_path(ns, app);
    let explain = |e| explain_create(e, ns, app, a.strategy.uses_flags(), true);
    if a.dry_run {
        let raw: Value = client
            .post_query(&path, &[("dry_run", "true".to_owned())], &body)
            .await
            .map_err(explain)?;
        return sink.show(raw, |plan: ReleasePlan| output::release_plan(&plan));
    }
    let raw: Value = client.post(&path, &body).await.map_err(explain)?;
    let release: Release = typed(raw.clone())?;
    sink.say(format!(
        "Started release {} of {ns}/{app}: {}, {} ({})",
        release.id,
        output::versions_moved(&release.from_versions, release.target_version),
        output::strategy_kind(&release.strategy),
        wire_name(&release.state)
    ))?;
    if !a.wait {
        sink.say(format!(
            "follow it with `{}`",
            command(ns, &format!("release status {app} --watch"))
        ))?;
        return sink.json(&raw);
    }
    let follow = Follow {
        poll: sink.io.poll,
        until_done: a.until_done,
        timeout: a.timeout.map(|s| Duration::from_secs(s.into())),
    };
    follow_to_end(client, ns, app, release.id, follow, sink).await
}

async fn status(
    client: &ApiClient,
    ns: &str,
    a: StatusArgs,
    sink: &mut Sink<'_, '_>,
) -> anyhow::Result<()> {
    let app = a.app.as_str();
    let id = match a.id {
        Some(id) => id,
        None if a.watch => latest(client, ns, app).await?.1.id,
        None => {
            let (raw, _) = latest(client, ns, app).await?;
            return sink.show(raw, |r: Release| details(&r, ns));
        }
    };
    if !a.watch {
        let id = id.to_string();
        let raw: Value = client.get(&release_path(ns, app, &id), &[]).await?;
        return sink.show(raw, |r: Release| details(&r, ns));
    }
    let follow = Follow {
        poll: sink.io.poll,
        until_done: a.until_done,
        timeout: a.timeout.map(|s| Duration::from_secs(s.into())),
    };
    follow_to_end(client, ns, app, id, follow, sink).await
}

/// `release status` for people: the details, then what to do next when it waits.
fn details(r: &Release, ns: &str) -> String {
    let text = output::release_details(r, Utc::now());
    match next_step(r, ns) {
        Some(hint) => format!("{text}\n\nNext: {hint}"),
        None => text,
    }
}

async fn steer(
    client: &ApiClient,
    ns: &str,
    a: ControlArgs,
    control: Control,
    sink: &mut Sink<'_, '_>,
) -> anyhow::Result<()> {
    let app = a.app.as_str();
    let id = match a.id {
        Some(id) => id,
        None => active(client, ns, app).await?,
    };
    let id = id.to_string();
    let path = [
        "namespaces",
        ns,
        "apps",
        app,
        "releases",
        &id,
        control.segment(),
    ];
    let body = match control {
        Control::Promote { full } => json!({ "full": full }),
        Control::Pause | Control::Resume | Control::Abort => json!({}),
    };
    let raw: Value = client.post(&path, &body).await?;
    sink.show(raw, |r: Release| {
        let mut text = format!(
            "{} release {} of {ns}/{app}: {}",
            control.done(),
            r.id,
            wire_name(&r.state)
        );
        if r.state.is_active() {
            text.push_str(&format!(
                " at step {}, weight {}%",
                r.progress.step + 1,
                r.progress.weight
            ));
        }
        if !r.reason.is_empty() {
            text.push_str(&format!("\n{}", r.reason));
        }
        if let Some(hint) = next_step(&r, ns) {
            text.push_str(&format!("\nNext: {hint}"));
        }
        text
    })
}

/// Follows release `id` until it settles, then reports how it ended: an error when it
/// failed, was aborted or was superseded.
async fn follow_to_end(
    client: &ApiClient,
    ns: &str,
    app: &str,
    id: i64,
    follow: Follow,
    sink: &mut Sink<'_, '_>,
) -> anyhow::Result<()> {
    let id = id.to_string();
    let path = release_path(ns, app, &id);
    let (raw, release) = watch(client, &path, follow, sink).await?;
    sink.json(&raw)?;
    match release.state {
        ReleaseState::Succeeded => Ok(()),
        ReleaseState::Paused | ReleaseState::Pending | ReleaseState::Progressing => {
            if let Some(hint) = next_step(&release, ns) {
                sink.say(format!("release {} is paused; {hint}", release.id))?;
            }
            Ok(())
        }
        ReleaseState::Failed | ReleaseState::Aborted | ReleaseState::Superseded => bail!(
            "release {} {}: {}",
            release.id,
            wire_name(&release.state),
            release.reason
        ),
    }
}

/// Polls the release at `path`, printing each change, until it [`settled`].
async fn watch(
    client: &ApiClient,
    path: &[&str],
    follow: Follow,
    sink: &mut Sink<'_, '_>,
) -> anyhow::Result<(Value, Release)> {
    let started = tokio::time::Instant::now();
    let mut last: Option<Release> = None;
    let mut failures = 0;
    loop {
        match client.get::<Value>(path, &[]).await {
            Ok(raw) => {
                failures = 0;
                let release: Release = typed(raw.clone())?;
                for line in changes(last.as_ref(), &release, &Local) {
                    sink.say(line)?;
                }
                if settled(&release, follow.until_done) {
                    return Ok((raw, release));
                }
                last = Some(release);
            }
            Err(e) if transient(&e) && failures < MAX_POLL_FAILURES => {
                failures += 1;
                if failures == 1 {
                    writeln!(sink.io.err, "warning: {e:#}; retrying")?;
                }
            }
            Err(e) => return Err(e),
        }
        if let Some(limit) = follow.timeout {
            if started.elapsed() >= limit {
                let state = last
                    .as_ref()
                    .map_or_else(|| "unknown".to_owned(), |r| wire_name(&r.state));
                bail!(
                    "release {} is still {state} after {}; it goes on on the server",
                    path.last().copied().unwrap_or_default(),
                    output::span(i64::try_from(limit.as_secs()).unwrap_or(i64::MAX))
                );
            }
        }
        tokio::time::sleep(follow.poll).await;
    }
}

/// A failed poll worth repeating: the server had a problem or could not be reached.
fn transient(err: &anyhow::Error) -> bool {
    match err.downcast_ref::<ApiError>() {
        Some(api) => api.status.is_server_error(),
        None => true,
    }
}

/// Whether following can stop: the release ended, or it waits for a person and
/// `until_done` was not asked for.
pub fn settled(release: &Release, until_done: bool) -> bool {
    !release.state.is_active() || (release.state == ReleaseState::Paused && !until_done)
}

/// What changed from `last` to `now`, one line each, oldest first: new analysis checks,
/// then the state and its reason, then the step and instances. Without `last`, the state
/// and (once started) the step. Steps count from 1, as in the server's reasons.
pub fn changes<Tz: TimeZone>(last: Option<&Release>, now: &Release, tz: &Tz) -> Vec<String>
where
    Tz::Offset: Display,
{
    let clock = |t: DateTime<Utc>| t.with_timezone(tz).format("%H:%M:%S").to_string();
    let mut lines = Vec::new();
    let p = &now.progress;
    if let Some(last) = last {
        let seen = last.progress.checks.last().map(|c| c.at);
        for check in p.checks.iter().filter(|c| Some(c.at) > seen) {
            lines.push(format!("{}  {}", clock(check.at), check_text(check)));
        }
    }
    if last.is_none_or(|l| l.state != now.state || l.reason != now.reason) {
        let mut line = format!(
            "{}  release {} {}",
            clock(now.updated_at),
            now.id,
            wire_name(&now.state)
        );
        if !now.reason.is_empty() {
            line.push_str(&format!(": {}", now.reason));
        }
        lines.push(line);
    }
    let position = |r: &Release| {
        let p = &r.progress;
        (
            p.step,
            p.weight,
            p.target_replicas,
            p.stable_replicas,
            p.pause_until,
        )
    };
    let moved = match last {
        Some(last) => position(last) != position(now),
        None => now.state != ReleaseState::Pending,
    };
    if moved && now.state.is_active() {
        let mut line = format!(
            "{}  step {}: weight {}%, instances {} new / {} stable",
            clock(p.step_started_at.unwrap_or(now.updated_at)),
            p.step + 1,
            p.weight,
            p.target_replicas,
            p.stable_replicas
        );
        if let Some(until) = p.pause_until {
            line.push_str(&format!(", holding until {}", clock(until)));
        }
        lines.push(line);
    }
    lines
}

/// `check failed: new 120 req, 90.0%, p99 45ms; stable 480 req, 99.8%, p99 40ms — …`.
fn check_text(c: &AnalysisCheck) -> String {
    let mut text = format!(
        "check {}: new {}; stable {}",
        wire_name(&c.outcome),
        output::figures(&c.target),
        output::figures(&c.stable)
    );
    if !c.failures.is_empty() {
        text.push_str(&format!(" — {}", c.failures.join("; ")));
    }
    text
}

/// What a paused release waits for, as a command to run.
fn next_step(r: &Release, ns: &str) -> Option<String> {
    if r.state != ReleaseState::Paused {
        return None;
    }
    let app = &r.app;
    let abort = command(ns, &format!("release abort {app}"));
    Some(if r.progress.paused_by_user {
        format!(
            "resume it with `{}` or abort it with `{abort}`",
            command(ns, &format!("release resume {app}"))
        )
    } else {
        format!(
            "promote it with `{}` (--full to finish) or abort it with `{abort}`",
            command(ns, &format!("release promote {app}"))
        )
    })
}

/// The newest release of the app.
async fn latest(client: &ApiClient, ns: &str, app: &str) -> anyhow::Result<(Value, Release)> {
    let page: Page<Value> = client
        .get(&releases_path(ns, app), &[("limit", "1".to_owned())])
        .await?;
    let Some(raw) = page.items.into_iter().next() else {
        bail!("{ns}/{app} has no releases yet");
    };
    let release = typed(raw.clone())?;
    Ok((raw, release))
}

/// The id of the app's active release.
async fn active(client: &ApiClient, ns: &str, app: &str) -> anyhow::Result<i64> {
    let page: Page<Release> = client
        .get(
            &releases_path(ns, app),
            &[("limit", ACTIVE_SEARCH.to_owned())],
        )
        .await?;
    if let Some(r) = page.items.iter().find(|r| r.state.is_active()) {
        return Ok(r.id);
    }
    match page.items.first() {
        Some(r) => bail!(
            "{ns}/{app} has no active release (the latest, {}, {}); name a release id",
            r.id,
            wire_name(&r.state)
        ),
        None => bail!("{ns}/{app} has no releases yet"),
    }
}

fn releases_path<'a>(ns: &'a str, app: &'a str) -> [&'a str; 5] {
    ["namespaces", ns, "apps", app, "releases"]
}

fn release_path<'a>(ns: &'a str, app: &'a str, id: &'a str) -> [&'a str; 6] {
    ["namespaces", ns, "apps", app, "releases", id]
}

/// A `tideway` command line, with `-n` when the namespace is not the default.
pub fn command(ns: &str, rest: &str) -> String {
    if ns == "default" {
        format!("tideway {rest}")
    } else {
        format!("tideway {rest} -n {ns}")
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use reqwest::StatusCode;
    use tideway_api_types::{CheckFigures, CheckOutcome, ReleaseProgress, Strategy};

    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap() + chrono::Duration::seconds(secs)
    }

    fn release(state: ReleaseState, reason: &str, progress: ReleaseProgress) -> Release {
        Release {
            id: 7,
            namespace: "default".into(),
            app: "web".into(),
            from_versions: vec![2],
            target_version: 3,
            strategy: serde_json::from_value(json!({"type": "canary", "weights": [20, 50]}))
                .unwrap(),
            state,
            reason: reason.into(),
            progress,
            created_at: at(0),
            updated_at: at(5),
            generation: 3,
        }
    }

    fn check(secs: i64, outcome: CheckOutcome, failures: &[&str]) -> AnalysisCheck {
        AnalysisCheck {
            at: at(secs),
            outcome,
            target: CheckFigures {
                requests: 120,
                responses_5xx: 12,
                success_rate_percent: Some(90.0),
                p99_ms: Some(45.2),
            },
            stable: CheckFigures {
                requests: 480,
                responses_5xx: 1,
                success_rate_percent: Some(99.79),
                p99_ms: None,
            },
            failures: failures.iter().map(|f| (*f).to_owned()).collect(),
        }
    }

    fn at_step(step: u32, weight: u32) -> ReleaseProgress {
        ReleaseProgress {
            step,
            step_started_at: Some(at(4)),
            weight,
            target_replicas: 1,
            stable_replicas: 2,
            ..ReleaseProgress::default()
        }
    }

    #[test]
    fn the_first_poll_shows_state_and_step() {
        let pending = release(
            ReleaseState::Pending,
            "waiting for the reconciler",
            at_step(0, 0),
        );
        assert_eq!(
            changes(None, &pending, &Utc),
            ["12:00:05  release 7 pending: waiting for the reconciler"]
        );
        let mut progressing = release(
            ReleaseState::Progressing,
            "pause 30s (step 2 of 5)",
            at_step(1, 20),
        );
        progressing.progress.pause_until = Some(at(34));
        assert_eq!(
            changes(None, &progressing, &Utc),
            [
                "12:00:05  release 7 progressing: pause 30s (step 2 of 5)",
                "12:00:04  step 2: weight 20%, instances 1 new / 2 stable, holding until 12:00:34",
            ]
        );
    }

    #[test]
    fn later_polls_show_only_what_changed() {
        let before = release(ReleaseState::Progressing, "set weight 20%", at_step(0, 20));
        assert!(changes(Some(&before), &before, &Utc).is_empty());

        let mut after = before.clone();
        after.progress.checks = vec![check(10, CheckOutcome::Passed, &[])];
        assert_eq!(
            changes(Some(&before), &after, &Utc),
            ["12:00:10  check passed: new 120 req, 90.0%, p99 45ms; stable 480 req, 99.8%, p99 -"]
        );

        let mut failed = after.clone();
        failed.state = ReleaseState::Failed;
        failed.reason = "analysis failed 2 times".into();
        failed.updated_at = at(21);
        failed.progress.checks.push(check(
            20,
            CheckOutcome::Failed,
            &["success rate 90.0% < 99.0%", "p99 45ms > 40ms"],
        ));
        failed.progress.weight = 0;
        assert_eq!(
            changes(Some(&after), &failed, &Utc),
            [
                "12:00:20  check failed: new 120 req, 90.0%, p99 45ms; stable 480 req, 99.8%, \
                 p99 - — success rate 90.0% < 99.0%; p99 45ms > 40ms",
                // An ended release has no step to show.
                "12:00:21  release 7 failed: analysis failed 2 times",
            ]
        );
    }

    #[test]
    fn a_new_step_is_one_line() {
        let before = release(ReleaseState::Progressing, "same", at_step(0, 20));
        let after = release(ReleaseState::Progressing, "same", at_step(3, 50));
        assert_eq!(
            changes(Some(&before), &after, &Utc),
            ["12:00:04  step 4: weight 50%, instances 1 new / 2 stable"]
        );
    }

    #[test]
    fn following_stops_at_the_end_or_at_a_pause() {
        let of = |state| release(state, "", ReleaseProgress::default());
        for (state, stop, stop_when_done) in [
            (ReleaseState::Pending, false, false),
            (ReleaseState::Progressing, false, false),
            (ReleaseState::Paused, true, false),
            (ReleaseState::Succeeded, true, true),
            (ReleaseState::Failed, true, true),
            (ReleaseState::Aborted, true, true),
            (ReleaseState::Superseded, true, true),
        ] {
            assert_eq!(settled(&of(state), false), stop, "{state:?}");
            assert_eq!(settled(&of(state), true), stop_when_done, "{state:?}");
        }
    }

    #[test]
    fn a_pause_says_what_ends_it() {
        let mut r = release(ReleaseState::Paused, "", ReleaseProgress::default());
        let hint = next_step(&r, "default").unwrap();
        assert!(
            hint.starts_with("promote it with `tideway release promote web` (--full to finish)"),
            "{hint}"
        );
        r.progress.paused_by_user = true;
        assert_eq!(
            next_step(&r, "prod").unwrap(),
            "resume it with `tideway release resume web -n prod` or abort it with \
             `tideway release abort web -n prod`"
        );
        r.state = ReleaseState::Progressing;
        assert_eq!(next_step(&r, "default"), None);
    }

    #[test]
    fn create_bodies_carry_only_what_was_asked() {
        assert_eq!(create_body(3, None, false), json!({"target_version": 3}));
        assert_eq!(
            create_body(3, Some(json!({"type": "immediate"})), true),
            json!({"target_version": 3, "strategy": {"type": "immediate"}, "supersede": true})
        );
    }

    fn api_error(status: StatusCode, body: Value) -> anyhow::Error {
        ApiError::from_body(status, &body.to_string()).into()
    }

    #[test]
    fn create_errors_get_hints() {
        let busy = || {
            api_error(
                StatusCode::CONFLICT,
                json!({"error": {"code": "release_in_progress",
                                 "message": "app 'default/web' already has an active release"}}),
            )
        };
        assert_eq!(
            explain_create(busy(), "default", "web", true, true).to_string(),
            "app 'default/web' already has an active release (release_in_progress)\n\
             hint: pass --supersede to replace it, or follow it with \
             `tideway release status web --watch`"
        );
        assert!(explain_create(busy(), "prod", "web", true, false)
            .to_string()
            .ends_with("or abort it with `tideway release abort web -n prod`"));

        let refused = || {
            api_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"error": {"code": "validation_failed",
                                 "message": "strategy.weights: weights must increase",
                                 "details": {"field": "strategy.weights"}}}),
            )
        };
        assert_eq!(
            explain_create(refused(), "default", "web", true, true).to_string(),
            "strategy.weights: weights must increase (validation_failed)\n\
             hint: strategy.weights is set by --steps"
        );
        // A strategy from --strategy-json has no flag to point at.
        assert_eq!(
            explain_create(refused(), "default", "web", false, true).to_string(),
            "strategy.weights: weights must increase (validation_failed)"
        );
    }

    #[test]
    fn only_server_and_network_errors_are_retried() {
        assert!(transient(&api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({})
        )));
        assert!(!transient(&api_error(StatusCode::NOT_FOUND, json!({}))));
        assert!(transient(&anyhow!("connection refused")));
    }

    #[test]
    fn strategy_shown_in_details() {
        let r = release(ReleaseState::Progressing, "", at_step(0, 20));
        assert!(matches!(r.strategy, Strategy::Canary(_)));
        assert!(details(&r, "default").contains("Strategy:  canary: weights 20,50%"));
    }
}
