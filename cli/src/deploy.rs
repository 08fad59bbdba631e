//! `tideway deploy`: pack a directory, upload it as a new version, wait for its build,
//! start a release and, with `--wait`, follow the release until it settles.

use std::io::{IsTerminal, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::TryStreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use tideway_api_types::{
    App, Instance, InstanceState, Release, ReleaseState, Scale, Strategy, Version, VersionState,
};
use tokio_util::io::ReaderStream;

use crate::client::{ApiClient, ApiError};
use crate::output::{human_bytes, short_digest, wire_name};
use crate::{output, pack, release, typed, Format};

/// The media type of an uploaded artifact.
pub const GZIP: &str = "application/gzip";
const BUILD_POLL: Duration = Duration::from_millis(500);
const RELEASE_POLL: Duration = Duration::from_millis(250);
const UPLOAD_CHUNK: usize = 64 * 1024;
const UPLOAD_TEMPLATE: &str =
    "uploading [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}";
const SPINNER_TEMPLATE: &str = "{spinner} {msg} ({elapsed})";

/// What `tideway deploy` was asked to do.
#[derive(Debug, Clone)]
pub struct Deploy {
    pub namespace: String,
    pub app: String,
    pub dir: PathBuf,
    pub replicas: Option<u32>,
    pub wait: bool,
    pub timeout: Duration,
    pub format: Format,
    /// The release strategy JSON; `None` leaves it to the server (immediate).
    pub strategy: Option<Value>,
    /// Whether `strategy` came from flags, so a refused field can name its flag.
    pub strategy_from_flags: bool,
}

/// Runs a deploy from packing to (with `--wait`) the end of the release.
pub async fn run(client: &ApiClient, d: Deploy) -> anyhow::Result<()> {
    let ui = Ui::new(d.format);
    let ns = d.namespace.as_str();
    let app = d.app.as_str();
    let app_path = ["namespaces", ns, "apps", app];

    // Pack.
    pack::check_app_dir(&d.dir)?;
    let dir = d.dir.clone();
    let (archive, summary) = tokio::task::spawn_blocking(move || {
        let mut file = tempfile::tempfile().context("creating a temp file for the archive")?;
        let summary = pack::pack(&dir, std::io::BufWriter::new(&mut file))?;
        file.seek(SeekFrom::Start(0))
            .context("rewinding the archive")?;
        anyhow::Ok((file, summary))
    })
    .await
    .context("the packing task failed")??;
    let size = archive
        .metadata()
        .context("reading the archive's size")?
        .len();
    for warning in &summary.warnings {
        eprintln!("warning: {warning}");
    }
    ui.say(format!(
        "packed {} file{} ({})",
        summary.files,
        if summary.files == 1 { "" } else { "s" },
        human_bytes(size)
    ));

    // Make sure the app exists.
    let create = json!({ "name": app, "replicas": d.replicas.unwrap_or(1) });
    let existed = match client
        .post::<_, Value>(&["namespaces", ns, "apps"], &create)
        .await
    {
        Ok(_) => {
            ui.say(format!("created app {ns}/{app}"));
            false
        }
        Err(e) if ApiError::has_code(&e, "already_exists") => true,
        Err(e) => return Err(e),
    };

    // Upload.
    let versions_path = [&app_path[..], &["versions"]].concat();
    let bar = ui.upload_bar(size);
    let counter = bar.clone();
    let stream = ReaderStream::with_capacity(tokio::fs::File::from_std(archive), UPLOAD_CHUNK)
        .inspect_ok(move |chunk| counter.inc(chunk.len() as u64));
    let started = Instant::now();
    let uploaded = client
        .post_body::<Value>(
            &versions_path,
            GZIP,
            size,
            reqwest::Body::wrap_stream(stream),
        )
        .await;
    bar.finish_and_clear();
    let mut version_raw = uploaded.map_err(|e| {
        if e.downcast_ref::<ApiError>().is_some() {
            return e;
        }
        // A server that refuses a body early (e.g. on its Content-Length) and closes the
        // connection often leaves the client a broken pipe instead of its answer.
        e.context(format!(
            "uploading the archive ({}) failed; the server may have refused it before reading \
             it all, e.g. for being larger than its artifact limit",
            human_bytes(size)
        ))
    })?;
    let mut version: Version = typed(version_raw.clone())?;
    ui.say(upload_text(&version, size, started.elapsed()));

    if let (true, Some(replicas)) = (existed, d.replicas) {
        let scaled: Scale = client
            .put(&[&app_path[..], &["scale"]].concat(), &Scale { replicas })
            .await?;
        ui.say(format!("scaled {app} to {} replicas", scaled.replicas));
    }

    // Build.
    if version.state == VersionState::Building {
        let number = version.number.to_string();
        let path = [&versions_path[..], &[number.as_str()]].concat();
        let spinner = ui.spinner(format!("building v{}", version.number));
        let started = Instant::now();
        while version.state == VersionState::Building {
            if started.elapsed() >= d.timeout {
                spinner.finish_and_clear();
                bail!(
                    "v{} is still building after {} s; it goes on on the server",
                    version.number,
                    d.timeout.as_secs()
                );
            }
            tokio::time::sleep(BUILD_POLL).await;
            version_raw = client.get(&path, &[]).await?;
            version = typed(version_raw.clone())?;
        }
        spinner.finish_and_clear();
        if version.state == VersionState::BuildFailed {
            let log_path = [&path[..], &["build-log"]].concat();
            match client.get_text(&log_path).await {
                Ok(log) => {
                    eprintln!("--- build log of v{} ---", version.number);
                    eprint!("{log}");
                    if !log.is_empty() && !log.ends_with('\n') {
                        eprintln!();
                    }
                    eprintln!("--- end of build log ---");
                }
                Err(e) => eprintln!("warning: cannot fetch the build log: {e:#}"),
            }
            bail!("the build of v{} failed", version.number);
        }
        ui.say(format!(
            "built v{} in {}",
            version.number,
            seconds(started.elapsed())
        ));
    }

    // Release.
    let releases_path = [&app_path[..], &["releases"]].concat();
    let started = Instant::now();
    let body = release::create_body(version.number, d.strategy.clone(), false);
    let mut release_raw: Value = client
        .post(&releases_path, &body)
        .await
        .map_err(|e| release::explain_create(e, ns, app, d.strategy_from_flags, false))?;
    let mut release: Release = typed(release_raw.clone())?;
    let id = release.id.to_string();

    if d.wait {
        let release_path = [&releases_path[..], &[id.as_str()]].concat();
        let instances_path = [&app_path[..], &["instances"]].concat();
        let wanted = client.get::<App>(&app_path, &[]).await?.replicas;
        let spinner = ui.spinner(format!(
            "release {}: {}",
            release.id,
            wire_name(&release.state)
        ));
        let mut shown = String::new();
        let progress = loop {
            let instances: Vec<Instance> = client.get_all(&instances_path).await?;
            let progress = Rollout::of(&instances, release.target_version, wanted);
            if let Some((instance, message)) = &progress.crashed {
                spinner.finish_and_clear();
                bail!(
                    "instance {instance} of v{} is crash-looping: {message}\n\
                     hint: see its output with `{}`",
                    release.target_version,
                    logs_hint(ns, app)
                );
            }
            if release::settled(&release, false) {
                break progress;
            }
            let text = progress.text(&release);
            if text != shown {
                ui.progress(&spinner, &text);
                shown = text;
            }
            if started.elapsed() >= d.timeout {
                spinner.finish_and_clear();
                bail!(
                    "release {} is still {} after {} s ({}/{} instances ready); it goes on \
                     on the server",
                    release.id,
                    wire_name(&release.state),
                    d.timeout.as_secs(),
                    progress.ready,
                    progress.wanted
                );
            }
            tokio::time::sleep(RELEASE_POLL).await;
            release_raw = client.get(&release_path, &[]).await?;
            release = typed(release_raw.clone())?;
        };
        spinner.finish_and_clear();
        ui.say(format!(
            "{} in {}",
            progress.text(&release),
            seconds(started.elapsed())
        ));
        if release.state == ReleaseState::Paused {
            ui.say(format!(
                "release {} is paused: {}\nhint: promote it with `{}` (--full to finish) or \
                 abort it with `{}`",
                release.id,
                release.reason,
                release::command(ns, &format!("release promote {app}")),
                release::command(ns, &format!("release abort {app}"))
            ));
            return ui.json(&version_raw, &release_raw);
        }
        if release.state != ReleaseState::Succeeded {
            ui.json(&version_raw, &release_raw)?;
            bail!(
                "release {} {}: {}\nhint: see the app's output with `{}`",
                release.id,
                wire_name(&release.state),
                release.reason,
                logs_hint(ns, app)
            );
        }
    } else {
        ui.say(format!(
            "release {}: {} ({} → v{}); pass --wait to follow it",
            release.id,
            wire_name(&release.state),
            from_versions(&release.from_versions),
            release.target_version
        ));
    }
    ui.json(&version_raw, &release_raw)
}

/// How far a release's target version has come.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollout {
    /// Instances of the target version that are ready.
    pub ready: usize,
    /// The app's desired instance count.
    pub wanted: u32,
    /// The first crash-looping instance of the target version: its id and message.
    pub crashed: Option<(String, String)>,
}

