//! Outbound clients for real registries: a thin typed Consul client ([`consul`]) and an
//! Eureka client ([`eureka`]), both on one `reqwest` (rustls) stack.
//!
//! **Why hand-written clients.** The Consul client is a thin typed client on `reqwest`
//! 0.12 with rustls and `serde`, about a dozen endpoints. `consul-rs` pulls in libcurl and
//! OpenSSL through surf/isahc and has been unmaintained since 2021; `consul` (0.4) is a
//! blocking client on OpenSSL with no service registration; `rs-consul` is maintained but
//! has no `/v1/agent/*` endpoints (no agent service registration, no TTL check updates,
//! no maintenance) and does not read service `Meta`, all of which the bridge needs;
//! `consulrs` covers the endpoints but is unmaintained on the http 0.2 stack. Writing the
//! subset ourselves costs the same dependency weight as `rs-consul` (reqwest, rustls,
//! serde are already in the workspace), keeps one HTTP stack and no OpenSSL in the build,
//! and lets us read exactly the fields we rely on (`Meta`, checks, `X-Consul-Index`) and
//! send `X-Consul-Token` and `?dc=` the way Consul expects. No Rust Eureka client is
//! adequate either (`rust-eureka` has no renew, status override or delta; `eureka-client`
//! is a 2018 alpha), so the Eureka client is hand-written on the same stack, JSON only
//! (we always send `Accept: application/json`), lenient in what it reads (`port` as an
//! object or a number, `@enabled` as a string or a bool, one-element lists collapsed to
//! objects, `@class` metadata markers) and strict in what it writes.
//!
//! Both clients fail over between several configured addresses: a request starts at the
//! address that answered last and moves on when an address cannot be reached or answers
//! 5xx/429.

pub mod consul;
pub mod eureka;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::{RequestBuilder, Response, StatusCode, Url};
use serde::Serialize;

/// How long to wait for a TCP connection to a registry.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a non-blocking registry request may take.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of an error body is kept in an error.
const ERROR_BODY_MAX: usize = 512;

/// What went wrong talking to a registry. Variants are kinds; the connector backs off on
/// [`ClientError::is_transient`] ones and records the others per operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ClientError {
    /// No configured address answered, or the answer was 5xx/429.
    #[error("registry unavailable at {endpoint}: {reason}")]
    Unavailable {
        /// The last address tried.
        endpoint: String,
        /// Why it failed (transport error or status and body).
        reason: String,
    },
    /// 401 or 403: a wrong or missing ACL token or credentials.
    #[error("permission denied ({status}): {body}")]
    Denied {
        /// The HTTP status.
        status: u16,
        /// The response body, shortened.
        body: String,
    },
    /// 404: the instance, service or check does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Any other 4xx: the registry refused the request as malformed.
    #[error("rejected ({status}): {body}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The response body, shortened.
        body: String,
    },
    /// A 2xx response whose body could not be read.
    #[error("cannot decode the response of {endpoint}: {reason}")]
    Decode {
        /// The URL requested.
        endpoint: String,
        /// What did not parse.
        reason: String,
    },
    /// The client configuration is unusable (no address, a malformed URL).
    #[error("invalid registry client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// Whether retrying later may succeed without anything changing on our side (the
    /// registry is down or overloaded); the connector backs off on these.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// A stable machine-readable label for metrics and the API.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::Denied { .. } => "denied",
            Self::NotFound(_) => "not_found",
            Self::Rejected { .. } => "rejected",
            Self::Decode { .. } => "decode",
            Self::Config(_) => "config",
        }
    }
}

/// Characters left as they are in a path segment: RFC 3986 unreserved ones.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes one path segment (instance IDs carry `:` and `@`).
pub(crate) fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// The shared HTTP client: rustls, bounded connect and request times.
pub(crate) fn http_client() -> Result<reqwest::Client, ClientError> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!(
            "tideway-registry-bridge/",
            env!("CARGO_PKG_VERSION")
        ))
        .build()
        .map_err(|e| ClientError::Config(e.to_string()))
}

/// Several base URLs of one registry; requests start at the one that answered last.
#[derive(Debug)]
pub(crate) struct Failover {
    bases: Vec<Url>,
    current: AtomicUsize,
}

/// Whether an answer means "try the next address".
fn should_fail_over(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

impl Failover {
    pub(crate) fn new(bases: Vec<Url>) -> Result<Self, ClientError> {
        if bases.is_empty() {
            return Err(ClientError::Config("no registry address configured".into()));
        }
        Ok(Self {
            bases,
            current: AtomicUsize::new(0),
        })
    }

    pub(crate) fn bases(&self) -> &[Url] {
        &self.bases
    }

    /// The base URL requests start at.
    pub(crate) fn current(&self) -> &Url {
        let i = self.current.load(Ordering::Relaxed) % self.bases.len();
        &self.bases[i]
    }

    /// Sends the request built for each base in turn, from the current one, until one
    /// answers without a transport error or a 5xx/429. Returns that answer (or the last
    /// 5xx answer when every address gave one) and the URL it came from.
    pub(crate) async fn send(
        &self,
        build: impl Fn(&Url) -> Result<RequestBuilder, ClientError>,
    ) -> Result<(Url, Response), ClientError> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last_error = None;
        let mut last_response = None;
        for step in 0..self.bases.len() {
            let i = (start + step) % self.bases.len();
            let base = &self.bases[i];
            let request = build(base)?;
            match request.send().await {
                Ok(response) if should_fail_over(response.status()) => {
                    tracing::debug!(endpoint = %base, status = %response.status(), "RegistryClientFailover");
                    last_response = Some((response.url().clone(), response));
                }
                Ok(response) => {
                    if i != start {
                        tracing::info!(endpoint = %base, "RegistryClientEndpointChanged");
                        self.current.store(i, Ordering::Relaxed);
                    }
                    return Ok((response.url().clone(), response));
                }
                Err(error) => {
                    tracing::debug!(endpoint = %base, %error, "RegistryClientFailover");
                    last_error = Some(ClientError::Unavailable {
                        endpoint: base.to_string(),
                        reason: transport_reason(&error),
                    });
                }
            }
        }
        if let Some(answer) = last_response {
            return Ok(answer);
        }
        Err(last_error.unwrap_or_else(|| ClientError::Config("no registry address".into())))
    }
}

