//! `tideway-bench-api` measures the throughput and latency of Tideway's REST API.
//!
//! It drives an already running Tideway server over HTTP with N concurrent clients
//! (`--concurrency`, default 32) that share one keep-alive connection pool. Each phase runs
//! for `--duration` seconds (default 10):
//!
//! - `writes`: every client loops `POST /api/v1/namespaces/{ns}/apps` with a fresh app
//!   `b-<run-id>-<client>-<seq>` and expects `201 Created`;
//! - `reads`: one app `r-<run-id>` is created during setup, then every client loops
//!   `GET /api/v1/namespaces/{ns}/apps/r-<run-id>` and expects `200 OK`.
//!
//! For each phase it prints one line: successful requests per second, p50 and p99 latency of
//! the successful requests, and the error count (any other status, non-2xx included, or a
//! transport error; the first few are printed with status and body). It ends with a verdict
//! against the targets: reads ≥ 5,000 req/s, writes ≥ 1,000 req/s, p99 < 20 ms.
//!
//! The bench shares the machine's cores with the server, so by default it runs its clients
//! on a single-threaded tokio runtime (`--client-threads 1`); more threads use a
//! multi-threaded runtime with that many workers.
//!
//! It exits non-zero only when setup fails (bad arguments, server unreachable, the read app
//! cannot be created): a missed target is a result, not a failure.
//!
//! Run it against every backend with `bench/api.sh`, which builds the binaries, starts a
//! server per backend on a fresh data directory and passes its own arguments on to the bench.
//! By hand, against a server you started:
//!
//! ```text
//! TIDEWAY_TOKEN="$(cat DATA_DIR/admin-token)" \
//!   cargo run --release -p tideway-bench-api -- --url http://127.0.0.1:7070 --label sqlite
//! ```

use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use reqwest::{Client, RequestBuilder, StatusCode};
use serde_json::json;
use tideway_api_types::name::dns_label_error;
use tideway_api_types::App;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Target throughput of the `reads` phase, in successful requests per second.
const READS_TARGET_RPS: f64 = 5_000.0;
/// Target throughput of the `writes` phase, in successful requests per second.
const WRITES_TARGET_RPS: f64 = 1_000.0;
/// Target p99 latency of every phase, in milliseconds.
const P99_TARGET_MS: f64 = 20.0;
/// How many failed requests per phase are printed in full.
const PRINTED_ERRORS: usize = 5;
/// How much of an error body is printed.
const PRINTED_BODY_CHARS: usize = 300;

#[derive(Debug, Parser)]
#[command(
    name = "tideway-bench-api",
    version,
    about = "Load benchmark of a running Tideway server's REST API (app writes and reads)"
)]
struct Args {
    /// Base URL of the running Tideway API.
    #[arg(long, default_value = "http://127.0.0.1:7070")]
    url: String,

    /// API token, sent as `Authorization: Bearer <token>`.
    #[arg(long, env = "TIDEWAY_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Number of concurrent clients.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    concurrency: u32,

    /// Seconds each phase runs.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    duration: u64,

    /// Name of the backend under test, used to label every output line.
    #[arg(long, default_value = "api")]
    label: String,

    /// Namespace the apps are created in.
    #[arg(long, default_value = "default")]
    namespace: String,

    /// Tokio threads driving the clients: 1 is a current-thread runtime, more a multi-threaded
    /// one. Keep it low when the server runs on the same cores.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=256))]
    client_threads: u32,

    /// Phases to run, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "writes,reads"
    )]
    phases: Vec<Phase>,

    /// Per-request timeout in seconds; a timed-out request counts as an error.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=600))]
    request_timeout: u64,

    /// Identifier embedded in app names (a DNS-label fragment); defaults to one derived from
    /// the clock and the process id.
    #[arg(long)]
    run_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Phase {
    Writes,
    Reads,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Writes => "writes",
            Phase::Reads => "reads",
        }
    }

    fn expected_status(self) -> StatusCode {
        match self {
            Phase::Writes => StatusCode::CREATED,
            Phase::Reads => StatusCode::OK,
        }
    }
}

/// What every client task needs; shared read-only.
struct Bench {
    client: Client,
    label: String,
    run_id: String,
    concurrency: u32,
    duration: Duration,
    /// `{base}/api/v1/namespaces/{ns}/apps`.
    apps_url: String,
    /// `{apps_url}/r-<run-id>`.
    read_url: String,
}

