//! `tideway logs`: an app's captured output, streamed as newline-delimited JSON
//! ([`LogLine`] per line) and printed as it arrives.

use std::io::{self, Write};

use anyhow::{bail, Context};
use chrono::{DateTime, Local, SecondsFormat, TimeZone, Utc};
use futures_util::StreamExt;
use tideway_api_types::{LogLine, LogStream};

use crate::client::ApiClient;
use crate::Format;

/// The media type of the log stream.
pub const NDJSON: &str = "application/x-ndjson";

/// Longest line kept waiting for its newline; a server that never sends one must not make
/// the CLI buffer without bound.
const MAX_PENDING: usize = 4 << 20;

/// `--since`: how far back, or from when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// A span back from now, e.g. `5m`.
    Ago(chrono::Duration),
    /// An absolute time, e.g. `2025-06-01T12:00:00Z`.
    At(DateTime<Utc>),
}

impl Since {
    /// The absolute time the server is sent.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::Ago(d) => now - d,
            Since::At(t) => t,
        }
    }
}

/// Parses `--since`: a duration made of `<number><unit>` parts (`ms`, `s`, `m`, `h`, `d`,
/// e.g. `90s`, `1h30m`) or an RFC 3339 time.
pub fn parse_since(s: &str) -> Result<Since, String> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(Since::At(t.with_timezone(&Utc)));
    }
    parse_duration(s).map(Since::Ago).map_err(|why| {
        format!("{why}; expected a duration like 30s, 5m, 1h30m or an RFC 3339 time")
    })
}

pub(crate) fn parse_duration(s: &str) -> Result<chrono::Duration, String> {
    if s.is_empty() {
        return Err("empty value".to_owned());
    }
    let mut total = chrono::Duration::zero();
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("{s:?} is not a duration"));
        }
        let number: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{s:?} is too large"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => chrono::Duration::try_milliseconds(number),
            "s" => chrono::Duration::try_seconds(number),
            "m" => chrono::Duration::try_minutes(number),
            "h" => chrono::Duration::try_hours(number),
            "d" => chrono::Duration::try_days(number),
            "" => return Err(format!("{s:?} is missing a unit (ms, s, m, h or d)")),
            unit => return Err(format!("unknown unit {unit:?} in {s:?}")),
        };
        total = part
            .and_then(|p| total.checked_add(&p))
            .ok_or_else(|| format!("{s:?} is too large"))?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

/// The query of `GET .../logs`.
pub fn query(
    follow: bool,
    instance: Option<&str>,
    since: Option<Since>,
    tail: Option<u32>,
    now: DateTime<Utc>,
) -> Vec<(&'static str, String)> {
    let mut q = vec![("follow", follow.to_string())];
    q.extend(instance.map(|i| ("instance", i.to_owned())));
    q.extend(since.map(|s| {
        (
            "since",
            s.resolve(now).to_rfc3339_opts(SecondsFormat::AutoSi, true),
        )
    }));
    q.extend(tail.map(|n| ("tail", n.to_string())));
    q
}

/// One log line for people: `HH:MM:SS.mmm <instance> | <line>`, in the given time zone;
/// stderr lines use `!` instead of `|`.
pub fn format_line<Tz: TimeZone>(line: &LogLine, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let mark = match line.stream {
        LogStream::Stdout => '|',
        LogStream::Stderr => '!',
    };
    format!(
        "{} {} {mark} {}",
        line.time.with_timezone(tz).format("%H:%M:%S%.3f"),
        line.instance,
        line.line.trim_end_matches(['\r', '\n'])
    )
}

/// Streams the response of `GET .../logs` to `out` (stdout), a line at a time, until the
/// server closes it or Ctrl-C.
pub async fn stream(
    client: &ApiClient,
    path: &[&str],
    query: &[(&str, String)],
    format: Format,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let resp = client.get_stream(path, query, NDJSON).await?;
    let mut body = resp.bytes_stream();
    let mut pending: Vec<u8> = Vec::new();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let chunk = tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            chunk = body.next() => chunk,
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk.context("the log stream broke off")?;
        pending.extend_from_slice(&chunk);
        let mut start = 0;
        while let Some(nl) = pending[start..].iter().position(|&b| b == b'\n') {
            let line = &pending[start..start + nl];
            start += nl + 1;
            if !print_line(out, line, format)? {
                return Ok(());
            }
        }
        pending.drain(..start);
        if pending.len() > MAX_PENDING {
            bail!("the server sent a log line longer than {MAX_PENDING} bytes");
        }
    }
    // A last line without its newline.
    print_line(out, &pending, format)?;
    Ok(())
}