impl Rollout {
    pub fn of(instances: &[Instance], target: u32, wanted: u32) -> Rollout {
        let of_target = || instances.iter().filter(|i| i.version == target);
        Rollout {
            ready: of_target()
                .filter(|i| i.state == InstanceState::Ready)
                .count(),
            wanted,
            crashed: of_target()
                .find(|i| i.state == InstanceState::CrashLoop)
                .map(|i| {
                    let message = i.message.as_deref().unwrap_or("no message from the server");
                    (i.id.clone(), message.to_owned())
                }),
        }
    }

    /// `release 7: progressing — 1/2 instances ready`; strategies that move traffic in
    /// steps add the step and weight: `release 7: progressing — step 1, weight 20%, …`.
    pub fn text(&self, release: &Release) -> String {
        let step = match release.strategy {
            Strategy::Immediate => String::new(),
            // Counted from 1, as in the server's reasons.
            _ => format!(
                "step {}, weight {}%, ",
                u64::from(release.progress.step) + 1,
                release.progress.weight
            ),
        };
        format!(
            "release {}: {} — {step}{}/{} instances ready",
            release.id,
            wire_name(&release.state),
            self.ready,
            self.wanted
        )
    }
}

/// `uploaded v3 (sha256:0123456789ab…, 3.4 KiB in 0.2 s)`; says when the server still
/// has to build it.
pub fn upload_text(version: &Version, bytes: u64, elapsed: Duration) -> String {
    let building = match version.state {
        VersionState::Building => ", building",
        VersionState::Ready | VersionState::BuildFailed => "",
    };
    format!(
        "uploaded v{} ({}, {} in {}{building})",
        version.number,
        short_digest(&version.artifact_digest),
        human_bytes(bytes),
        seconds(elapsed)
    )
}

