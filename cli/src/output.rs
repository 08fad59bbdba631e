//! How responses are shown: tables and key/value blocks for people, the untouched JSON of
//! the response for scripts.

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;
use tideway_api_types::{
    Analysis, AnalysisCheck, App, CheckFigures, Event, HeaderMatch, Instance, MatchRule, Release,
    ReleasePlan, ReleaseState, Strategy, Version,
};

/// `-o/--output`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// The API response, pretty-printed, for scripts.
    Json,
}

/// Shown for absent optional values so columns never look shifted.
const NONE: &str = "-";

/// Length of `sha256:` plus 12 hex digits: enough to tell artifacts apart.
const SHORT_DIGEST: usize = 19;

/// Longest instance message shown in a table cell; `-o json` has the whole text.
const MAX_MESSAGE: usize = 60;

/// Analysis checks shown by `release status`; the release keeps up to 100 and `-o json`
/// has them all.
const MAX_CHECKS: usize = 10;

/// Prints a JSON value the way `-o json` promises: pretty, with a trailing newline.
pub fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Borderless, kubectl-style table that wraps to the terminal when there is one.
fn table<const N: usize>(header: [&str; N]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header);
    // The preset pads both sides of every cell; kubectl-style output starts at the margin
    // and separates columns with two spaces.
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    if let Some(last) = table.column_mut(N.saturating_sub(1)) {
        last.set_padding((0, 0));
    }
    table
}

pub fn apps(apps: &[App], now: DateTime<Utc>) -> Table {
    let mut t = table(["NAME", "REPLICAS", "VERSION", "UPDATED", "DESCRIPTION"]);
    for app in apps {
        t.add_row([
            app.name.clone(),
            app.replicas.to_string(),
            app.current_version.map_or_else(|| NONE.to_owned(), version),
            relative_time(app.updated_at, now),
            app.description.clone(),
        ]);
    }
    t
}

pub fn versions(versions: &[Version], now: DateTime<Utc>) -> Table {
    let mut t = table(["VERSION", "STATE", "DIGEST", "CREATED"]);
    for v in versions {
        t.add_row([
            version(v.number),
            wire_name(&v.state),
            v.artifact_digest.chars().take(SHORT_DIGEST).collect(),
            relative_time(v.created_at, now),
        ]);
    }
    t
}

pub fn instances(instances: &[Instance]) -> Table {
    let mut t = table([
        "ID", "VERSION", "STATE", "ADDRESS", "PID", "RESTARTS", "CPU", "MEM", "MESSAGE",
    ]);
    for i in instances {
        t.add_row([
            i.id.clone(),
            version(i.version),
            wire_name(&i.state),
            i.address.clone().unwrap_or_else(|| NONE.to_owned()),
            i.pid.map_or_else(|| NONE.to_owned(), |p| p.to_string()),
            i.restarts.to_string(),
            i.cpu_percent
                .map_or_else(|| NONE.to_owned(), |c| format!("{c:.1}%")),
            i.memory_bytes.map_or_else(|| NONE.to_owned(), human_bytes),
            i.message
                .as_deref()
                .map_or_else(|| NONE.to_owned(), |m| truncate(m, MAX_MESSAGE)),
        ]);
    }
    t
}

/// Events keep absolute times: they are read as a log and compared with other logs.
pub fn events(events: &[Event]) -> Table {
    let mut t = table(["ID", "TIME", "TYPE", "APP", "ACTOR", "REASON"]);
    for e in events {
        t.add_row([
            e.id.to_string(),
            timestamp(e.time),
            e.kind.clone(),
            e.app.clone().unwrap_or_else(|| NONE.to_owned()),
            e.actor.clone(),
            e.reason.clone(),
        ]);
    }
    t
}

