//! The release strategy flags shared by `tideway release start` and `tideway deploy`, and
//! their mapping to the strategy JSON of `ReleaseCreate`.
//!
//! Flags are checked here only for their own form (a weight is 1–100, a duration parses, a
//! flag belongs to the chosen strategy). Whether the strategy as a whole makes sense is the
//! server's call: its 422 names the field, and [`flag_for_field`] points back at the flag.
//! The JSON holds only what was given, so the server's defaults apply to the rest.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde_json::{json, Map, Value};
use tideway_api_types::{HashRange, LinearSteps};

use crate::logs;

/// `--strategy`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Everything at once (the server's default).
    Immediate,
    /// A growing share of traffic, with pauses and analysis between steps.
    Canary,
    /// Requests matching rules (and optionally a share of the rest) go to the new version.
    Gray,
    /// Replace instances in batches.
    Batch,
    /// Bring the new version up at full size behind a preview route, then switch at once.
    BlueGreen,
}

impl Kind {
    /// The `type` of the strategy on the wire.
    fn wire(self) -> &'static str {
        match self {
            Kind::Immediate => "immediate",
            Kind::Canary => "canary",
            Kind::Gray => "gray",
            Kind::Batch => "batch",
            Kind::BlueGreen => "blue_green",
        }
    }

    /// The `--strategy` value.
    fn flag(self) -> &'static str {
        match self {
            Kind::BlueGreen => "blue-green",
            other => other.wire(),
        }
    }
}

/// `--pause`: a duration, or until promoted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pause {
    Secs(u32),
    Indefinite,
}

/// `--insufficient`: what a check with too little traffic counts as.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insufficient {
    /// Neither pass nor fail: wait for traffic.
    Wait,
    /// A failed check.
    Fail,
}

/// The strategies every analysis flag applies to.
const ANALYZED: &[Kind] = &[Kind::Canary, Kind::Gray, Kind::Batch, Kind::BlueGreen];

/// How a release moves to the new version. Without `--strategy` (or `--strategy-json`) the
/// request carries no strategy and the server releases immediately.
#[derive(Args, Debug, Clone, Default, PartialEq)]
#[command(next_help_heading = "Release strategy")]
pub struct StrategyArgs {
    /// How to move traffic and instances to the new version.
    #[arg(long, value_enum, value_name = "KIND")]
    pub strategy: Option<Kind>,

