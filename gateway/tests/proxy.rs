//! End-to-end tests of the gateway over real sockets: tiny upstream servers started here,
//! a real gateway on `127.0.0.1:0`, and hyper / tungstenite clients.

// Test helpers unwrap: a failed setup should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tideway_api_types::{HeaderMatch, MatchRule, Sticky, TrafficPolicy, ValueMatch, VersionWeight};
use tideway_gateway::route::{AppRoute, Backend, RouteTable, VersionRoute};
use tideway_gateway::{Activation, Gateway, GatewayConfig, GatewayMetrics};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::time::{timeout, Instant};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

// ---------------------------------------------------------------------------------------
// Upstreams
// ---------------------------------------------------------------------------------------

/// An HTTP/1.1 upstream answering with its id as the body. `?delay=MS` waits before the
/// response headers; the request's path and headers are echoed back as response headers.
async fn upstream(id: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(id, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

async fn answer(
    id: &'static str,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let delay = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("delay="))
        .and_then(|ms| ms.parse::<u64>().ok());
    if let Some(ms) = delay {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let echoed: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().len())
        .unwrap_or(0);
    Ok(Response::builder()
        .header("x-upstream", id)
        .header("x-body-len", body)
        .header(
            "x-echo-headers",
            serde_json::Value::Object(echoed).to_string(),
        )
        .header("connection", "keep-alive, x-hop")
        .header("x-hop", "must not pass")
        .body(Full::new(Bytes::from(id)))
        .unwrap())
}

/// A WebSocket echo server.
async fn ws_echo() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
                    return;
                };
                while let Some(Ok(msg)) = ws.next().await {
                    if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// An upstream that accepts connections and closes them without answering.
async fn closer() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    addr
}

/// An address nothing listens on.
async fn dead() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

// ---------------------------------------------------------------------------------------
// Tables
// ---------------------------------------------------------------------------------------

fn app(
    name: &str,
    hosts: &[&str],
    prefixes: &[&str],
    versions: &[(u32, &[(&str, SocketAddr)])],
) -> AppRoute {
    AppRoute {
        namespace: "default".into(),
        app: name.into(),
        hosts: hosts.iter().map(|h| h.to_string()).collect(),
        path_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        policy: TrafficPolicy::default(),
        default_version: versions.first().map(|v| v.0),
        versions: versions
            .iter()
            .map(|(version, backends)| VersionRoute {
                version: *version,
                backends: backends
                    .iter()
                    .map(|(instance, addr)| Backend {
                        instance: instance.to_string(),
                        addr: *addr,
                    })
                    .collect(),
            })
            .collect(),
        scale_to_zero: false,
    }
}

fn table(apps: Vec<AppRoute>) -> Arc<RouteTable> {
    Arc::new(RouteTable { apps })
}

fn weights(w: &[(u32, u32)]) -> Vec<VersionWeight> {
    w.iter()
        .map(|&(version, weight)| VersionWeight { version, weight })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

struct Harness {
    addr: SocketAddr,
    routes: watch::Sender<Arc<RouteTable>>,
    activations: mpsc::Receiver<Activation>,
    metrics: Arc<GatewayMetrics>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<()>,
    client: HttpClient,
}

async fn start(initial: Arc<RouteTable>) -> Harness {
    start_with(initial, |_| {}).await
}

async fn start_with(initial: Arc<RouteTable>, tune: impl FnOnce(&mut GatewayConfig)) -> Harness {
    let mut config = GatewayConfig::new("127.0.0.1:0".parse().unwrap());
    tune(&mut config);
    let (routes, routes_rx) = watch::channel(initial);
    let (tx, activations) = mpsc::channel(16);
    let gateway = Gateway::bind(config, routes_rx, tx).await.unwrap();
    let addr = gateway.local_addr();
    let metrics = gateway.metrics();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(gateway.run(shutdown.clone()));
    Harness {
        addr,
        routes,
        activations,
        metrics,
        shutdown,
        server,
        client: Client::builder(TokioExecutor::new()).build_http(),
    }
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn echoed(&self, name: &str) -> Option<String> {
        let raw = self.headers.get("x-echo-headers")?.to_str().ok()?;
        let map: serde_json::Value = serde_json::from_str(raw).ok()?;
        map.get(name)?.as_str().map(str::to_string)
    }

    fn error_code(&self) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.body).unwrap();
        v["error"]["code"].as_str().unwrap().to_string()
    }
}