/// Counts of one client, or of a whole phase once merged.
#[derive(Default)]
struct Stats {
    ok: u64,
    errors: u64,
    /// Latency of each successful request, in microseconds.
    latencies_us: Vec<u32>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.latencies_us.extend(other.latencies_us);
    }
}

/// The figures of one finished phase.
struct PhaseReport {
    phase: Phase,
    rps: f64,
    p50_ms: Option<f64>,
    p99_ms: Option<f64>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match build_runtime(args.client_threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tideway-bench-api: setup failed: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tideway-bench-api: setup failed: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn build_runtime(threads: u32) -> Result<tokio::runtime::Runtime> {
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads as usize);
        builder
    };
    builder
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

async fn run(args: Args) -> Result<()> {
    let base = args.url.trim_end_matches('/').to_owned();
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        bail!("--url must start with http:// or https://, got {base:?}");
    }
    if let Some(reason) = dns_label_error(&args.namespace) {
        bail!(
            "--namespace {:?} is not a DNS label: {reason}",
            args.namespace
        );
    }
    let run_id = args.run_id.clone().unwrap_or_else(default_run_id);
    // The longest name the writes phase can produce: the last client at a 10-digit sequence.
    let longest_write = format!("b-{run_id}-{}-9999999999", args.concurrency - 1);
    for name in [format!("r-{run_id}"), longest_write] {
        if let Some(reason) = dns_label_error(&name) {
            bail!(
                "--run-id {run_id:?} gives app name {name:?}, which is not a DNS label: {reason}"
            );
        }
    }
    if args.token.is_none() {
        eprintln!("tideway-bench-api: no --token or TIDEWAY_TOKEN; sending requests without one");
    }

    let client = build_client(&args)?;
    let apps_url = format!("{base}/api/v1/namespaces/{}/apps", args.namespace);
    let bench = Arc::new(Bench {
        client,
        label: args.label.clone(),
        read_url: format!("{apps_url}/r-{run_id}"),
        apps_url,
        run_id,
        concurrency: args.concurrency,
        duration: Duration::from_secs(args.duration),
    });

    let runtime = if args.client_threads == 1 {
        "a current-thread tokio runtime (1 client thread)".to_owned()
    } else {
        format!(
            "a multi-threaded tokio runtime ({} client threads)",
            args.client_threads
        )
    };
    println!(
        "tideway-bench-api: {} against {base}, namespace {}, run {}: {} clients on {runtime}, \
         sharing the cores with the server; {} s per phase",
        bench.label, args.namespace, bench.run_id, bench.concurrency, args.duration
    );

    check_health(&bench.client, &base).await?;
    if args.phases.contains(&Phase::Reads) {
        create_read_app(&bench).await?;
    }

    let mut reports = Vec::new();
    for &phase in &args.phases {
        let report = run_phase(&bench, phase).await?;
        reports.push(report);
    }
    print_verdict(&bench.label, &reports);
    Ok(())
}

/// A name fragment unique per run: the low 32 bits of the Unix time and 16 bits of the pid.
fn default_run_id() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("{:08x}{:04x}", secs as u32, std::process::id() & 0xffff)
}

/// One client shared by every task: one keep-alive pool sized for the concurrency.
fn build_client(args: &Args) -> Result<Client> {
    let mut headers = HeaderMap::new();
    if let Some(token) = &args.token {
        let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
            .context("the token is not a valid HTTP header value")?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    Client::builder()
        .default_headers(headers)
        .user_agent(concat!("tideway-bench-api/", env!("CARGO_PKG_VERSION")))
        .pool_max_idle_per_host(args.concurrency as usize)
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .tcp_keepalive(Duration::from_secs(60))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(args.request_timeout))
        .no_proxy()
        .build()
        .context("building the HTTP client")
}

async fn check_health(client: &Client, base: &str) -> Result<()> {
    let url = format!("{base}/healthz");
    let (status, body) = send(client.get(&url))
        .await
        .with_context(|| format!("GET {url}: is the server running?"))?;
    if !status.is_success() {
        bail!("GET {url} answered {status}: {}", excerpt(&body));
    }
    Ok(())
}