    /// Canary: traffic weights in percent, in order (e.g. `20,50,80`), each held for
    /// --pause, then promotion.
    #[arg(long, value_name = "WEIGHTS", value_delimiter = ',', value_parser = parse_weight,
          conflicts_with = "linear")]
    pub steps: Vec<u32>,
    /// Canary: `STEP:UP_TO` weights, e.g. `20:60` for 20, 40 and 60 percent.
    #[arg(long, value_name = "STEP:UP_TO", value_parser = parse_linear)]
    pub linear: Option<LinearSteps>,
    /// Canary and gray: how long to hold each weight (`30s`, `10m`), or `indefinite` to wait
    /// for `tideway release promote` (the default).
    #[arg(long, value_name = "DURATION|indefinite", value_parser = parse_pause)]
    pub pause: Option<Pause>,

    /// Compare the new version with the stable one using the server's default thresholds;
    /// implied by any other analysis flag.
    #[arg(long)]
    pub analysis: bool,
    /// Analysis: time between checks, each covering the last interval.
    #[arg(long, value_name = "DURATION", value_parser = parse_secs)]
    pub analysis_interval: Option<u32>,
    /// Analysis: minimum percent of non-5xx responses.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub success_rate: Option<f64>,
    /// Analysis: highest p99 latency, in milliseconds.
    #[arg(long, value_name = "MS", value_parser = parse_positive)]
    pub p99_max_ms: Option<f64>,
    /// Analysis: highest p99 latency as a multiple of the stable version's.
    #[arg(long, value_name = "FACTOR", value_parser = parse_positive)]
    pub p99_factor: Option<f64>,
    /// Analysis: fewer requests than this in an interval is too little traffic to judge.
    #[arg(long, value_name = "N")]
    pub min_requests: Option<u64>,
    /// Analysis: what a check with too little traffic counts as.
    #[arg(long, value_enum, value_name = "WHAT")]
    pub insufficient: Option<Insufficient>,
    /// Analysis: failed checks that abort the release.
    #[arg(long, value_name = "N")]
    pub failure_limit: Option<u32>,

    /// Gray: requests with this header value go to the new version (exact match;
    /// repeatable).
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub headers: Vec<(String, String)>,
    /// Gray: requests with this cookie value go to the new version (repeatable).
    #[arg(long = "cookie", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub cookies: Vec<(String, String)>,
    /// Gray: requests with this query parameter value go to the new version (repeatable).
    #[arg(long = "query", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub queries: Vec<(String, String)>,
    /// Gray: clients whose header or cookie hashes into FROM–TO (of 0–100) go to the new
    /// version, e.g. `header:x-user-id:0-10` (repeatable).
    #[arg(long = "hash", value_name = "header|cookie:NAME:FROM-TO", value_parser = parse_hash)]
    pub hashes: Vec<HashRange>,
    /// Gray: percent of the other requests also sent to the new version.
    #[arg(long, value_name = "PERCENT", value_parser = clap::value_parser!(u32).range(0..=100))]
    pub weight: Option<u32>,
    /// Gray: keep each client on one version by this header when --weight splits traffic.
    #[arg(long, value_name = "NAME", conflicts_with = "sticky_cookie")]
    pub sticky_header: Option<String>,
    /// Gray: keep each client on one version by this cookie when --weight splits traffic.
    #[arg(long, value_name = "NAME")]
    pub sticky_cookie: Option<String>,

    /// Batch: how many batches to replace the instances in (1–100).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub batches: Option<u32>,
    /// Batch: wait between batches; without it each batch waits for
    /// `tideway release promote`.
    #[arg(long, value_name = "DURATION", value_parser = parse_secs)]
    pub interval: Option<u32>,
    /// Batch: ready instances never drop below this (default: the app's replicas).
    #[arg(long, value_name = "N")]
    pub min_available: Option<u32>,
    /// Batch: the first batch is a beta batch that always waits for promote.
    #[arg(long)]
    pub beta: bool,

    /// Blue-green: a host name that reaches the new version before the switch.
    #[arg(long, value_name = "HOST")]
    pub preview_host: Option<String>,
    /// Blue-green: switch on its own this long after the new version is ready.
    #[arg(long, value_name = "DURATION", value_parser = parse_secs)]
    pub auto_promote: Option<u32>,
    /// Blue-green: keep the old version running this long after the switch.
    #[arg(long, value_name = "DURATION", value_parser = parse_secs)]
    pub keep_old: Option<u32>,

    /// The strategy as API JSON, e.g. `{"type":"canary","steps":[...]}`, instead of the
    /// flags above.
    #[arg(long, value_name = "JSON", conflicts_with = "strategy_file")]
    pub strategy_json: Option<String>,
    /// Like --strategy-json, read from a file (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub strategy_file: Option<PathBuf>,
}