/// A short description of a transport error, with its innermost cause.
fn transport_reason(error: &reqwest::Error) -> String {
    let mut reason = if error.is_timeout() {
        "timed out".to_owned()
    } else if error.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(error);
    let mut innermost = None;
    while let Some(s) = source {
        innermost = Some(s.to_string());
        source = s.source();
    }
    if let Some(cause) = innermost {
        reason.push_str(": ");
        reason.push_str(&cause);
    }
    reason
}

/// Reads a body for an error message, shortened.
pub(crate) async fn error_body(response: Response) -> String {
    let mut body = response.text().await.unwrap_or_default();
    if body.len() > ERROR_BODY_MAX {
        let mut cut = ERROR_BODY_MAX;
        while !body.is_char_boundary(cut) {
            cut -= 1;
        }
        body.truncate(cut);
        body.push('…');
    }
    body.trim().to_owned()
}

/// Maps a non-2xx answer to an error kind.
pub(crate) async fn status_error(url: &Url, response: Response) -> ClientError {
    let status = response.status();
    let body = error_body(response).await;
    match status.as_u16() {
        401 | 403 => ClientError::Denied {
            status: status.as_u16(),
            body,
        },
        404 => ClientError::NotFound(if body.is_empty() {
            url.path().to_owned()
        } else {
            body
        }),
        s if should_fail_over(status) => ClientError::Unavailable {
            endpoint: url.to_string(),
            reason: format!("{s} {body}").trim().to_owned(),
        },
        s => ClientError::Rejected { status: s, body },
    }
}

/// Reads a 2xx body as JSON.
pub(crate) async fn json_body(
    url: &Url,
    response: Response,
) -> Result<serde_json::Value, ClientError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| ClientError::Unavailable {
            endpoint: url.to_string(),
            reason: transport_reason(&e),
        })?;
    serde_json::from_slice(&bytes).map_err(|e| ClientError::Decode {
        endpoint: url.to_string(),
        reason: e.to_string(),
    })
}

/// Parses an address that may lack a scheme (`host:port` means `http://host:port`), and
/// makes its path end with `/` so relative paths join under it.
pub(crate) fn base_url(raw: &str, default_path: &str) -> Result<Url, ClientError> {
    let raw = raw.trim();
    let with_scheme = if raw.contains("://") {
        raw.to_owned()
    } else {
        format!("http://{raw}")
    };
    let mut url =
        Url::parse(&with_scheme).map_err(|e| ClientError::Config(format!("{raw}: {e}")))?;
    if url.cannot_be_a_base() || url.host_str().is_none() {
        return Err(ClientError::Config(format!("{raw}: not an http(s) URL")));
    }
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::Config(format!(
            "{raw}: scheme must be http or https"
        )));
    }
    let path = url.path().to_owned();
    if path.is_empty() || path == "/" {
        url.set_path(default_path);
    } else if !path.ends_with('/') {
        url.set_path(&format!("{path}/"));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// Joins a relative path (already percent-encoded) under a base URL.
pub(crate) fn join(base: &Url, path: &str) -> Result<Url, ClientError> {
    base.join(path)
        .map_err(|e| ClientError::Config(format!("{base}{path}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_keep_unreserved_only() {
        assert_eq!(encode_segment("web-1_a.b~"), "web-1_a.b~");
        assert_eq!(
            encode_segment("10.0.0.5:order:8080@consul:dc1"),
            "10.0.0.5%3Aorder%3A8080%40consul%3Adc1"
        );
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn base_urls_gain_a_scheme_and_a_trailing_slash() {
        let u = base_url("127.0.0.1:8500", "/").unwrap();
        assert_eq!(u.as_str(), "http://127.0.0.1:8500/");
        let u = base_url("http://h:8761/eureka/v2", "/eureka/").unwrap();
        assert_eq!(u.as_str(), "http://h:8761/eureka/v2/");
        let u = base_url("http://h:8761", "/eureka/").unwrap();
        assert_eq!(u.as_str(), "http://h:8761/eureka/");
        assert!(base_url("ftp://h/", "/").is_err());
        assert_eq!(
            join(&base_url("http://h/eureka/", "/").unwrap(), "apps/ORDER")
                .unwrap()
                .as_str(),
            "http://h/eureka/apps/ORDER"
        );
    }
}