/// Creates the app the reads phase fetches and checks that it reads back as an [`App`].
async fn create_read_app(bench: &Bench) -> Result<()> {
    let name = format!("r-{}", bench.run_id);
    let request = bench
        .client
        .post(&bench.apps_url)
        .json(&json!({ "name": name, "replicas": 1 }));
    let (status, body) = send(request)
        .await
        .with_context(|| format!("POST {} (creating {name})", bench.apps_url))?;
    // 409: a rerun with the same --run-id; the app is there, which is all the phase needs.
    if status != StatusCode::CREATED && status != StatusCode::CONFLICT {
        bail!(
            "POST {} (creating {name}) answered {status}, expected 201: {}",
            bench.apps_url,
            excerpt(&body)
        );
    }

    let (status, body) = send(bench.client.get(&bench.read_url))
        .await
        .with_context(|| format!("GET {}", bench.read_url))?;
    if status != StatusCode::OK {
        bail!(
            "GET {} answered {status}, expected 200: {}",
            bench.read_url,
            excerpt(&body)
        );
    }
    let app: App = serde_json::from_slice(&body)
        .with_context(|| format!("GET {} did not return an app", bench.read_url))?;
    if app.name != name {
        bail!(
            "GET {} returned app {:?}, expected {name:?}",
            bench.read_url,
            app.name
        );
    }
    Ok(())
}

/// Sends a request and reads the whole body, so the connection goes back to the pool.
async fn send(request: RequestBuilder) -> Result<(StatusCode, Vec<u8>)> {
    let response = request.send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    Ok((status, body.to_vec()))
}

/// Runs one phase: `concurrency` clients loop until the deadline, then the figures are merged
/// and printed.
async fn run_phase(bench: &Arc<Bench>, phase: Phase) -> Result<PhaseReport> {
    let printed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + bench.duration;
    let mut clients = JoinSet::new();
    for index in 0..bench.concurrency {
        clients.spawn(client_loop(
            Arc::clone(bench),
            phase,
            index,
            deadline,
            Arc::clone(&printed),
        ));
    }
    let mut stats = Stats::default();
    while let Some(joined) = clients.join_next().await {
        stats.merge(joined.with_context(|| format!("a {} client task failed", phase.name()))?);
    }
    // Up to the last response, so requests still in flight at the deadline are counted fairly.
    let elapsed = start.elapsed().as_secs_f64();

    stats.latencies_us.sort_unstable();
    let report = PhaseReport {
        phase,
        rps: stats.ok as f64 / elapsed,
        p50_ms: percentile_ms(&stats.latencies_us, 0.50),
        p99_ms: percentile_ms(&stats.latencies_us, 0.99),
    };
    println!(
        "{} {}: {:.1} req/s, p50 {}, p99 {}, errors {} ({} clients, {} s)",
        bench.label,
        phase.name(),
        report.rps,
        format_ms(report.p50_ms),
        format_ms(report.p99_ms),
        stats.errors,
        bench.concurrency,
        bench.duration.as_secs(),
    );
    Ok(report)
}

/// One client: sends its phase's request back to back until the deadline.
async fn client_loop(
    bench: Arc<Bench>,
    phase: Phase,
    index: u32,
    deadline: Instant,
    printed: Arc<AtomicUsize>,
) -> Stats {
    let mut stats = Stats {
        latencies_us: Vec::with_capacity(4096),
        ..Stats::default()
    };
    let expected = phase.expected_status();
    let mut seq: u64 = 0;
    while Instant::now() < deadline {
        let request = match phase {
            Phase::Writes => {
                let name = format!("b-{}-{index}-{seq}", bench.run_id);
                seq += 1;
                bench
                    .client
                    .post(&bench.apps_url)
                    .json(&json!({ "name": name, "replicas": 1 }))
            }
            Phase::Reads => bench.client.get(&bench.read_url),
        };
        let began = Instant::now();
        let outcome = exchange(request, expected).await;
        let took = began.elapsed();
        match outcome {
            Ok(None) => {
                stats.ok += 1;
                stats
                    .latencies_us
                    .push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX));
            }
            Ok(Some((status, body))) => {
                stats.errors += 1;
                if printed.fetch_add(1, Ordering::Relaxed) < PRINTED_ERRORS {
                    eprintln!(
                        "{} {} error: HTTP {status} (expected {expected}): {body}",
                        bench.label,
                        phase.name()
                    );
                }
            }
            Err(error) => {
                stats.errors += 1;
                if printed.fetch_add(1, Ordering::Relaxed) < PRINTED_ERRORS {
                    eprintln!("{} {} error: {error:#}", bench.label, phase.name());
                }
            }
        }
    }
    stats
}

