//! Health checking and the registry's time-driven upkeep.
//!
//! [`Upkeep::step`] does one round: [`Registry::tick`] (TTL expiry, reaping, lease
//! eviction, delta pruning) and starting every HTTP/TCP check that is due. Check runs are
//! spawned so a slow target never delays the others; their results go back into the
//! registry. [`Upkeep::run`] owns the cadence and shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::model::{CheckJob, CheckKind, CheckResult, CheckStatus, Registry, TickOutcome};

/// How much of an HTTP check's response body becomes its output (Consul: 4 KiB).
const OUTPUT_MAX: usize = 4096;

/// Runs HTTP and TCP checks.
#[derive(Debug, Clone)]
pub struct Checker {
    http: Option<reqwest::Client>,
    http_insecure: Option<reqwest::Client>,
}

fn http_client(insecure: bool) -> Option<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(10))
        .danger_accept_invalid_certs(insecure)
        .user_agent("Consul Health Check")
        .build()
        .map_err(|error| tracing::warn!(%error, "RegistryCheckClientError"))
        .ok()
}

impl Default for Checker {
    fn default() -> Self {
        Self::new()
    }
}

impl Checker {
    /// A checker with its HTTP clients.
    pub fn new() -> Self {
        Self {
            http: http_client(false),
            http_insecure: http_client(true),
        }
    }

    /// Runs one check to completion (bounded by its timeout).
    pub(crate) async fn run(&self, kind: &CheckKind, timeout: Duration) -> CheckResult {
        match kind {
            CheckKind::Http {
                url,
                method,
                headers,
                body,
                tls_skip_verify,
            } => {
                let client = if *tls_skip_verify {
                    &self.http_insecure
                } else {
                    &self.http
                };
                let Some(client) = client else {
                    return critical("HTTP client unavailable".into());
                };
                self.http(client, url, method, headers, body.as_deref(), timeout)
                    .await
            }
            CheckKind::Tcp { address } => {
                match tokio::time::timeout(timeout, TcpStream::connect(address.as_str())).await {
                    Ok(Ok(_)) => CheckResult {
                        status: CheckStatus::Passing,
                        output: format!("TCP connect {address}: Success"),
                    },
                    Ok(Err(e)) => critical(format!("dial tcp {address}: {e}")),
                    Err(_) => critical(format!("dial tcp {address}: i/o timeout")),
                }
            }
            CheckKind::Ttl { .. } => critical("TTL checks are not run".into()),
        }
    }

    async fn http(
        &self,
        client: &reqwest::Client,
        url: &str,
        method: &str,
        headers: &std::collections::BTreeMap<String, Vec<String>>,
        body: Option<&str>,
        timeout: Duration,
    ) -> CheckResult {
        let Ok(method_value) = reqwest::Method::from_bytes(method.as_bytes()) else {
            return critical(format!("invalid method {method}"));
        };
        let mut request = client.request(method_value, url).timeout(timeout);
        for (name, values) in headers {
            for value in values {
                request = request.header(name.as_str(), value.as_str());
            }
        }
        if let Some(body) = body {
            request = request.body(body.to_owned());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => return critical(format!("Get \"{url}\": {e}")),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let mut cut = text.len().min(OUTPUT_MAX);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        let output = format!(
            "HTTP {method} {url}: {} Output: {}",
            status,
            text.get(..cut).unwrap_or("")
        );
        let status = if status.is_success() {
            CheckStatus::Passing
        } else if status.as_u16() == 429 {
            CheckStatus::Warning
        } else {
            CheckStatus::Critical
        };
        CheckResult { status, output }
    }
}

fn critical(output: String) -> CheckResult {
    CheckResult {
        status: CheckStatus::Critical,
        output,
    }
}

/// The registry's background work: ticks and health checks.
pub struct Upkeep {
    registry: Arc<Registry>,
    checker: Checker,
    running: JoinSet<()>,
}

/// What one [`Upkeep::step`] did.
#[derive(Debug, Default)]
pub struct StepOutcome {
    /// Time-driven registry changes.
    pub tick: TickOutcome,
    /// HTTP/TCP checks started.
    pub checks_started: usize,
}

impl Upkeep {
    /// Upkeep for a registry.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self {
            registry,
            checker: Checker::new(),
            running: JoinSet::new(),
        }
    }

    /// One round: tick the registry and start the checks that are due.
    pub fn step(&mut self) -> StepOutcome {
        while self.running.try_join_next().is_some() {}
        let tick = self.registry.tick();
        let jobs = self.registry.due_checks();
        let checks_started = jobs.len();
        for CheckJob {
            service_id,
            check_id,
            kind,
            timeout,
        } in jobs
        {
            let registry = Arc::clone(&self.registry);
            let checker = self.checker.clone();
            self.running.spawn(async move {
                let result = checker.run(&kind, timeout).await;
                registry.record_check_result(&service_id, &check_id, result);
            });
        }
        StepOutcome {
            tick,
            checks_started,
        }
    }

    /// Steps every `period` until `shutdown`, then stops the checks in flight.
    pub async fn run(mut self, period: Duration, shutdown: CancellationToken) {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    let outcome = self.step();
                    if !outcome.tick.evicted.is_empty() || !outcome.tick.reaped.is_empty() {
                        tracing::info!(
                            evicted = outcome.tick.evicted.len(),
                            reaped = outcome.tick.reaped.len(),
                            "RegistryUpkeepStepped"
                        );
                    }
                }
                () = shutdown.cancelled() => break,
            }
        }
        self.running.shutdown().await;
    }
}