impl Harness {
    async fn send(
        &self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &'static str,
    ) -> Answer {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{}{}", self.addr, path))
            .header("host", host);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .client
            .request(
                req.body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap(),
            )
            .await
            .unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    async fn get(&self, host: &str, path: &str) -> Answer {
        self.send("GET", host, path, &[], "").await
    }

    async fn get_with(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send("GET", host, path, headers, "").await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        timeout(Duration::from_secs(10), self.server)
            .await
            .unwrap()
            .unwrap();
    }
}

/// Sends `n` GETs with `workers` in parallel and counts the bodies.
async fn count_bodies(
    h: &Arc<Harness>,
    n: usize,
    workers: usize,
    host: &'static str,
    path: &'static str,
) -> std::collections::BTreeMap<String, usize> {
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let h = Arc::clone(h);
        let share = n / workers + usize::from(w < n % workers);
        tasks.spawn(async move {
            let mut seen = Vec::with_capacity(share);
            for _ in 0..share {
                let a = h.get(host, path).await;
                assert_eq!(a.status, 200, "{}", a.body);
                seen.push(a.body);
            }
            seen
        });
    }
    let mut counts = std::collections::BTreeMap::new();
    while let Some(seen) = tasks.join_next().await {
        for body in seen.unwrap() {
            *counts.entry(body).or_insert(0) += 1;
        }
    }
    counts
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn host_and_prefix_routing_with_forwarding_headers() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let h = start(table(vec![
        app("a", &["a.default.localhost"], &[], &[(1, &[("a-1", a)])]),
        app("b", &[], &["/api"], &[(1, &[("b-1", b)])]),
    ]))
    .await;

    let r = h.get("A.Default.Localhost:8080", "/api/x?q=1").await;
    assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "a"));
    assert_eq!(
        r.echoed("host").as_deref(),
        Some("A.Default.Localhost:8080")
    );
    assert_eq!(
        r.echoed("x-forwarded-host").as_deref(),
        Some("A.Default.Localhost:8080")
    );
    assert_eq!(r.echoed("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(r.echoed("x-forwarded-proto").as_deref(), Some("http"));
    let tp = r.echoed("traceparent").unwrap();
    assert_eq!(tp.len(), 55);
    assert!(tp.starts_with("00-") && tp.ends_with("-01"), "{tp}");
    let rid = r.echoed("x-request-id").unwrap();
    assert_eq!(r.headers["x-request-id"], rid.as_str());
    assert!(
        r.headers.get("x-hop").is_none(),
        "hop-by-hop header listed in Connection leaked"
    );

    // Prefix routes keep the prefix; incoming ids, traces and XFF are kept/appended.
    let tp_in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = h
        .get_with(
            "unknown.example",
            "/api/items?x=1",
            &[
                ("x-request-id", "rid-7"),
                ("traceparent", tp_in),
                ("x-forwarded-for", "10.1.1.1"),
                ("te", "trailers"),
            ],
        )
        .await;
    assert_eq!(r.body, "b");
    assert_eq!(r.echoed("x-request-id").as_deref(), Some("rid-7"));
    assert_eq!(r.echoed("traceparent").as_deref(), Some(tp_in));
    assert_eq!(
        r.echoed("x-forwarded-for").as_deref(),
        Some("10.1.1.1, 127.0.0.1")
    );
    assert_eq!(r.echoed("te"), None);

    let r = h.get("unknown.example", "/apiary").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "no_route");
    assert!(r.headers.contains_key("x-request-id"));

    let r = h
        .get_with("unknown.example", "/", &[("accept", "text/html,*/*")])
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.body.contains("no_route"));
    h.stop().await;
}

#[tokio::test]
async fn prefix_is_not_stripped() {
    // The upstream sees the full original path: ask it via a path-echoing upstream.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                    let pq = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(pq))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    let h = start(table(vec![app(
        "p",
        &[],
        &["/shop"],
        &[(1, &[("p-1", addr)])],
    )]))
    .await;
    assert_eq!(h.get("x", "/shop/cart?id=3").await.body, "/shop/cart?id=3");
    assert_eq!(h.get("x", "/shop").await.body, "/shop");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_split_90_10() {
    let v1 = upstream("v1").await;
    let v2 = upstream("v2").await;
    let mut route = app(
        "s",
        &["s.default.localhost"],
        &[],
        &[(1, &[("v1-a", v1)]), (2, &[("v2-a", v2)])],
    );
    route.policy.weights = weights(&[(1, 90), (2, 10)]);
    let h = Arc::new(start(table(vec![route])).await);
    let n = 10_000;
    let counts = count_bodies(&h, n, 16, "s.default.localhost", "/").await;
    let v2_pct = counts.get("v2").copied().unwrap_or(0) as f64 * 100.0 / n as f64;
    eprintln!("90/10 split over {n} requests: {counts:?} → v2 {v2_pct:.2}%");
    assert!((8.0..=12.0).contains(&v2_pct), "v2 got {v2_pct}%");
    assert_eq!(counts.values().sum::<usize>(), n);
}