impl StrategyArgs {
    /// The `strategy` of `ReleaseCreate`; `None` leaves it to the server (immediate).
    pub fn build(&self) -> anyhow::Result<Option<Value>> {
        let given = self.given();
        if let Some((source, raw)) = self.raw()? {
            if let Some(kind) = self.strategy {
                bail!(
                    "{source} replaces --strategy {}; pass only one",
                    kind.flag()
                );
            }
            if let Some((flag, _)) = given.first() {
                bail!("{flag} cannot be combined with {source}; put it in the JSON instead");
            }
            let value: Value =
                serde_json::from_str(&raw).with_context(|| format!("{source} is not JSON"))?;
            if !value.is_object() {
                bail!("{source} must be a JSON object like {{\"type\": \"canary\", ...}}");
            }
            return Ok(Some(value));
        }
        let Some(kind) = self.strategy else {
            return match given.first() {
                Some((flag, kinds)) => bail!("{flag} needs --strategy {}", one_of(kinds)),
                None => Ok(None),
            };
        };
        for (flag, kinds) in &given {
            if !kinds.contains(&kind) {
                bail!(
                    "{flag} does not apply to --strategy {}; it is for {}",
                    kind.flag(),
                    one_of(kinds)
                );
            }
        }
        let mut s = Map::new();
        s.insert("type".into(), kind.wire().into());
        match kind {
            Kind::Immediate => {}
            Kind::Canary => {
                if let Some(linear) = &self.linear {
                    s.insert(
                        "linear".into(),
                        json!({"step": linear.step, "up_to": linear.up_to}),
                    );
                } else if !self.steps.is_empty() {
                    s.insert("weights".into(), json!(self.steps));
                } else {
                    bail!(
                        "--strategy canary needs --steps or --linear (or --strategy-json for \
                         explicit steps)"
                    );
                }
                put(&mut s, "pause_secs", self.pause_secs());
            }
            Kind::Gray => {
                s.insert("rules".into(), Value::Array(self.rules()));
                put(&mut s, "weight", self.weight);
                if let Some(name) = &self.sticky_header {
                    s.insert("sticky".into(), json!({ "header": name }));
                }
                if let Some(name) = &self.sticky_cookie {
                    s.insert("sticky".into(), json!({ "cookie": name }));
                }
                put(&mut s, "pause_secs", self.pause_secs());
            }
            Kind::Batch => {
                let Some(batches) = self.batches else {
                    bail!("--strategy batch needs --batches N");
                };
                s.insert("batches".into(), batches.into());
                put(&mut s, "interval_secs", self.interval);
                put(&mut s, "min_available", self.min_available);
                if self.beta {
                    s.insert("beta".into(), true.into());
                }
            }
            Kind::BlueGreen => {
                put(&mut s, "preview_host", self.preview_host.clone());
                put(&mut s, "auto_promote_secs", self.auto_promote);
                put(&mut s, "keep_old_secs", self.keep_old);
            }
        }
        if let Some(analysis) = self.analysis_json() {
            s.insert("analysis".into(), analysis);
        }
        Ok(Some(Value::Object(s)))
    }

    /// Whether the strategy comes from flags (so a server complaint maps back to a flag).
    pub fn uses_flags(&self) -> bool {
        self.strategy_json.is_none() && self.strategy_file.is_none()
    }

    /// The escape hatch's source and text, when one was given.
    fn raw(&self) -> anyhow::Result<Option<(&'static str, String)>> {
        if let Some(text) = &self.strategy_json {
            return Ok(Some(("--strategy-json", text.clone())));
        }
        let Some(path) = &self.strategy_file else {
            return Ok(None);
        };
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading the strategy from stdin")?
        } else {
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the strategy from {}", path.display()))?
        };
        Ok(Some(("--strategy-file", text)))
    }

    /// Every strategy-specific flag that was given, with the strategies it applies to.
    fn given(&self) -> Vec<(&'static str, &'static [Kind])> {
        let flags: [(bool, &'static str, &'static [Kind]); 25] = [
            (!self.steps.is_empty(), "--steps", &[Kind::Canary]),
            (self.linear.is_some(), "--linear", &[Kind::Canary]),
            (self.pause.is_some(), "--pause", &[Kind::Canary, Kind::Gray]),
            (self.analysis, "--analysis", ANALYZED),
            (
                self.analysis_interval.is_some(),
                "--analysis-interval",
                ANALYZED,
            ),
            (self.success_rate.is_some(), "--success-rate", ANALYZED),
            (self.p99_max_ms.is_some(), "--p99-max-ms", ANALYZED),
            (self.p99_factor.is_some(), "--p99-factor", ANALYZED),
            (self.min_requests.is_some(), "--min-requests", ANALYZED),
            (self.insufficient.is_some(), "--insufficient", ANALYZED),
            (self.failure_limit.is_some(), "--failure-limit", ANALYZED),
            (!self.headers.is_empty(), "--header", &[Kind::Gray]),
            (!self.cookies.is_empty(), "--cookie", &[Kind::Gray]),
            (!self.queries.is_empty(), "--query", &[Kind::Gray]),
            (!self.hashes.is_empty(), "--hash", &[Kind::Gray]),
            (self.weight.is_some(), "--weight", &[Kind::Gray]),
            (
                self.sticky_header.is_some(),
                "--sticky-header",
                &[Kind::Gray],
            ),
            (
                self.sticky_cookie.is_some(),
                "--sticky-cookie",
                &[Kind::Gray],
            ),
            (self.batches.is_some(), "--batches", &[Kind::Batch]),
            (self.interval.is_some(), "--interval", &[Kind::Batch]),
            (
                self.min_available.is_some(),
                "--min-available",
                &[Kind::Batch],
            ),
            (self.beta, "--beta", &[Kind::Batch]),
            (
                self.preview_host.is_some(),
                "--preview-host",
                &[Kind::BlueGreen],
            ),
            (
                self.auto_promote.is_some(),
                "--auto-promote",
                &[Kind::BlueGreen],
            ),
            (self.keep_old.is_some(), "--keep-old", &[Kind::BlueGreen]),
        ];
        flags
            .into_iter()
            .filter(|(set, _, _)| *set)
            .map(|(_, flag, kinds)| (flag, kinds))
            .collect()
    }

    fn pause_secs(&self) -> Option<u32> {
        match self.pause {
            Some(Pause::Secs(secs)) => Some(secs),
            Some(Pause::Indefinite) | None => None,
        }
    }

    /// Gray rules in flag order: headers, cookies, queries, hashes.
    fn rules(&self) -> Vec<Value> {
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| json!({"header": {"name": name, "exact": value}}));
        let cookies = self
            .cookies
            .iter()
            .map(|(name, value)| json!({"cookie": {"name": name, "value": value}}));
        let queries = self
            .queries
            .iter()
            .map(|(name, value)| json!({"query": {"name": name, "value": value}}));
        let hashes = self.hashes.iter().map(|h| json!({ "hash": h }));
        headers
            .chain(cookies)
            .chain(queries)
            .chain(hashes)
            .collect()
    }

    /// The analysis object with only the given thresholds, or `None` when no analysis flag
    /// was given.
    fn analysis_json(&self) -> Option<Value> {
        let mut a = Map::new();
        put(&mut a, "interval_secs", self.analysis_interval);
        put(&mut a, "success_rate_percent", self.success_rate);
        put(&mut a, "p99_max_ms", self.p99_max_ms);
        put(&mut a, "p99_max_factor", self.p99_factor);
        put(&mut a, "min_requests", self.min_requests);
        put(
            &mut a,
            "insufficient",
            self.insufficient.map(|i| match i {
                Insufficient::Wait => "wait",
                Insufficient::Fail => "fail",
            }),
        );
        put(&mut a, "failure_limit", self.failure_limit);
        (self.analysis || !a.is_empty()).then_some(Value::Object(a))
    }
}

