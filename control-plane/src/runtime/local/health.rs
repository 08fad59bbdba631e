//! Health probes: an HTTP GET or a TCP connect against an instance's port.

use std::time::Duration;

use tideway_api_types::HealthCheck;

/// How often a not-yet-ready instance is probed, so a (re)started instance is ready fast.
pub(crate) const STARTING_INTERVAL: Duration = Duration::from_millis(100);

/// The HTTP client for probes: no proxy (the app is on loopback), no redirects (a 3xx is an
/// answer, and healthy), no pooled connections (each probe checks that the app accepts).
pub(crate) fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .build()
}

/// Whether the health check is anything more than "the process runs".
pub(crate) fn has_probe(health: &HealthCheck) -> bool {
    health.http.is_some() || health.tcp
}

/// Probes once. `Err` says what failed, for the instance message and events.
pub(crate) async fn probe(
    client: &reqwest::Client,
    health: &HealthCheck,
    port: u16,
) -> Result<(), String> {
    let timeout = Duration::from_millis(u64::from(health.timeout_ms.max(1)));
    if let Some(path) = &health.http {
        let path = if path.starts_with('/') {
            path.clone()
        } else {
            format!("/{path}")
        };
        let url = format!("http://127.0.0.1:{port}{path}");
        let response = client
            .get(&url)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| format!("GET {path}: {}", describe(&e)))?;
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("GET {path}: status {}", status.as_u16()))
        }
    } else if health.tcp {
        match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(("127.0.0.1", port)))
            .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("connect to port {port}: {e}")),
            Err(_) => Err(format!("connect to port {port}: timed out")),
        }
    } else {
        Ok(())
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        e.to_string()
    }
}