/// Prints one NDJSON line; `false` when stdout is closed (e.g. piped into `head`), which
/// ends the command quietly.
fn print_line(out: &mut impl Write, raw: &[u8], format: Format) -> anyhow::Result<bool> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Ok(true);
    }
    let result = match format {
        Format::Json => out.write_all(raw).and_then(|()| out.write_all(b"\n")),
        Format::Table => {
            let text = match serde_json::from_slice::<LogLine>(raw) {
                Ok(line) => format_line(&line, &Local),
                // Shown as sent rather than dropped: the output is what matters.
                Err(_) => String::from_utf8_lossy(raw).into_owned(),
            };
            writeln!(out, "{text}")
        }
    }
    .and_then(|()| out.flush());
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

#[cfg(test)]
mod tests {
    use chrono::FixedOffset;

    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn ago(s: &str) -> i64 {
        match parse_since(s).unwrap() {
            Since::Ago(d) => d.num_milliseconds(),
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn since_durations() {
        assert_eq!(ago("30s"), 30_000);
        assert_eq!(ago("5m"), 300_000);
        assert_eq!(ago("1h"), 3_600_000);
        assert_eq!(ago("1h30m"), 5_400_000);
        assert_eq!(ago("2d"), 172_800_000);
        assert_eq!(ago("250ms"), 250);
        assert_eq!(ago("0s"), 0);
        for bad in [
            "",
            "5",
            "m",
            "5x",
            "-5m",
            "1.5h",
            "5m3",
            "99999999999999999999s",
        ] {
            assert!(parse_since(bad).is_err(), "{bad:?} accepted");
        }
        let err = parse_since("5").unwrap_err();
        assert!(err.contains("missing a unit"), "{err}");
    }

    #[test]
    fn since_times_and_resolution() {
        assert_eq!(
            parse_since("2025-06-01T14:00:00+02:00").unwrap(),
            Since::At(at("2025-06-01T12:00:00Z"))
        );
        let now = at("2025-06-01T12:00:00Z");
        let since = parse_since("5m").unwrap().resolve(now);
        assert_eq!(since, at("2025-06-01T11:55:00Z"));
    }

    #[test]
    fn query_has_only_given_options() {
        let now = at("2025-06-01T12:00:00.5Z");
        assert_eq!(
            query(false, None, None, None, now),
            [("follow", "false".to_owned())]
        );
        assert_eq!(
            query(true, Some("web-1"), parse_since("30s").ok(), Some(20), now),
            [
                ("follow", "true".to_owned()),
                ("instance", "web-1".to_owned()),
                ("since", "2025-06-01T11:59:30.500Z".to_owned()),
                ("tail", "20".to_owned()),
            ]
        );
    }

    fn log(stream: LogStream, line: &str) -> LogLine {
        LogLine {
            time: at("2025-06-01T12:03:04.056789Z"),
            instance: "web-3-ab12".into(),
            version: 3,
            stream,
            line: line.into(),
        }
    }

    #[test]
    fn formats_lines_with_time_instance_and_stream() {
        assert_eq!(
            format_line(&log(LogStream::Stdout, "listening on :8080"), &Utc),
            "12:03:04.056 web-3-ab12 | listening on :8080"
        );
        assert_eq!(
            format_line(&log(LogStream::Stderr, "oops\n"), &Utc),
            "12:03:04.056 web-3-ab12 ! oops"
        );
        let tz = FixedOffset::east_opt(8 * 3600).unwrap();
        assert!(format_line(&log(LogStream::Stdout, "x"), &tz).starts_with("20:03:04.056 "));
    }

    #[test]
    fn prints_raw_ndjson_or_formatted_lines() {
        let raw = serde_json::to_vec(&log(LogStream::Stdout, "hi")).unwrap();

        let mut out = Vec::new();
        assert!(print_line(&mut out, &raw, Format::Json).unwrap());
        assert_eq!(out, [raw.as_slice(), b"\n"].concat());

        let mut out = Vec::new();
        assert!(print_line(&mut out, b"  ", Format::Table).unwrap());
        assert!(print_line(&mut out, b"not json\r", Format::Table).unwrap());
        assert!(print_line(&mut out, &raw, Format::Table).unwrap());
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0], "not json");
        assert!(lines[1].ends_with(" web-3-ab12 | hi"), "{text}");
    }
}