fn put(map: &mut Map<String, Value>, key: &str, value: Option<impl Into<Value>>) {
    if let Some(value) = value {
        map.insert(key.to_owned(), value.into());
    }
}

/// `canary`, `canary or gray`, `canary, gray, batch or blue-green`.
fn one_of(kinds: &[Kind]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.flag()).collect();
    match names.split_last() {
        Some((last, [])) => (*last).to_owned(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// The flag behind a field the server refused (`strategy.weights` → `--steps`), for
/// strategies built from flags.
pub fn flag_for_field(field: &str) -> Option<&'static str> {
    let path = field.strip_prefix("strategy.")?;
    // `rules[1].hash.to` → `rules`, `hash`, `to`.
    let mut parts = path
        .split(['.', '['])
        .filter(|p| !p.is_empty() && !p.ends_with(']'));
    let flag = match (parts.next()?, parts.next()) {
        ("weights", _) => "--steps",
        ("linear", _) => "--linear",
        ("pause_secs", _) => "--pause",
        ("rules", Some("header")) => "--header",
        ("rules", Some("cookie")) => "--cookie",
        ("rules", Some("query")) => "--query",
        ("rules", Some("hash")) => "--hash",
        ("rules", _) => "--header, --cookie, --query or --hash",
        ("weight", _) => "--weight",
        ("sticky", _) => "--sticky-header or --sticky-cookie",
        ("batches", _) => "--batches",
        ("interval_secs", _) => "--interval",
        ("min_available", _) => "--min-available",
        ("preview_host", _) => "--preview-host",
        ("auto_promote_secs", _) => "--auto-promote",
        ("keep_old_secs", _) => "--keep-old",
        ("analysis", Some("interval_secs")) => "--analysis-interval",
        ("analysis", Some("success_rate_percent")) => "--success-rate",
        ("analysis", Some("p99_max_ms")) => "--p99-max-ms",
        ("analysis", Some("p99_max_factor")) => "--p99-factor",
        ("analysis", Some("min_requests")) => "--min-requests",
        ("analysis", Some("insufficient")) => "--insufficient",
        ("analysis", Some("failure_limit")) => "--failure-limit",
        _ => return None,
    };
    Some(flag)
}

/// A duration in whole seconds: `30s`, `10m`, `1h`, `1h30m` or plain seconds (`90`).
pub fn parse_secs(s: &str) -> Result<u32, String> {
    let s = s.trim();
    let hint = "expected a duration like 30s, 10m, 1h or plain seconds";
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| format!("{s:?} is too large"));
    }
    let d = logs::parse_duration(s).map_err(|why| format!("{why}; {hint}"))?;
    let ms = d.num_milliseconds();
    if ms % 1000 != 0 {
        return Err(format!("{s:?} is not a whole number of seconds"));
    }
    u32::try_from(ms / 1000).map_err(|_| format!("{s:?} is too large"))
}