/// The hot-path exchange: `None` when the expected status came back, otherwise the status and
/// an excerpt of the body. Success bodies are read to the end but not copied.
async fn exchange(
    request: RequestBuilder,
    expected: StatusCode,
) -> Result<Option<(StatusCode, String)>> {
    let response = request.send().await.context("sending the request")?;
    let status = response.status();
    let body = response.bytes().await.context("reading the response")?;
    if status == expected {
        Ok(None)
    } else {
        Ok(Some((status, excerpt(&body))))
    }
}

/// Nearest-rank percentile of sorted microsecond latencies, in milliseconds.
fn percentile_ms(sorted_us: &[u32], quantile: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = (quantile * sorted_us.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_us.len()) - 1;
    Some(f64::from(sorted_us[index]) / 1_000.0)
}

fn format_ms(ms: Option<f64>) -> String {
    match ms {
        None => "n/a".to_owned(),
        Some(ms) if ms < 1.0 => format!("{ms:.2} ms"),
        Some(ms) => format!("{ms:.1} ms"),
    }
}

/// The start of a body, on one line, for error messages.
fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    let mut out: String = text
        .chars()
        .take(PRINTED_BODY_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().count() > PRINTED_BODY_CHARS {
        out.push('…');
    }
    out
}

/// Prints one line judging the phases that ran against the targets.
fn print_verdict(label: &str, reports: &[PhaseReport]) {
    let rps_verdict = |phase: Phase, target: f64| -> String {
        match reports.iter().find(|r| r.phase == phase) {
            None => format!("{} n/a (not run)", phase.name()),
            Some(report) => {
                let (word, cmp) = if report.rps >= target {
                    ("PASS", ">=")
                } else {
                    ("MISS", "<")
                };
                format!(
                    "{} {word} ({:.1} req/s {cmp} {target:.0})",
                    phase.name(),
                    report.rps
                )
            }
        }
    };
    // The worst p99 of the phases that had any successful request.
    let worst = reports
        .iter()
        .filter_map(|r| r.p99_ms.map(|p99| (r.phase, p99)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let p99 = match worst {
        None => "p99 n/a (no successful request)".to_owned(),
        Some((phase, p99)) => {
            let (word, cmp) = if p99 < P99_TARGET_MS {
                ("PASS", "<")
            } else {
                ("MISS", ">=")
            };
            format!(
                "p99 {word} ({} in {} {cmp} {P99_TARGET_MS:.0} ms)",
                format_ms(Some(p99)),
                phase.name()
            )
        }
    };
    println!(
        "{label} verdict: {}, {}, {p99}",
        rps_verdict(Phase::Reads, READS_TARGET_RPS),
        rps_verdict(Phase::Writes, WRITES_TARGET_RPS),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted: Vec<u32> = (1..=100).map(|ms| ms * 1_000).collect();
        assert_eq!(percentile_ms(&sorted, 0.50), Some(50.0));
        assert_eq!(percentile_ms(&sorted, 0.99), Some(99.0));
        assert_eq!(percentile_ms(&[1_500], 0.99), Some(1.5));
        assert_eq!(percentile_ms(&[], 0.50), None);
    }

    #[test]
    fn default_names_are_dns_labels() {
        let run_id = default_run_id();
        assert_eq!(dns_label_error(&format!("r-{run_id}")), None);
        assert_eq!(
            dns_label_error(&format!("b-{run_id}-9999-9999999999")),
            None
        );
    }

    #[test]
    fn excerpts_are_one_bounded_line() {
        assert_eq!(excerpt(b""), "(empty body)");
        assert_eq!(excerpt(b"{\"error\":1}\n"), "{\"error\":1}");
        let long = "x".repeat(PRINTED_BODY_CHARS + 10);
        assert_eq!(
            excerpt(long.as_bytes()).chars().count(),
            PRINTED_BODY_CHARS + 1
        );
    }
}
