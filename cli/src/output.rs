//! How responses are shown: tables and key/value blocks for people, the untouched JSON of
//! the response for scripts.

use chrono::{DateTime, SecondsFormat, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use serde::Serialize;
use tideway_api_types::{App, Event, Instance, Version};

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
}