fn parse_pause(s: &str) -> Result<Pause, String> {
    match s.trim() {
        "indefinite" => Ok(Pause::Indefinite),
        other => parse_secs(other)
            .map(Pause::Secs)
            .map_err(|why| format!("{why}, or indefinite")),
    }
}

/// A traffic weight of a step: 1–100 percent.
fn parse_weight(s: &str) -> Result<u32, String> {
    let s = s.trim();
    match s.parse::<u32>() {
        Ok(w @ 1..=100) => Ok(w),
        _ => Err(format!("{s:?}: weights must be 1–100")),
    }
}

fn parse_linear(s: &str) -> Result<LinearSteps, String> {
    let Some((step, up_to)) = s.split_once(':') else {
        return Err(format!("{s:?} is not STEP:UP_TO, e.g. 20:60"));
    };
    Ok(LinearSteps {
        step: parse_weight(step)?,
        up_to: parse_weight(up_to)?,
    })
}

fn parse_percent(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
        _ => Err(format!("{s:?}: a percentage must be 0–100")),
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

/// `NAME=VALUE`; the value may be empty, the name may not.
fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.trim().is_empty() => {
            Ok((name.trim().to_owned(), value.to_owned()))
        }
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// `header:NAME:FROM-TO` or `cookie:NAME:FROM-TO`, with `FROM` in 0–99 and `TO` in 1–100.
fn parse_hash(s: &str) -> Result<HashRange, String> {
    let form = "expected header:NAME:FROM-TO or cookie:NAME:FROM-TO, e.g. header:x-user-id:0-10";
    let mut parts = s.splitn(3, ':');
    let (Some(source), Some(name), Some(range)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("{s:?}: {form}"));
    };
    if name.is_empty() {
        return Err(format!("{s:?} names no header or cookie; {form}"));
    }
    let (header, cookie) = match source {
        "header" => (Some(name.to_owned()), None),
        "cookie" => (None, Some(name.to_owned())),
        _ => return Err(format!("{s:?}: {form}")),
    };
    let bounds = range
        .split_once('-')
        .and_then(|(from, to)| Some((from.parse::<u32>().ok()?, to.parse::<u32>().ok()?)));
    let Some((from, to)) = bounds else {
        return Err(format!("{s:?}: the range {range:?} is not FROM-TO; {form}"));
    };
    if from > 99 || !(1..=100).contains(&to) || from >= to {
        return Err(format!(
            "{s:?}: the range must be FROM-TO with 0 ≤ FROM < TO ≤ 100"
        ));
    }
    Ok(HashRange {
        header,
        cookie,
        from,
        to,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;
    use tideway_api_types::Strategy;

    use super::*;

    #[derive(Parser, Debug)]
    struct Flags {
        #[command(flatten)]
        strategy: StrategyArgs,
    }

    fn flags(args: &str) -> Result<StrategyArgs, String> {
        let words = std::iter::once("tideway").chain(args.split_whitespace());
        Flags::try_parse_from(words)
            .map(|f| f.strategy)
            .map_err(|e| e.to_string())
    }

    /// The strategy JSON of `args`, checked to read as the wire type.
    fn check(args: &str, expect: Value) {
        let built = flags(args).unwrap().build().unwrap();
        assert_eq!(built, Some(expect.clone()), "{args}");
        serde_json::from_value::<Strategy>(expect)
            .unwrap_or_else(|e| panic!("{args}: not a wire strategy: {e}"));
    }

    fn error(args: &str) -> String {
        match flags(args) {
            Err(parse) => parse,
            Ok(f) => f.build().unwrap_err().to_string(),
        }
    }

    #[test]
    fn no_flags_leave_the_strategy_to_the_server() {
        assert_eq!(flags("").unwrap().build().unwrap(), None);
        check("--strategy immediate", json!({"type": "immediate"}));
    }

    #[test]
    fn canary_shorthands() {
        check(
            "--strategy canary --steps 20,50,80",
            json!({"type": "canary", "weights": [20, 50, 80]}),
        );
        check(
            "--strategy canary --steps 10 --steps 30 --pause 30s",
            json!({"type": "canary", "weights": [10, 30], "pause_secs": 30}),
        );
        check(
            "--strategy canary --linear 20:60 --pause indefinite",
            json!({"type": "canary", "linear": {"step": 20, "up_to": 60}}),
        );
    }

    #[test]
    fn analysis_flags_fill_only_what_was_given() {
        check(
            "--strategy canary --steps 50 --pause 1m --analysis-interval 10s --success-rate 99.5 \
             --p99-max-ms 500 --p99-factor 1.5 --min-requests 20 --insufficient fail \
             --failure-limit 3",
            json!({"type": "canary", "weights": [50], "pause_secs": 60, "analysis": {
                "interval_secs": 10, "success_rate_percent": 99.5, "p99_max_ms": 500.0,
                "p99_max_factor": 1.5, "min_requests": 20, "insufficient": "fail",
                "failure_limit": 3}}),
        );
        check(
            "--strategy blue-green --analysis",
            json!({"type": "blue_green", "analysis": {}}),
        );
    }

    #[test]
    fn gray_rules_weight_and_stickiness() {
        check(
            "--strategy gray --header x-beta=1 --header x-team=core --cookie tier=gold \
             --query canary=yes --hash header:x-user-id:0-10 --weight 5 \
             --sticky-cookie session --pause 10m",
            json!({"type": "gray", "rules": [
                {"header": {"name": "x-beta", "exact": "1"}},
                {"header": {"name": "x-team", "exact": "core"}},
                {"cookie": {"name": "tier", "value": "gold"}},
                {"query": {"name": "canary", "value": "yes"}},
                {"hash": {"header": "x-user-id", "from": 0, "to": 10}},
            ], "weight": 5, "sticky": {"cookie": "session"}, "pause_secs": 600}),
        );
        check(
            "--strategy gray --hash cookie:uid:90-100 --sticky-header x-user",
            json!({"type": "gray", "rules": [{"hash": {"cookie": "uid", "from": 90, "to": 100}}],
                   "sticky": {"header": "x-user"}}),
        );
    }

    #[test]
    fn batch_and_blue_green() {
        check(
            "--strategy batch --batches 3 --interval 30s --min-available 2 --beta",
            json!({"type": "batch", "batches": 3, "interval_secs": 30, "min_available": 2,
                   "beta": true}),
        );
        check(
            "--strategy batch --batches 2",
            json!({"type": "batch", "batches": 2}),
        );
        check(
            "--strategy blue-green --preview-host preview.example.com --auto-promote 60s \
             --keep-old 10m",
            json!({"type": "blue_green", "preview_host": "preview.example.com",
                   "auto_promote_secs": 60, "keep_old_secs": 600}),
        );
    }

    #[test]
    fn json_escape_hatch_is_sent_as_is() {
        let raw = r#"{"type":"canary","steps":[{"set_weight":5},{"pause":{}}],"future":1}"#;
        let f = StrategyArgs {
            strategy_json: Some(raw.to_owned()),
            ..StrategyArgs::default()
        };
        assert!(!f.uses_flags());
        assert_eq!(
            f.build().unwrap(),
            Some(serde_json::from_str::<Value>(raw).unwrap())
        );

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("s.json");
        std::fs::write(&file, r#"{"type": "batch", "batches": 4}"#).unwrap();
        let f = StrategyArgs {
            strategy_file: Some(file),
            ..StrategyArgs::default()
        };
        assert_eq!(
            f.build().unwrap(),
            Some(json!({"type": "batch", "batches": 4}))
        );
    }

    #[test]
    fn flag_errors_are_specific() {
        for (args, expect) in [
            (
                "--strategy canary --steps 20,110",
                "\"110\": weights must be 1–100",
            ),
            ("--strategy canary --steps 0", "weights must be 1–100"),
            ("--strategy canary --linear 20", "is not STEP:UP_TO"),
            (
                "--strategy canary --steps 20 --linear 20:60",
                "cannot be used with",
            ),
            (
                "--strategy canary",
                "--strategy canary needs --steps or --linear",
            ),
            (
                "--strategy canary --steps 20 --pause soon",
                "expected a duration",
            ),
            (
                "--strategy canary --steps 20 --success-rate 101",
                "must be 0–100",
            ),
            (
                "--strategy canary --steps 20 --p99-factor 0",
                "not a positive number",
            ),
            ("--strategy batch", "--strategy batch needs --batches N"),
            ("--strategy batch --batches 0", "0 is not in 1..=100"),
            ("--strategy gray --weight 101", "101 is not in 0..=100"),
            ("--strategy gray --header x-beta", "is not NAME=VALUE"),
            (
                "--strategy gray --hash header:x:10-10",
                "0 ≤ FROM < TO ≤ 100",
            ),
            (
                "--strategy gray --hash query:x:0-10",
                "expected header:NAME:FROM-TO",
            ),
            ("--strategy gray --hash header:x:a-b", "is not FROM-TO"),
            (
                "--strategy gray --sticky-header a --sticky-cookie b",
                "cannot be used with",
            ),
            ("--steps 20,50", "--steps needs --strategy canary"),
            ("--pause 30s", "--pause needs --strategy canary or gray"),
            (
                "--success-rate 99",
                "--success-rate needs --strategy canary, gray, batch or blue-green",
            ),
            (
                "--strategy canary --steps 20 --batches 3",
                "--batches does not apply to --strategy canary; it is for batch",
            ),
            (
                "--strategy immediate --analysis",
                "--analysis does not apply to --strategy immediate",
            ),
            (
                "--strategy-json {} --strategy canary",
                "--strategy-json replaces --strategy canary",
            ),
            (
                "--strategy-json {} --steps 20",
                "--steps cannot be combined with --strategy-json",
            ),
            ("--strategy-json [1]", "must be a JSON object"),
            ("--strategy-json {", "--strategy-json is not JSON"),
            (
                "--strategy-json {} --strategy-file f",
                "cannot be used with",
            ),
        ] {
            let err = error(args);
            assert!(err.contains(expect), "{args}: {err}");
        }
    }

    #[test]
    fn durations() {
        for (text, secs) in [
            ("30", 30),
            ("0", 0),
            (" 45 ", 45),
            ("30s", 30),
            ("10m", 600),
            ("1h", 3600),
            ("1h30m", 5400),
            ("2000ms", 2),
        ] {
            assert_eq!(parse_secs(text), Ok(secs), "{text}");
        }
        for (bad, why) in [
            ("", "empty value"),
            (
                "ten",
                "expected a duration like 30s, 10m, 1h or plain seconds",
            ),
            ("5 minutes", "expected a duration"),
            ("1w", "unknown unit"),
            ("1500ms", "not a whole number of seconds"),
            ("99999999999", "too large"),
            ("9999999h", "too large"),
        ] {
            let err = parse_secs(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert_eq!(parse_pause("indefinite"), Ok(Pause::Indefinite));
        assert_eq!(parse_pause("2m"), Ok(Pause::Secs(120)));
        assert!(parse_pause("later").unwrap_err().ends_with("or indefinite"));
    }

    #[test]
    fn refused_fields_map_back_to_flags() {
        for (field, flag) in [
            ("strategy.weights", Some("--steps")),
            ("strategy.weights[2]", Some("--steps")),
            ("strategy.rules[1].hash.to", Some("--hash")),
            (
                "strategy.rules",
                Some("--header, --cookie, --query or --hash"),
            ),
            (
                "strategy.analysis.interval_secs",
                Some("--analysis-interval"),
            ),
            ("strategy.analysis.p99_max_factor", Some("--p99-factor")),
            ("strategy.keep_old_secs", Some("--keep-old")),
            ("strategy.steps[0].pause", None),
            ("target_version", None),
        ] {
            assert_eq!(flag_for_field(field), flag, "{field}");
        }
    }

    #[test]
    fn lists_of_strategies_read_well() {
        assert_eq!(one_of(&[Kind::Canary]), "canary");
        assert_eq!(one_of(&[Kind::Canary, Kind::Gray]), "canary or gray");
        assert_eq!(one_of(ANALYZED), "canary, gray, batch or blue-green");
    }
}