/// `1.8 s`.
pub fn seconds(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

fn from_versions(from: &[u32]) -> String {
    if from.is_empty() {
        return "nothing".to_owned();
    }
    from.iter()
        .map(|v| format!("v{v}"))
        .collect::<Vec<_>>()
        .join("+")
}

fn logs_hint(ns: &str, app: &str) -> String {
    if ns == "default" {
        format!("tideway logs {app}")
    } else {
        format!("tideway logs -n {ns} {app}")
    }
}

/// Where deploy's messages go: status lines to stdout for people, to stderr under
/// `-o json` so stdout holds only the final JSON; bars and spinners to stderr, only when it
/// is a terminal.
struct Ui {
    format: Format,
    tty: bool,
}

impl Ui {
    fn new(format: Format) -> Ui {
        Ui {
            format,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn say(&self, line: impl AsRef<str>) {
        match self.format {
            Format::Table => println!("{}", line.as_ref()),
            Format::Json => eprintln!("{}", line.as_ref()),
        }
    }

    /// The final `{"version", "release"}` object of `-o json`.
    fn json(&self, version: &Value, release: &Value) -> anyhow::Result<()> {
        match self.format {
            Format::Json => output::print_json(&json!({ "version": version, "release": release })),
            Format::Table => Ok(()),
        }
    }

    fn upload_bar(&self, size: u64) -> ProgressBar {
        if !self.tty {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(UPLOAD_TEMPLATE) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar
    }

    fn spinner(&self, message: String) -> ProgressBar {
        if !self.tty {
            return ProgressBar::hidden();
        }
        let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(SPINNER_TEMPLATE) {
            spinner.set_style(style);
        }
        spinner.set_message(message);
        spinner.enable_steady_tick(Duration::from_millis(100));
        spinner
    }

    /// A changed progress text: on the spinner at a terminal, else one stderr line each.
    fn progress(&self, spinner: &ProgressBar, text: &str) {
        if self.tty {
            spinner.set_message(text.to_owned());
        } else {
            eprintln!("{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};
    use tideway_api_types::{HealthCheck, Resources, RunSpec, Strategy};

    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn instance(id: &str, version: u32, state: InstanceState, message: Option<&str>) -> Instance {
        Instance {
            id: id.into(),
            namespace: "default".into(),
            app: "web".into(),
            version,
            state,
            address: None,
            pid: None,
            restarts: 0,
            message: message.map(Into::into),
            cpu_percent: None,
            memory_bytes: None,
            limits_enforced: false,
            limits_note: None,
            created_at: at(),
            updated_at: at(),
        }
    }

    fn release(state: ReleaseState) -> Release {
        Release {
            id: 7,
            namespace: "default".into(),
            app: "web".into(),
            from_versions: vec![2],
            target_version: 3,
            strategy: Strategy::Immediate,
            state,
            reason: String::new(),
            progress: Default::default(),
            created_at: at(),
            updated_at: at(),
            generation: 1,
        }
    }

    pub(crate) fn version(state: VersionState) -> Version {
        Version {
            namespace: "default".into(),
            app: "web".into(),
            number: 3,
            artifact_digest: format!("sha256:{}", "ab".repeat(32)),
            run: RunSpec {
                command: "./run".into(),
            },
            env: Default::default(),
            port: None,
            health: HealthCheck::default(),
            resources: Resources::default(),
            build_command: None,
            state,
            created_at: at(),
        }
    }

    #[test]
    fn rollout_counts_ready_instances_of_the_target_only() {
        let instances = [
            instance("a", 2, InstanceState::Ready, None),
            instance("b", 3, InstanceState::Ready, None),
            instance("c", 3, InstanceState::Starting, None),
            instance("d", 2, InstanceState::CrashLoop, Some("old crash")),
        ];
        let r = Rollout::of(&instances, 3, 2);
        assert_eq!((r.ready, r.wanted, r.crashed.clone()), (1, 2, None));
        assert_eq!(
            r.text(&release(ReleaseState::Progressing)),
            "release 7: progressing — 1/2 instances ready"
        );
    }

    #[test]
    fn rollout_reports_a_crash_loop_with_its_message() {
        let instances = [
            instance("b", 3, InstanceState::Ready, None),
            instance(
                "c",
                3,
                InstanceState::CrashLoop,
                Some("exited with status 1"),
            ),
        ];
        let r = Rollout::of(&instances, 3, 2);
        assert_eq!(
            r.crashed,
            Some(("c".to_owned(), "exited with status 1".to_owned()))
        );
        let r = Rollout::of(&[instance("x", 3, InstanceState::CrashLoop, None)], 3, 1);
        assert!(r.crashed.unwrap().1.contains("no message"));
    }

    #[test]
    fn final_and_upload_texts() {
        let done = Rollout {
            ready: 2,
            wanted: 2,
            crashed: None,
        };
        assert_eq!(
            format!(
                "{} in {}",
                done.text(&release(ReleaseState::Succeeded)),
                seconds(Duration::from_millis(1830))
            ),
            "release 7: succeeded — 2/2 instances ready in 1.8 s"
        );
        assert_eq!(
            upload_text(
                &version(VersionState::Ready),
                3482,
                Duration::from_millis(240)
            ),
            "uploaded v3 (sha256:abababababab…, 3.4 KiB in 0.2 s)"
        );
        assert!(
            upload_text(&version(VersionState::Building), 10, Duration::ZERO)
                .ends_with("10 B in 0.0 s, building)")
        );
    }

    #[test]
    fn stepped_strategies_show_step_and_weight() {
        let mut r = release(ReleaseState::Paused);
        r.strategy = serde_json::from_value(json!({"type": "canary", "weights": [20]})).unwrap();
        r.progress.step = 1;
        r.progress.weight = 20;
        let progress = Rollout {
            ready: 1,
            wanted: 2,
            crashed: None,
        };
        assert_eq!(
            progress.text(&r),
            "release 7: paused — step 2, weight 20%, 1/2 instances ready"
        );
    }

    #[test]
    fn progress_templates_are_valid() {
        ProgressStyle::with_template(UPLOAD_TEMPLATE).unwrap();
        ProgressStyle::with_template(SPINNER_TEMPLATE).unwrap();
    }

    #[test]
    fn hints_and_sources() {
        assert_eq!(logs_hint("default", "web"), "tideway logs web");
        assert_eq!(logs_hint("prod", "web"), "tideway logs -n prod web");
        assert_eq!(from_versions(&[]), "nothing");
        assert_eq!(from_versions(&[1, 2]), "v1+v2");
    }
}