/// `apps show`: one `key: value` line per field, values aligned.
pub fn app_details(app: &App, now: DateTime<Utc>) -> String {
    let labels = if app.labels.is_empty() {
        NONE.to_owned()
    } else {
        app.labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let description = if app.description.is_empty() {
        NONE
    } else {
        &app.description
    };
    let rows = [
        ("Name", app.name.clone()),
        ("Namespace", app.namespace.clone()),
        ("Description", description.to_owned()),
        ("Replicas", app.replicas.to_string()),
        (
            "Version",
            app.current_version.map_or_else(|| NONE.to_owned(), version),
        ),
        ("Labels", labels),
        (
            "Created",
            format!(
                "{} ({})",
                timestamp(app.created_at),
                relative_time(app.created_at, now)
            ),
        ),
        (
            "Updated",
            format!(
                "{} ({})",
                timestamp(app.updated_at),
                relative_time(app.updated_at, now)
            ),
        ),
        ("Generation", app.generation.to_string()),
    ];
    key_values(&rows)
}

/// `release list`: newest first, as the server sends them.
pub fn releases(releases: &[Release], now: DateTime<Utc>) -> Table {
    let mut t = table([
        "ID", "STATE", "VERSIONS", "STRATEGY", "STEP", "WEIGHT", "CREATED", "REASON",
    ]);
    for r in releases {
        t.add_row([
            r.id.to_string(),
            wire_name(&r.state),
            versions_moved(&r.from_versions, r.target_version),
            strategy_kind(&r.strategy).to_owned(),
            step_number(r.progress.step),
            format!("{}%", r.progress.weight),
            relative_time(r.created_at, now),
            truncate(&r.reason, MAX_MESSAGE),
        ]);
    }
    t
}

/// `release start --dry-run`: what the release would do, step by step.
pub fn release_plan(plan: &ReleasePlan) -> String {
    let mut t = table([
        "STEP",
        "ACTION",
        "WEIGHT",
        "TARGET",
        "STABLE",
        "RULES",
        "WAITS FOR",
    ]);
    for step in &plan.steps {
        let mut rules: Vec<String> = step.rules.iter().map(match_rule).collect();
        if step.preview {
            rules.push("preview route".to_owned());
        }
        t.add_row([
            step_number(step.index),
            step.action.clone(),
            format!("{}%", step.weight),
            step.target_replicas.to_string(),
            step.stable_replicas.to_string(),
            if rules.is_empty() {
                NONE.to_owned()
            } else {
                rules.join(", ")
            },
            step.waits_for.clone(),
        ]);
    }
    let from = plan
        .stable_version
        .map_or_else(|| "nothing".to_owned(), version);
    format!(
        "Plan of {} → {} ({}); nothing was changed:\n{t}",
        from,
        version(plan.target_version),
        describe_strategy(&plan.strategy)
    )
}

/// `release status`: where a release is, then its latest analysis checks.
pub fn release_details(r: &Release, now: DateTime<Utc>) -> String {
    let p = &r.progress;
    let mut rows = vec![
        ("Release", r.id.to_string()),
        ("App", format!("{}/{}", r.namespace, r.app)),
        ("State", wire_name(&r.state)),
        (
            "Reason",
            if r.reason.is_empty() {
                NONE.to_owned()
            } else {
                r.reason.clone()
            },
        ),
        (
            "Versions",
            versions_moved(&r.from_versions, r.target_version),
        ),
        ("Strategy", describe_strategy(&r.strategy)),
        ("Step", step_number(p.step)),
        ("Weight", format!("{}%", p.weight)),
        (
            "Instances",
            format!("{} new, {} stable", p.target_replicas, p.stable_replicas),
        ),
        ("Pause", pause_text(r, now)),
    ];
    let analysis = strategy_analysis(&r.strategy);
    if analysis.is_some() || !p.checks.is_empty() {
        let mut text = format!(
            "{} passed in a row, {} failed",
            p.passed_in_row, p.failed_checks
        );
        if let Some(a) = analysis {
            text.push_str(&format!(
                " (fails at {}), every {}",
                a.failure_limit,
                span(i64::from(a.interval_secs))
            ));
        }
        if let (Some(next), true) = (p.next_check_at, r.state.is_active()) {
            text.push_str(&format!(", next in {}", span((next - now).num_seconds())));
        }
        rows.push(("Analysis", text));
    }
    rows.push((
        "Created",
        format!(
            "{} ({})",
            timestamp(r.created_at),
            relative_time(r.created_at, now)
        ),
    ));
    rows.push((
        "Updated",
        format!(
            "{} ({})",
            timestamp(r.updated_at),
            relative_time(r.updated_at, now)
        ),
    ));
    let mut text = key_values(&rows);
    if !p.checks.is_empty() {
        let shown = &p.checks[p.checks.len().saturating_sub(MAX_CHECKS)..];
        text.push_str(&format!(
            "\n\nLatest checks ({} of {}; each cell is new/stable):\n{}",
            shown.len(),
            p.checks.len(),
            checks(shown)
        ));
    }
    text
}

/// Analysis checks, oldest first; each figure is `target/stable`.
pub fn checks(checks: &[AnalysisCheck]) -> Table {
    let mut t = table(["TIME", "OUTCOME", "REQUESTS", "SUCCESS", "P99", "FAILURES"]);
    for c in checks {
        let pair = |f: fn(&CheckFigures) -> String| format!("{}/{}", f(&c.target), f(&c.stable));
        t.add_row([
            timestamp(c.at),
            wire_name(&c.outcome),
            pair(|f| f.requests.to_string()),
            pair(success_rate),
            pair(p99),
            if c.failures.is_empty() {
                NONE.to_owned()
            } else {
                c.failures.join("; ")
            },
        ]);
    }
    t
}

/// One version's figures of a check: `120 req, 99.2%, p99 45ms`.
pub fn figures(f: &CheckFigures) -> String {
    format!("{} req, {}, p99 {}", f.requests, success_rate(f), p99(f))
}

fn success_rate(f: &CheckFigures) -> String {
    f.success_rate_percent
        .map_or_else(|| NONE.to_owned(), |r| format!("{r:.1}%"))
}

fn p99(f: &CheckFigures) -> String {
    f.p99_ms
        .map_or_else(|| NONE.to_owned(), |ms| format!("{ms:.0}ms"))
}

/// What ends the current wait, if anything: a timer, a promote, a resume.
fn pause_text(r: &Release, now: DateTime<Utc>) -> String {
    let p = &r.progress;
    match (
        r.state,
        p.paused_by_user,
        p.pause_remaining_ms,
        p.pause_until,
    ) {
        (ReleaseState::Paused, true, Some(ms), _) => format!(
            "paused by request, with {} of a timed pause left",
            span((ms + 999) / 1000)
        ),
        (ReleaseState::Paused, true, None, _) => "paused by request".to_owned(),
        (ReleaseState::Paused, false, _, _) => "until promoted".to_owned(),
        (state, _, _, Some(until)) if state.is_active() => format!(
            "{} left (until {})",
            span((until - now).num_seconds()),
            timestamp(until)
        ),
        _ => NONE.to_owned(),
    }
}

/// Steps are counted from 1 for people, as the server's reasons do (`step 1 of 3`); the
/// API's indexes start at 0.
fn step_number(index: u32) -> String {
    (u64::from(index) + 1).to_string()
}

/// `v2 → v3`, or just `v3` for an app's first release.
pub fn versions_moved(from: &[u32], to: u32) -> String {
    if from.is_empty() {
        return version(to);
    }
    let from: Vec<String> = from.iter().map(|v| version(*v)).collect();
    format!("{} → {}", from.join("+"), version(to))
}

/// The strategy's `type` on the wire.
pub fn strategy_kind(s: &Strategy) -> &'static str {
    match s {
        Strategy::Immediate => "immediate",
        Strategy::Canary(_) => "canary",
        Strategy::Gray(_) => "gray",
        Strategy::Batch(_) => "batch",
        Strategy::BlueGreen(_) => "blue_green",
    }
}