#[tokio::test]
async fn rules_route_all_matching_traffic() {
    let v1 = upstream("v1").await;
    let v2 = upstream("v2").await;
    let mut route = app(
        "r",
        &["r.default.localhost"],
        &[],
        &[(1, &[("v1-a", v1)]), (2, &[("v2-a", v2)])],
    );
    route.policy.weights = weights(&[(1, 100)]);
    route.policy.rules = vec![
        MatchRule {
            header: Some(HeaderMatch {
                name: "X-Canary".into(),
                exact: Some("on".into()),
                prefix: None,
                regex: None,
            }),
            cookie: None,
            query: None,
            hash: None,
            version: 2,
        },
        MatchRule {
            header: None,
            cookie: Some(ValueMatch {
                name: "beta".into(),
                value: "1".into(),
            }),
            query: None,
            hash: None,
            version: 2,
        },
        MatchRule {
            header: None,
            cookie: None,
            hash: None,
            query: Some(ValueMatch {
                name: "preview".into(),
                value: "yes".into(),
            }),
            version: 2,
        },
        MatchRule {
            header: Some(HeaderMatch {
                name: "user-agent".into(),
                exact: None,
                prefix: None,
                regex: Some("tester/[0-9]+".into()),
            }),
            cookie: None,
            query: None,
            hash: None,
            version: 2,
        },
    ];
    let h = start(table(vec![route])).await;
    let host = "r.default.localhost";
    for _ in 0..50 {
        assert_eq!(
            h.get_with(host, "/", &[("x-canary", "on")]).await.body,
            "v2"
        );
        assert_eq!(
            h.get_with(host, "/", &[("cookie", "a=b; beta=1")])
                .await
                .body,
            "v2"
        );
        assert_eq!(h.get(host, "/?preview=yes").await.body, "v2");
        assert_eq!(
            h.get_with(host, "/", &[("user-agent", "tester/42")])
                .await
                .body,
            "v2"
        );
        assert_eq!(h.get(host, "/").await.body, "v1");
        assert_eq!(
            h.get_with(host, "/", &[("user-agent", "tester/x")])
                .await
                .body,
            "v1"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn sticky_header_keeps_clients_on_one_version() {
    let v1 = upstream("v1").await;
    let v2 = upstream("v2").await;
    let mut route = app(
        "st",
        &["st.default.localhost"],
        &[],
        &[(1, &[("v1-a", v1)]), (2, &[("v2-a", v2)])],
    );
    route.policy.weights = weights(&[(1, 50), (2, 50)]);
    route.policy.sticky = Some(Sticky {
        header: Some("X-User".into()),
        cookie: None,
    });
    let h = start(table(vec![route])).await;
    let mut versions_seen = std::collections::BTreeSet::new();
    for user in 0..20 {
        let user = format!("user-{user}");
        let first = h
            .get_with("st.default.localhost", "/", &[("x-user", &user)])
            .await
            .body;
        for _ in 0..20 {
            let again = h
                .get_with("st.default.localhost", "/", &[("x-user", &user)])
                .await
                .body;
            assert_eq!(again, first, "{user} moved");
        }
        versions_seen.insert(first);
    }
    assert_eq!(versions_seen.len(), 2, "20 users all hashed to one version");
    h.stop().await;
}

#[tokio::test]
async fn dead_backend_is_retried_for_idempotent_requests() {
    let live = upstream("live").await;
    let gone = dead().await;
    let h = start(table(vec![app(
        "d",
        &["d.default.localhost"],
        &[],
        &[(1, &[("dead-1", gone), ("live-1", live)])],
    )]))
    .await;
    for method in ["GET", "HEAD", "DELETE", "PUT", "OPTIONS"] {
        for _ in 0..40 {
            let r = h.send(method, "d.default.localhost", "/", &[], "").await;
            assert_eq!(r.status, 200, "{method}: {}", r.body);
            assert_eq!(r.headers["x-upstream"], "live");
        }
    }
    // A request with a body is not retried (it is never buffered): some reach the dead one.
    let mut failed = 0;
    for _ in 0..40 {
        let r = h
            .send("POST", "d.default.localhost", "/", &[], "payload")
            .await;
        if r.status == StatusCode::BAD_GATEWAY {
            assert_eq!(r.error_code(), "upstream_unreachable");
            failed += 1;
        } else {
            assert_eq!(r.headers["x-body-len"], "7");
        }
    }
    assert!(failed > 0, "POSTs were retried");

    // Only dead backends: 502.
    h.routes
        .send(table(vec![app(
            "d",
            &["d.default.localhost"],
            &[],
            &[(1, &[("dead-1", gone)])],
        )]))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let r = h.get("d.default.localhost", "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.error_code(), "upstream_unreachable");
    h.stop().await;
}

#[tokio::test]
async fn closing_upstream_is_a_502() {
    let c = closer().await;
    let h = start(table(vec![app(
        "c",
        &["c.default.localhost"],
        &[],
        &[(1, &[("c-1", c)])],
    )]))
    .await;
    let r = h.get("c.default.localhost", "/").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert_eq!(r.error_code(), "upstream_unreachable");
    h.stop().await;
}

#[tokio::test]
async fn draining_backend_finishes_in_flight_requests() {
    let old = upstream("old").await;
    let new = upstream("new").await;
    let h = Arc::new(
        start(table(vec![app(
            "dr",
            &["dr.default.localhost"],
            &[],
            &[(1, &[("old-1", old)])],
        )]))
        .await,
    );
    let slow = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.get("dr.default.localhost", "/?delay=500").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    h.routes
        .send(table(vec![app(
            "dr",
            &["dr.default.localhost"],
            &[],
            &[(1, &[("new-1", new)])],
        )]))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    for _ in 0..20 {
        assert_eq!(h.get("dr.default.localhost", "/").await.body, "new");
    }
    let slow = slow.await.unwrap();
    assert_eq!((slow.status, slow.body.as_str()), (StatusCode::OK, "old"));
}

#[tokio::test]
async fn websocket_echo_through_the_gateway() {
    let echo = ws_echo().await;
    let h = start(table(vec![app(
        "ws",
        &[],
        &["/ws"],
        &[(1, &[("ws-1", echo)])],
    )]))
    .await;
    let (mut ws, resp) = tokio_tungstenite::connect_async(format!("ws://{}/ws/chat", h.addr))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    for i in 0..10 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let back = timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(back, Message::text(format!("hello {i}")));
    }
    ws.send(Message::binary(vec![0u8, 1, 2, 255]))
        .await
        .unwrap();
    let back = timeout(Duration::from_secs(5), ws.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(back, Message::binary(vec![0u8, 1, 2, 255]));
    ws.close(None).await.unwrap();
    h.stop().await;
}

#[tokio::test]
async fn h2c_prior_knowledge() {
    let b = upstream("h2-ok").await;
    let named = upstream("h2-named").await;
    let h = start(table(vec![
        app("h2", &[], &["/"], &[(1, &[("h2-1", b)])]),
        app(
            "h2n",
            &["h2n.default.localhost"],
            &[],
            &[(1, &[("h2n-1", named)])],
        ),
    ]))
    .await;
    let client: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    // An explicit Host header on an HTTP/2 request routes by that host.
    let resp = client
        .request(
            Request::get(format!("http://{}/", h.addr))
                .header("host", "h2n.default.localhost")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    assert_eq!(resp.headers()["x-upstream"], "h2-named");
    for _ in 0..5 {
        let resp = client
            .request(
                Request::get(format!("http://{}/hello", h.addr))
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.version(), Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let echoed: serde_json::Value =
            serde_json::from_str(resp.headers()["x-echo-headers"].to_str().unwrap()).unwrap();
        assert_eq!(
            echoed["host"],
            h.addr.to_string(),
            ":authority becomes Host upstream"
        );
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], b"h2-ok");
    }
    h.stop().await;
}

#[tokio::test]
async fn table_swap_is_visible_within_100ms() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let route = |id: &str, addr| {
        table(vec![app(
            "sw",
            &["sw.default.localhost"],
            &[],
            &[(1, &[(id, addr)])],
        )])
    };
    let h = start(route("a-1", a)).await;
    assert_eq!(h.get("sw.default.localhost", "/").await.body, "a");
    let mut worst = Duration::ZERO;
    for round in 0..10 {
        let (id, addr, want) = if round % 2 == 0 {
            ("b-1", b, "b")
        } else {
            ("a-1", a, "a")
        };
        let published = Instant::now();
        h.routes.send(route(id, addr)).unwrap();
        loop {
            if h.get("sw.default.localhost", "/").await.body == want {
                break;
            }
            assert!(
                published.elapsed() < Duration::from_secs(1),
                "swap never visible"
            );
        }
        worst = worst.max(published.elapsed());
    }
    eprintln!(
        "table swap visible to the next request within {worst:?} (worst of 10, incl. one request)"
    );
    assert!(worst < Duration::from_millis(100), "{worst:?}");
    h.stop().await;
}

#[tokio::test]
async fn no_backend_is_a_503_with_retry_after() {
    let h = start(table(vec![app(
        "nb",
        &["nb.default.localhost"],
        &[],
        &[(1, &[])],
    )]))
    .await;
    let r = h.get("nb.default.localhost", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.error_code(), "no_ready_instance");
    assert!(r.headers.contains_key("x-request-id"));
    h.stop().await;
}

#[tokio::test]
async fn slow_upstream_is_a_504() {
    let slow = upstream("slow").await;
    let h = start_with(
        table(vec![app(
            "t",
            &["t.default.localhost"],
            &[],
            &[(1, &[("t-1", slow)])],
        )]),
        |c| c.upstream_timeout = Duration::from_millis(300),
    )
    .await;
    let started = Instant::now();
    let r = h.get("t.default.localhost", "/?delay=3000").await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(r.error_code(), "upstream_timeout");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(h.get("t.default.localhost", "/?delay=10").await.status, 200);
    h.stop().await;
}

fn zero_app(backends: &[(&str, SocketAddr)]) -> Arc<RouteTable> {
    let mut route = app("z", &["z.default.localhost"], &[], &[(1, backends)]);
    route.scale_to_zero = true;
    table(vec![route])
}

#[tokio::test]
async fn activation_holds_requests_until_a_backend_appears() {
    let up = upstream("woke").await;
    let mut h = start(zero_app(&[])).await;
    let h_routes = h.routes.clone();
    let held = {
        let client = h.client.clone();
        let addr = h.addr;
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = client
                .request(
                    Request::get(format!("http://{addr}/"))
                        .header("host", "z.default.localhost")
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
                .await
                .unwrap();
            let status = resp.status();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, body, started.elapsed())
        })
    };
    let activation = timeout(Duration::from_secs(2), h.activations.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        activation,
        Activation {
            namespace: "default".into(),
            app: "z".into()
        }
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = Instant::now();
    h_routes.send(zero_app(&[("z-1", up)])).unwrap();
    let (status, body, waited) = timeout(Duration::from_secs(5), held)
        .await
        .unwrap()
        .unwrap();
    let after_publish = published.elapsed();
    assert_eq!(status, 200);
    assert_eq!(&body[..], b"woke");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(
        after_publish < Duration::from_millis(200),
        "{after_publish:?}"
    );
    eprintln!(
        "held request released {after_publish:?} after the table with a backend was published"
    );
    h.stop().await;
}

#[tokio::test]
async fn activation_queue_overflow_and_timeout() {
    let up = upstream("woke").await;
    let h = Arc::new(
        start_with(zero_app(&[]), |c| {
            c.activation_queue_depth = 2;
            c.activation_timeout = Duration::from_secs(10);
        })
        .await,
    );
    let held: Vec<_> = (0..2)
        .map(|_| {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.get("z.default.localhost", "/").await })
        })
        .collect();
    // Both are held once they show up as in flight.
    let deadline = Instant::now() + Duration::from_secs(2);
    while h.metrics.inflight("default", "z").values().sum::<u64>() < 2 {
        assert!(Instant::now() < deadline, "requests were not held");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let started = Instant::now();
    let r = h.get("z.default.localhost", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_code(), "activation_queue_full");
    assert_eq!(r.headers["retry-after"], "1");
    assert!(started.elapsed() < Duration::from_millis(200));

    h.routes.send(zero_app(&[("z-1", up)])).unwrap();
    for task in held {
        let r = timeout(Duration::from_secs(5), task)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((r.status, r.body.as_str()), (StatusCode::OK, "woke"));
    }
}

#[tokio::test]
async fn activation_times_out() {
    let h = start_with(zero_app(&[]), |c| {
        c.activation_timeout = Duration::from_millis(300)
    })
    .await;
    let started = Instant::now();
    let r = h.get("z.default.localhost", "/").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_code(), "activation_timeout");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(300) && waited < Duration::from_secs(2),
        "{waited:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn metrics_window_counts_requests() {
    let up = upstream("m").await;
    let h = start(table(vec![app(
        "m",
        &["m.default.localhost"],
        &[],
        &[(3, &[("m-1", up)])],
    )]))
    .await;
    let from = Utc::now() - chrono::Duration::seconds(1);
    let n = 40u64;
    for i in 0..n {
        let path = if i % 4 == 0 { "/?delay=20" } else { "/" };
        assert_eq!(h.get("m.default.localhost", path).await.status, 200);
    }
    // Wait for the seconds to close (ticks at whole seconds).
    let deadline = Instant::now() + Duration::from_secs(5);
    let series = loop {
        let to = Utc::now() + chrono::Duration::seconds(1);
        let series = h.metrics.window("default", "m", from, to, 1);
        let total: u64 = series
            .iter()
            .flat_map(|s| &s.points)
            .map(|p| p.requests)
            .sum();
        if total >= n {
            break series;
        }
        assert!(
            Instant::now() < deadline,
            "window shows {total} of {n} requests"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].version, 3);
    let points = &series[0].points;
    let requests: u64 = points.iter().map(|p| p.requests).sum();
    let ok: u64 = points.iter().map(|p| p.responses_2xx).sum();
    assert_eq!((requests, ok), (n, n));
    let p99 = points.iter().filter_map(|p| p.p99_ms).fold(0.0, f64::max);
    assert!((15.0..500.0).contains(&p99), "p99 {p99} ms");
    let busy: f64 = points.iter().map(|p| p.concurrency).sum();
    assert!(busy > 0.0 && busy < 2.0, "concurrency {busy}");
    eprintln!("metrics: {requests} requests, p99 {p99:.1} ms, Σ concurrency {busy:.3}");

    let per_instance = h.metrics.instance_window(
        "default",
        "m",
        from,
        Utc::now() + chrono::Duration::seconds(1),
        60,
    );
    let m1: u64 = per_instance
        .iter()
        .filter(|s| s.instance == "m-1")
        .flat_map(|s| &s.points)
        .map(|p| p.requests)
        .sum();
    assert_eq!(m1, n);

    let text = h.get("localhost", "/__tideway/metrics").await;
    assert_eq!(text.status, 200);
    let line = format!("tideway_gateway_requests_total{{namespace=\"default\",app=\"m\",version=\"3\",instance=\"m-1\"}} {n}");
    assert!(text.body.lines().any(|l| l == line), "{}", text.body);
    assert!(text
        .body
        .contains("tideway_gateway_request_duration_seconds_bucket"));
    assert!(text.body.contains("tideway_gateway_inflight_requests"));
    // Not for other hosts.
    assert_eq!(h.get("example.com", "/__tideway/metrics").await.status, 404);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_drains_in_flight_requests() {
    let up = upstream("drain").await;
    let h = start(table(vec![app(
        "g",
        &["g.default.localhost"],
        &[],
        &[(1, &[("g-1", up)])],
    )]))
    .await;
    let client = h.client.clone();
    let addr = h.addr;
    let in_flight = tokio::spawn(async move {
        let resp = client
            .request(
                Request::get(format!("http://{addr}/?delay=400"))
                    .header("host", "g.default.localhost")
                    .body(Full::new(Bytes::new()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = resp.status();
        (status, resp.into_body().collect().await.unwrap().to_bytes())
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = Instant::now();
    h.shutdown.cancel();
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"drain"[..]));
    timeout(Duration::from_secs(5), h.server)
        .await
        .unwrap()
        .unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(3));
    // New connections are refused once it stopped.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_spreads_load_over_instances() {
    let a = upstream("a").await;
    let b = upstream("b").await;
    let c = upstream("c").await;
    let h = Arc::new(
        start(table(vec![app(
            "lb",
            &["lb.default.localhost"],
            &[],
            &[(1, &[("a", a), ("b", b), ("c", c)])],
        )]))
        .await,
    );
    let counts = count_bodies(&h, 600, 6, "lb.default.localhost", "/").await;
    assert_eq!(counts.len(), 3, "{counts:?}");
    assert!(counts.values().all(|&n| n > 100), "{counts:?}");
}
