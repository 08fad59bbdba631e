//! The request path: route, choose a version (holding the request while a scaled-to-zero
//! app is activated), choose a backend, rewrite headers, forward with a deadline and one
//! retry for idempotent bodiless requests whose attempt failed before any response header, stream the answer back, and tunnel WebSocket upgrades.
//!
//! Per request it does one atomic load of the compiled table, hash and prefix lookups,
//! relaxed atomics for load and metrics, and the allocations hyper needs to forward a
//! request (plus a header-map copy for requests that may be retried on another backend).
//! It never locks, and never awaits anything but the upstream and, for held requests, the
//! next table swap.

use std::borrow::Cow;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioIo;
use rand::Rng;
use tokio::sync::{mpsc, Notify};
use tokio::time::{timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::body::GatewayBody;
use crate::error::{error_response, wants_html, ErrorCode};
use crate::headers::{self, X_REQUEST_ID};
use crate::metrics::{Flight, GatewayMetrics, Held, SeriesStats};
use crate::pick::{pick_backend, pick_backend_excluding, pick_version, RequestFacts};
use crate::route::RouteTable;
use crate::server::{Activation, GatewayConfig};
use crate::table::{AppShared, BackendState, CompiledApp, CompiledTable};

/// At most one activation per app per this many milliseconds.
const ACTIVATION_GAP_MS: u64 = 500;
/// A held request asks again this often, in case an activation was lost.
const ACTIVATION_RESEND: Duration = Duration::from_secs(1);
/// Where the Prometheus text is served: only to clients connected over loopback that
/// name `localhost`, `127.0.0.1` or `[::1]` as the host, and only when no app claims that
/// exact host.
pub(crate) const METRICS_PATH: &str = "/__tideway/metrics";

/// State shared by every connection.
pub(crate) struct Shared {
    pub(crate) table: ArcSwap<CompiledTable>,
    /// Woken on every table swap (held requests wait on it).
    pub(crate) swapped: Notify,
    pub(crate) client: Client<HttpConnector, GatewayBody>,
    pub(crate) metrics: Arc<GatewayMetrics>,
    pub(crate) activations: mpsc::Sender<Activation>,
    pub(crate) config: GatewayConfig,
    /// WebSocket tunnels, stopped at the end of a drain.
    pub(crate) tunnels: TaskTracker,
    pub(crate) tunnel_stop: CancellationToken,
}

impl Shared {
    /// Compiles and publishes a new table, then wakes held requests.
    pub(crate) fn install(&self, table: &RouteTable) {
        let previous = self.table.load_full();
        let compiled = CompiledTable::compile(table, Some(&previous), &self.metrics);
        let apps = compiled.apps.len();
        let backends: usize = compiled
            .apps
            .iter()
            .flat_map(|a| &a.versions)
            .map(|v| v.backends.len())
            .sum();
        self.table.store(Arc::new(compiled));
        self.swapped.notify_waiters();
        tracing::info!(apps, backends, "GatewayRouteTableSwapped");
    }
}

/// Per-connection context.
pub(crate) struct ConnCtx {
    pub(crate) shared: Arc<Shared>,
    /// The client's IP, formatted once per connection.
    pub(crate) client_ip: HeaderValue,
    /// Whether the client connected from a loopback address (may read the metrics).
    pub(crate) local_peer: bool,
}

/// The hyper service function.
pub(crate) async fn handle(
    ctx: Arc<ConnCtx>,
    req: Request<Incoming>,
) -> Result<Response<GatewayBody>, Infallible> {
    Ok(serve(&ctx, req).await)
}

/// `host[:port]` → lowercase host without port or trailing dot.
pub(crate) fn normalize_host(raw: &str) -> Cow<'_, str> {
    let raw = raw.rsplit_once('@').map_or(raw, |(_, h)| h);
    let host = if raw.starts_with('[') {
        raw.find(']').map_or(raw, |i| &raw[..=i])
    } else {
        raw.split_once(':').map_or(raw, |(h, _)| h)
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The `Host` header, else the URI's authority (HTTP/2 `:authority`, HTTP/1 absolute form).
/// A client that sets `Host` explicitly on an HTTP/2 request means it.
fn raw_host<B>(req: &Request<B>) -> Option<&str> {
    req.headers()
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
}

fn is_metrics_request(host: &str, path: &str, method: &Method) -> bool {
    method == Method::GET
        && path == METRICS_PATH
        && matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Records an answer the gateway gave itself after choosing a version.
fn record_answer(series: Option<&SeriesStats>, started: u64, status: u16) {
    if let Some(s) = series {
        s.answer(s.now().saturating_sub(started), status);
    }
}

async fn serve(ctx: &ConnCtx, mut req: Request<Incoming>) -> Response<GatewayBody> {
    let shared = &*ctx.shared;
    let (request_id, dice) = {
        let mut rng = rand::thread_rng();
        let id = headers::request_id(req.headers(), &mut rng);
        let dice: [u32; 5] = rng.gen();
        (id, dice)
    };
    let html = wants_html(req.headers());
    let table = shared.table.load_full();

    let app_index = {
        let host = normalize_host(raw_host(&req).unwrap_or(""));
        let path = req.uri().path();
        match table.route_host(&host) {
            Some(i) => Some(i),
            None if ctx.local_peer && is_metrics_request(&host, path, req.method()) => {
                return metrics_response(&shared.metrics, &request_id);
            }
            None => table.route_prefix(path),
        }
    };
    let Some(app_index) = app_index else {
        shared.metrics.count_unrouted();
        return error_response(ErrorCode::NoRoute, html, &request_id);
    };

    let started = shared.metrics.now_nanos();
    let (table, app_index, version_index) =
        match resolve(shared, table, app_index, &req, dice[0], started).await {
            Ok(found) => found,
            Err(code) => return error_response(code, html, &request_id),
        };
    let Some(version) = table
        .apps
        .get(app_index)
        .and_then(|a| a.versions.get(version_index))
    else {
        return error_response(ErrorCode::NoReadyInstance, html, &request_id);
    };
    let backends = version.backends.as_slice();
    let Some(first) = pick_backend(backends, dice[1], dice[2]) else {
        record_answer(Some(&version.gateway_series), started, 503);
        return error_response(ErrorCode::NoReadyInstance, html, &request_id);
    };

    let upgrade = req.version() == Version::HTTP_11 && headers::is_websocket_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let original_host = req.headers().get(HOST).cloned().or_else(|| {
        req.uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    let (mut parts, body) = req.into_parts();
    headers::prepare_upstream(
        &mut parts.headers,
        upgrade,
        &ctx.client_ip,
        original_host,
        &request_id,
    );
    parts.version = Version::HTTP_11;
    parts.extensions = http::Extensions::new();
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let retry = (backends.len() > 1 && !upgrade && is_idempotent(&parts.method))
        .then(|| {
            use http_body::Body as _;
            body.is_end_stream()
                .then(|| (parts.method.clone(), parts.headers.clone()))
        })
        .flatten();

    let deadline = Instant::now() + shared.config.upstream_timeout;
    parts.uri = upstream_uri(&backends[first], path.clone());
    let request = Request::from_parts(parts, GatewayBody::stream(body));
    let mut flight = Flight::start(Arc::clone(&backends[first].stats));
    let error = match timeout_at(deadline, shared.client.request(request)).await {
        Ok(Ok(response)) => {
            return respond(shared, response, flight, client_upgrade, &request_id);
        }
        // A failed connect never reached the instance; an idempotent request without a
        // body may also be sent again when the connection died before any response header
        // arrived (the instance was killed mid-request).
        Ok(Err(error)) if error.is_connect() || retry.is_some() => error,
        Ok(Err(error)) => {
            flight.set_status(502);
            tracing::debug!(instance = %backends[first].instance, %error, "GatewayUpstreamError");
            return error_response(ErrorCode::UpstreamUnreachable, html, &request_id);
        }
        Err(_) => {
            flight.set_status(504);
            return error_response(ErrorCode::UpstreamTimeout, html, &request_id);
        }
    };
    flight.set_status(502);
    drop(flight);
    tracing::debug!(
        instance = %backends[first].instance,
        addr = %backends[first].addr,
        %error,
        "GatewayUpstreamAttemptError"
    );

    let Some((method, headers)) = retry else {
        return error_response(ErrorCode::UpstreamUnreachable, html, &request_id);
    };
    let Some(second) = pick_backend_excluding(backends, first, dice[3], dice[4]) else {
        return error_response(ErrorCode::UpstreamUnreachable, html, &request_id);
    };
    let backend = &backends[second];
    let mut request = Request::new(GatewayBody::empty());
    *request.method_mut() = method;
    *request.headers_mut() = headers;
    *request.uri_mut() = upstream_uri(backend, path);
    let mut flight = Flight::start(Arc::clone(&backend.stats));
    match timeout_at(deadline, shared.client.request(request)).await {
        Ok(Ok(response)) => respond(shared, response, flight, None, &request_id),
        Ok(Err(error)) => {
            flight.set_status(502);
            tracing::debug!(instance = %backend.instance, %error, "GatewayUpstreamRetryError");
            error_response(ErrorCode::UpstreamUnreachable, html, &request_id)
        }
        Err(_) => {
            flight.set_status(504);
            error_response(ErrorCode::UpstreamTimeout, html, &request_id)
        }
    }
}

fn upstream_uri(backend: &BackendState, path: PathAndQuery) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(backend.authority.clone());
    parts.path_and_query = Some(path);
    Uri::from_parts(parts).unwrap_or_else(|_| Uri::from_static("http://127.0.0.1/"))
}

/// A place in an app's activation queue, given back when dropped.
struct QueueSlot(Arc<AppShared>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Waiting {
    _slot: QueueSlot,
    held: Option<Held>,
    series: Option<Arc<SeriesStats>>,
    deadline: Instant,
}

fn request_activation(shared: &Shared, app: &CompiledApp) {
    let now_ms = shared.metrics.now_nanos() / 1_000_000;
    if !app.shared.claim_activation(now_ms, ACTIVATION_GAP_MS) {
        return;
    }
    let activation = Activation {
        namespace: app.namespace.to_string(),
        app: app.app.to_string(),
    };
    match shared.activations.try_send(activation) {
        Ok(()) => tracing::info!(
            namespace = %app.namespace,
            app = %app.app,
            waiting = app.shared.waiting.load(Ordering::Relaxed),
            "GatewayActivationRequested"
        ),
        Err(error) => tracing::warn!(
            namespace = %app.namespace,
            app = %app.app,
            %error,
            "GatewayActivationRequestError"
        ),
    }
}

/// Finds the version and a table in which it has ready backends; for a scale-to-zero app
/// without them, asks for an activation and holds the request until a table swap brings
/// a backend or the activation timeout passes.
async fn resolve(
    shared: &Shared,
    mut table: Arc<CompiledTable>,
    mut app_index: usize,
    req: &Request<Incoming>,
    rand: u32,
    started: u64,
) -> Result<(Arc<CompiledTable>, usize, usize), ErrorCode> {
    let facts = RequestFacts::new(req.headers(), req.uri().query());
    let mut waiting: Option<Waiting> = None;
    loop {
        let Some(app) = table.apps.get(app_index) else {
            return Err(ErrorCode::NoRoute);
        };
        let version_index = pick_version(app, &facts, rand).and_then(|v| app.version_index(v));
        let series = version_index
            .and_then(|i| app.versions.get(i))
            .map(|v| Arc::clone(&v.gateway_series));
        if let Some(i) = version_index {
            if app.versions.get(i).is_some_and(|v| !v.backends.is_empty()) {
                return Ok((table, app_index, i));
            }
        }
        if !app.scale_to_zero {
            record_answer(series.as_deref(), started, 503);
            return Err(ErrorCode::NoReadyInstance);
        }
        let deadline = match &waiting {
            Some(w) => w.deadline,
            None => {
                let queued = app.shared.waiting.fetch_add(1, Ordering::Relaxed);
                let slot = QueueSlot(Arc::clone(&app.shared));
                if queued >= shared.config.activation_queue_depth {
                    drop(slot);
                    record_answer(series.as_deref(), started, 503);
                    return Err(ErrorCode::ActivationQueueFull);
                }
                let deadline = Instant::now() + shared.config.activation_timeout;
                waiting = Some(Waiting {
                    _slot: slot,
                    held: series.clone().map(Held::start),
                    series,
                    deadline,
                });
                deadline
            }
        };
        request_activation(shared, app);
        let app_shared = Arc::clone(&app.shared);

        let notified = shared.swapped.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let current = shared.table.load_full();
        if Arc::ptr_eq(&current, &table) {
            let wake = deadline.min(Instant::now() + ACTIVATION_RESEND);
            if timeout_at(wake, notified).await.is_err() && Instant::now() >= deadline {
                if let Some(mut w) = waiting.take() {
                    w.held = None;
                    record_answer(w.series.as_deref(), started, 503);
                }
                return Err(ErrorCode::ActivationTimeout);
            }
            table = shared.table.load_full();
        } else {
            table = current;
        }
        app_index = table.app_index(&app_shared.key).ok_or(ErrorCode::NoRoute)?;
    }
}

fn respond(
    shared: &Shared,
    mut response: Response<Incoming>,
    mut flight: Flight,
    client_upgrade: Option<OnUpgrade>,
    request_id: &HeaderValue,
) -> Response<GatewayBody> {
    flight.set_status(response.status().as_u16());
    let upgraded = response.status() == StatusCode::SWITCHING_PROTOCOLS;
    if upgraded {
        if let Some(client) = client_upgrade {
            let upstream = hyper::upgrade::on(&mut response);
            spawn_tunnel(shared, client, upstream);
        }
    }
    let (mut parts, body) = response.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers, upgraded);
    if !parts.headers.contains_key(&X_REQUEST_ID) {
        parts.headers.insert(&X_REQUEST_ID, request_id.clone());
    }
    let body = if upgraded {
        GatewayBody::empty()
    } else {
        GatewayBody::stream(body)
    };
    Response::from_parts(parts, body.with_flight(flight))
}

fn spawn_tunnel(shared: &Shared, client: OnUpgrade, upstream: OnUpgrade) {
    let stop = shared.tunnel_stop.clone();
    shared.tunnels.spawn(async move {
        let (client, upstream) = tokio::join!(client, upstream);
        let (client, upstream) = match (client, upstream) {
            (Ok(c), Ok(u)) => (c, u),
            (Err(error), _) | (_, Err(error)) => {
                tracing::debug!(%error, "GatewayUpgradeError");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        tokio::select! {
            copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
                if let Err(error) = copied {
                    tracing::debug!(%error, "GatewayTunnelError");
                }
            }
            () = stop.cancelled() => {}
        }
    });
}

fn metrics_response(metrics: &GatewayMetrics, request_id: &HeaderValue) -> Response<GatewayBody> {
    let mut response = Response::new(GatewayBody::full(Bytes::from(metrics.render_prometheus())));
    let headers: &mut HeaderMap = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    headers.insert(&X_REQUEST_ID, request_id.clone());
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_normalize() {
        let cases = [
            ("Shop.Example.com:8080", "shop.example.com"),
            ("a.default.localhost", "a.default.localhost"),
            ("a.default.localhost.", "a.default.localhost"),
            ("[::1]:8080", "[::1]"),
            ("user@host:1", "host"),
            ("", ""),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_host(raw), want, "{raw}");
        }
    }

    #[test]
    fn metrics_only_for_local_hosts() {
        assert!(is_metrics_request("localhost", METRICS_PATH, &Method::GET));
        assert!(is_metrics_request("127.0.0.1", METRICS_PATH, &Method::GET));
        assert!(!is_metrics_request(
            "example.com",
            METRICS_PATH,
            &Method::GET
        ));
        assert!(!is_metrics_request(
            "localhost",
            METRICS_PATH,
            &Method::POST
        ));
        assert!(!is_metrics_request("localhost", "/metrics", &Method::GET));
    }
}