fn strategy_analysis(s: &Strategy) -> Option<&Analysis> {
    match s {
        Strategy::Immediate => None,
        Strategy::Canary(c) => c.analysis.as_ref(),
        Strategy::Gray(g) => g.analysis.as_ref(),
        Strategy::Batch(b) => b.analysis.as_ref(),
        Strategy::BlueGreen(b) => b.analysis.as_ref(),
    }
}

/// `canary: weights 20,50,80%, hold until promoted, analysis every 10s`.
pub fn describe_strategy(s: &Strategy) -> String {
    let hold = |pause: Option<u32>| match pause {
        Some(secs) => format!("hold {} each", span(i64::from(secs))),
        None => "hold until promoted".to_owned(),
    };
    let mut parts: Vec<String> = Vec::new();
    match s {
        Strategy::Immediate => {}
        Strategy::Canary(c) => {
            if !c.steps.is_empty() {
                parts.push(format!("{} explicit steps", c.steps.len()));
            } else {
                if !c.weights.is_empty() {
                    let weights: Vec<String> = c.weights.iter().map(u32::to_string).collect();
                    parts.push(format!("weights {}%", weights.join(",")));
                }
                if let Some(l) = &c.linear {
                    parts.push(format!("{}% steps up to {}%", l.step, l.up_to));
                }
                parts.push(hold(c.pause_secs));
            }
        }
        Strategy::Gray(g) => {
            let n = g.rules.len();
            parts.push(format!("{n} rule{}", if n == 1 { "" } else { "s" }));
            if g.weight > 0 {
                parts.push(format!("{}% of the rest", g.weight));
            }
            if let Some(sticky) = &g.sticky {
                match (&sticky.header, &sticky.cookie) {
                    (Some(h), _) => parts.push(format!("sticky by header {h}")),
                    (_, Some(c)) => parts.push(format!("sticky by cookie {c}")),
                    _ => {}
                }
            }
            parts.push(match g.pause_secs {
                Some(secs) => format!("promote after {}", span(i64::from(secs))),
                None => "until promoted".to_owned(),
            });
        }
        Strategy::Batch(b) => {
            parts.push(format!("{} batches", b.batches));
            parts.push(match b.interval_secs {
                Some(secs) => format!("{} apart", span(i64::from(secs))),
                None => "each promoted".to_owned(),
            });
            if let Some(n) = b.min_available {
                parts.push(format!("at least {n} available"));
            }
            if b.beta {
                parts.push("beta batch first".to_owned());
            }
        }
        Strategy::BlueGreen(b) => {
            if let Some(host) = &b.preview_host {
                parts.push(format!("preview at {host}"));
            }
            parts.push(match b.auto_promote_secs {
                Some(secs) => format!("switch {} after ready", span(i64::from(secs))),
                None => "switch when promoted".to_owned(),
            });
            parts.push(format!("keep old {}", span(i64::from(b.keep_old_secs))));
        }
    }
    if let Some(a) = strategy_analysis(s) {
        parts.push(format!(
            "analysis every {}",
            span(i64::from(a.interval_secs))
        ));
    }
    let kind = strategy_kind(s);
    if parts.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {}", parts.join(", "))
    }
}

/// A traffic rule: `header x-beta=1`, `cookie tier=gold`, `hash(header x-user) 0-10`.
pub fn match_rule(rule: &MatchRule) -> String {
    let mut tests = Vec::new();
    if let Some(HeaderMatch {
        name,
        exact,
        prefix,
        regex,
    }) = &rule.header
    {
        tests.push(match (exact, prefix, regex) {
            (Some(v), _, _) => format!("header {name}={v}"),
            (_, Some(p), _) => format!("header {name}={p}*"),
            (_, _, Some(re)) => format!("header {name}~/{re}/"),
            _ => format!("header {name}"),
        });
    }
    if let Some(c) = &rule.cookie {
        tests.push(format!("cookie {}={}", c.name, c.value));
    }
    if let Some(q) = &rule.query {
        tests.push(format!("query {}={}", q.name, q.value));
    }
    if let Some(h) = &rule.hash {
        let source = match (&h.header, &h.cookie) {
            (Some(name), _) => format!("header {name}"),
            (_, Some(name)) => format!("cookie {name}"),
            _ => NONE.to_owned(),
        };
        tests.push(format!("hash({source}) {}-{}", h.from, h.to));
    }
    tests.join(" & ")
}

/// A short span: `45s`, `2m30s`, `10m`, `1h5m`; negative spans (a deadline just passed)
/// read as `0s`.
pub fn span(secs: i64) -> String {
    let secs = secs.max(0);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match (h, m, s) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, 0, _) => format!("{h}h"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

/// `key: value` lines with the values aligned.
fn key_values(rows: &[(&str, String)]) -> String {
    let width = rows.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    rows.iter()
        .map(|(k, v)| format!("{:<width$} {v}", format!("{k}:")))
        .collect::<Vec<_>>()
        .join("\n")
}

fn version(number: u32) -> String {
    format!("v{number}")
}

/// `sha256:0123456789ab…`: the digest cut to [`SHORT_DIGEST`] characters.
pub fn short_digest(digest: &str) -> String {
    truncate(digest, SHORT_DIGEST)
}

/// The first line of `text`, cut to `max` characters with `…` when anything was left out.
pub fn truncate(text: &str, max: usize) -> String {
    let first_line = text.lines().next().unwrap_or("");
    let mut out: String = first_line.chars().take(max).collect();
    if out.len() < text.trim_end().len() {
        out.push('…');
    }
    out
}

/// Binary units with one decimal: `512 B`, `3.4 KiB`, `12.0 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Precision lost above 2^53 bytes does not show at one decimal.
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// RFC 3339 in UTC to the second: sortable and unambiguous.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// "5m ago" style age for recent times; a plain date once that stops being useful.
pub fn relative_time(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    const MONTH: i64 = 30 * DAY;
    // Patterns cannot negate a constant, hence a named one.
    const SKEW: i64 = -MINUTE;
    let secs = (now - then).num_seconds();
    match secs {
        // Well in the future means the clocks disagree badly; a relative age would mislead.
        ..SKEW => timestamp(then),
        // A little in the future is ordinary clock skew between client and server.
        SKEW..1 => "just now".to_owned(),
        1..MINUTE => format!("{secs}s ago"),
        MINUTE..HOUR => format!("{}m ago", secs / MINUTE),
        HOUR..DAY => format!("{}h ago", secs / HOUR),
        DAY..=MONTH => format!("{}d ago", secs / DAY),
        _ => then.format("%Y-%m-%d").to_string(),
    }
}

/// The snake_case name an enum has on the wire (`crash_loop`, not `CrashLoop`), so tables
/// and `-o json` use the same words.
pub fn wire_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => NONE.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use tideway_api_types::InstanceState;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
    }

    fn ago(secs: i64) -> String {
        relative_time(now() - Duration::seconds(secs), now())
    }

    #[test]
    fn relative_time_buckets() {
        assert_eq!(ago(0), "just now");
        assert_eq!(ago(-5), "just now");
        assert_eq!(ago(1), "1s ago");
        assert_eq!(ago(59), "59s ago");
        assert_eq!(ago(60), "1m ago");
        assert_eq!(ago(3599), "59m ago");
        assert_eq!(ago(3600), "1h ago");
        assert_eq!(ago(86_399), "23h ago");
        assert_eq!(ago(86_400), "1d ago");
        assert_eq!(ago(30 * 86_400), "30d ago");
        assert_eq!(ago(31 * 86_400), "2025-05-01");
        assert_eq!(ago(-3600), "2025-06-01T13:00:00Z");
    }

    #[test]
    fn human_bytes_units() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(3482), "3.4 KiB");
        assert_eq!(human_bytes(256 * 1024 * 1024), "256.0 MiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }

    #[test]
    fn truncation_marks_what_was_cut() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("exactly10!", 10), "exactly10!");
        assert_eq!(truncate("longer than ten", 10), "longer tha…");
        assert_eq!(truncate("line one\nline two", 40), "line one…");
        assert_eq!(truncate("trailing\n", 40), "trailing");
        assert_eq!(
            short_digest(&format!("sha256:{}", "0".repeat(64))),
            "sha256:000000000000…"
        );
    }

    #[test]
    fn instances_show_usage_and_messages() {
        let i = Instance {
            id: "web-3-ab12".into(),
            namespace: "default".into(),
            app: "web".into(),
            version: 3,
            state: InstanceState::CrashLoop,
            address: Some("127.0.0.1:4001".into()),
            pid: Some(4242),
            restarts: 5,
            message: Some(format!("exited with status 1: {}", "x".repeat(100))),
            cpu_percent: Some(12.345),
            memory_bytes: Some(48 * 1024 * 1024),
            limits_enforced: true,
            limits_note: None,
            created_at: now(),
            updated_at: now(),
        };
        let idle = Instance {
            id: "web-3-cd34".into(),
            state: InstanceState::Starting,
            address: None,
            pid: None,
            restarts: 0,
            message: None,
            cpu_percent: None,
            memory_bytes: None,
            ..i.clone()
        };
        let mut t = instances(&[i, idle]);
        t.set_content_arrangement(ContentArrangement::Disabled);
        let text = t.to_string();
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert!(lines[0].starts_with("ID "), "{text}");
        assert!(lines[0].ends_with("CPU    MEM       MESSAGE"), "{text}");
        assert!(lines[1].contains(" crash_loop "), "{text}");
        assert!(
            lines[1].contains(" 12.3%  48.0 MiB  exited with status 1: xxx"),
            "{text}"
        );
        assert!(lines[1].ends_with('…'), "{text}");
        assert!(lines[2].ends_with("0         -      -         -"), "{text}");
    }

    #[test]
    fn enums_use_wire_names() {
        assert_eq!(wire_name(&InstanceState::CrashLoop), "crash_loop");
    }

    #[test]
    fn app_details_aligns_and_fills_blanks() {
        let app = App {
            namespace: "default".into(),
            name: "web".into(),
            description: String::new(),
            labels: [("team".to_owned(), "a".to_owned())].into(),
            replicas: 2,
            domains: Vec::new(),
            path_prefixes: Vec::new(),
            registries: Vec::new(),
            current_version: None,
            created_at: now() - Duration::hours(2),
            updated_at: now(),
            generation: 3,
        };
        let text = app_details(&app, now());
        assert!(text.contains("Name:        web\n"), "{text}");
        assert!(text.contains("Description: -\n"), "{text}");
        assert!(text.contains("Version:     -\n"), "{text}");
        assert!(text.contains("Labels:      team=a\n"), "{text}");
        assert!(
            text.contains("Created:     2025-06-01T10:00:00Z (2h ago)"),
            "{text}"
        );
    }

    fn strategy(json: serde_json::Value) -> Strategy {
        serde_json::from_value(json).unwrap()
    }

    fn lines(mut t: Table) -> Vec<String> {
        t.set_content_arrangement(ContentArrangement::Disabled);
        t.to_string()
            .lines()
            .map(|l| l.trim_end().to_owned())
            .collect()
    }

    #[test]
    fn strategies_in_one_line() {
        use serde_json::json;
        for (s, expect) in [
            (json!({"type": "immediate"}), "immediate"),
            (
                json!({"type": "canary", "weights": [20, 50], "pause_secs": 90,
                       "analysis": {"interval_secs": 10}}),
                "canary: weights 20,50%, hold 1m30s each, analysis every 10s",
            ),
            (
                json!({"type": "canary", "linear": {"step": 20, "up_to": 60}}),
                "canary: 20% steps up to 60%, hold until promoted",
            ),
            (
                json!({"type": "canary", "steps": [{"set_weight": 5}, {"pause": {}}]}),
                "canary: 2 explicit steps",
            ),
            (
                json!({"type": "gray", "rules": [{"header": {"name": "x", "exact": "1"}}],
                       "weight": 5, "sticky": {"cookie": "sid"}, "pause_secs": 600}),
                "gray: 1 rule, 5% of the rest, sticky by cookie sid, promote after 10m",
            ),
            (
                json!({"type": "batch", "batches": 3, "interval_secs": 30, "beta": true}),
                "batch: 3 batches, 30s apart, beta batch first",
            ),
            (
                json!({"type": "batch", "batches": 2, "min_available": 1}),
                "batch: 2 batches, each promoted, at least 1 available",
            ),
            (
                json!({"type": "blue_green", "preview_host": "pre.example.com"}),
                "blue_green: preview at pre.example.com, switch when promoted, keep old 10m",
            ),
        ] {
            assert_eq!(describe_strategy(&strategy(s)), expect);
        }
    }

    #[test]
    fn spans_and_rules() {
        assert_eq!(span(-3), "0s");
        assert_eq!(span(45), "45s");
        assert_eq!(span(150), "2m30s");
        assert_eq!(span(600), "10m");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(3900), "1h5m");
        let rule: MatchRule = serde_json::from_value(serde_json::json!({
            "header": {"name": "x-beta", "prefix": "on"},
            "hash": {"cookie": "uid", "from": 0, "to": 10},
            "version": 3
        }))
        .unwrap();
        assert_eq!(
            match_rule(&rule),
            "header x-beta=on* & hash(cookie uid) 0-10"
        );
        assert_eq!(versions_moved(&[], 1), "v1");
        assert_eq!(versions_moved(&[1, 2], 3), "v1+v2 → v3");
    }

    #[test]
    fn plans_list_their_steps() {
        let plan: ReleasePlan = serde_json::from_value(serde_json::json!({
            "target_version": 3,
            "stable_version": 2,
            "strategy": {"type": "gray", "rules": [{"header": {"name": "x-beta", "exact": "1"}}]},
            "steps": [
                {"index": 0, "action": "gray: 1 rule to v3", "weight": 0,
                 "rules": [{"header": {"name": "x-beta", "exact": "1"}, "version": 3}],
                 "target_replicas": 1, "stable_replicas": 2, "waits_for": "ready"},
                {"index": 1, "action": "promote", "weight": 100, "preview": true,
                 "target_replicas": 2, "stable_replicas": 0, "waits_for": "ready"},
            ]
        }))
        .unwrap();
        let text = release_plan(&plan);
        let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(
            lines[0],
            "Plan of v2 → v3 (gray: 1 rule, until promoted); nothing was changed:"
        );
        assert_eq!(
            lines[1],
            "STEP  ACTION              WEIGHT  TARGET  STABLE  RULES            WAITS FOR"
        );
        assert_eq!(
            lines[2],
            "1     gray: 1 rule to v3  0%      1       2       header x-beta=1  ready"
        );
        assert_eq!(
            lines[3],
            "2     promote             100%    2       0       preview route    ready"
        );
    }

    fn canary_release() -> Release {
        use tideway_api_types::{AnalysisCheck, CheckOutcome, ReleaseProgress};
        let figures = |requests, rate, p99| CheckFigures {
            requests,
            responses_5xx: 0,
            success_rate_percent: rate,
            p99_ms: p99,
        };
        let check = |secs, outcome, failures: &[&str]| AnalysisCheck {
            at: now() - Duration::seconds(secs),
            outcome,
            target: figures(120, Some(90.0), Some(45.0)),
            stable: figures(480, Some(99.79), Some(40.4)),
            failures: failures.iter().map(|f| (*f).to_owned()).collect(),
        };
        Release {
            id: 7,
            namespace: "default".into(),
            app: "web".into(),
            from_versions: vec![2],
            target_version: 3,
            strategy: strategy(serde_json::json!({"type": "canary", "weights": [20, 50],
                "pause_secs": 60, "analysis": {"interval_secs": 10, "failure_limit": 3}})),
            state: ReleaseState::Progressing,
            reason: "pause 60s (step 2 of 7)".into(),
            progress: ReleaseProgress {
                step: 1,
                weight: 20,
                target_replicas: 1,
                stable_replicas: 2,
                pause_until: Some(now() + Duration::seconds(25)),
                next_check_at: Some(now() + Duration::seconds(4)),
                passed_in_row: 0,
                failed_checks: 1,
                checks: (0..12)
                    .map(|i| check(120 - i * 10, CheckOutcome::Passed, &[]))
                    .chain([check(
                        0,
                        CheckOutcome::Failed,
                        &["success rate 90.0% < 99.0%"],
                    )])
                    .collect(),
                ..ReleaseProgress::default()
            },
            created_at: now() - Duration::minutes(3),
            updated_at: now(),
            generation: 9,
        }
    }

    #[test]
    fn release_details_show_position_pause_and_latest_checks() {
        let text = release_details(&canary_release(), now());
        let expect = [
            "Release:   7",
            "App:       default/web",
            "State:     progressing",
            "Reason:    pause 60s (step 2 of 7)",
            "Versions:  v2 → v3",
            "Strategy:  canary: weights 20,50%, hold 1m each, analysis every 10s",
            "Step:      2",
            "Weight:    20%",
            "Instances: 1 new, 2 stable",
            "Pause:     25s left (until 2025-06-01T12:00:25Z)",
            "Analysis:  0 passed in a row, 1 failed (fails at 3), every 10s, next in 4s",
            "Created:   2025-06-01T11:57:00Z (3m ago)",
            "Updated:   2025-06-01T12:00:00Z (just now)",
            "",
            "Latest checks (10 of 13; each cell is new/stable):",
        ];
        let got: Vec<&str> = text.lines().map(str::trim_end).collect();
        assert_eq!(got[..expect.len()], expect, "{text}");
        let table = &got[expect.len()..];
        assert_eq!(table.len(), 11, "{text}");
        assert_eq!(
            table[0],
            "TIME                  OUTCOME  REQUESTS  SUCCESS      P99        FAILURES"
        );
        assert_eq!(
            table[10],
            "2025-06-01T12:00:00Z  failed   120/480   90.0%/99.8%  45ms/40ms  success rate 90.0% < 99.0%"
        );
    }

    #[test]
    fn pauses_read_by_what_ends_them() {
        let mut r = canary_release();
        r.state = ReleaseState::Paused;
        r.progress.pause_until = None;
        assert_eq!(pause_text(&r, now()), "until promoted");
        r.progress.paused_by_user = true;
        assert_eq!(pause_text(&r, now()), "paused by request");
        r.progress.pause_remaining_ms = Some(24_001);
        assert_eq!(
            pause_text(&r, now()),
            "paused by request, with 25s of a timed pause left"
        );
        r.state = ReleaseState::Succeeded;
        assert_eq!(pause_text(&r, now()), "-");
    }

    #[test]
    fn releases_table() {
        let r = canary_release();
        let rows = lines(releases(&[r], now()));
        assert_eq!(
            rows,
            [
                "ID  STATE        VERSIONS  STRATEGY  STEP  WEIGHT  CREATED  REASON",
                "7   progressing  v2 → v3   canary    2     20%     3m ago   pause 60s (step 2 of 7)",
            ]
        );
    }
}
