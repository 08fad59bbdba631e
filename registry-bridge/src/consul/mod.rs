//! The discovery subset of the Consul HTTP API (`/v1/agent/*`, `/v1/catalog/*`,
//! `/v1/health/*`, `/v1/status/*`), with blocking queries.
//!
//! * **Headers.** Every response carries `X-Consul-Index` (never below 1),
//!   `X-Consul-KnownLeader: true` and `X-Consul-LastContact: 0`; JSON bodies are
//!   `application/json` (the npm client only decodes that content type).
//! * **Blocking queries** on `/v1/catalog/services`, `/v1/catalog/service/:name`,
//!   `/v1/health/service/:name` and `/v1/health/checks/:name`: `?index=N` waits until the
//!   resource's index exceeds `N` or `?wait` (default 5 min, at most 10 min) passes. The
//!   wait wakes on the registry's change notification, not by polling.
//! * **ACL.** With a configured token, a request carrying a different token gets 403
//!   `ACL not found`; a write without a token gets 403 `Permission denied`; reads without
//!   a token are answered (anonymous read). Tokens come from `?token=`, `X-Consul-Token`
//!   or `Authorization: Bearer`, in Consul's order.

mod codec;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::Router;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::model::{CheckStatus, CheckView, Registry};
use crate::text::{parse_go_duration, query_get, query_pairs};

const DEFAULT_WAIT: Duration = Duration::from_secs(5 * 60);
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);
/// The Consul version `/v1/agent/self` reports (the API subset follows this release).
const CONSUL_VERSION: &str = "1.20.0";

#[derive(Clone)]
struct Ctx {
    registry: Arc<Registry>,
    shutdown: CancellationToken,
}

/// The Consul router over a registry. Blocking queries end early when `shutdown` fires.
pub fn router(registry: Arc<Registry>, shutdown: CancellationToken) -> Router {
    let ctx = Ctx { registry, shutdown };
    Router::new()
        .route("/v1/agent/service/register", put(register_service))
        .route("/v1/agent/service/deregister/{id}", put(deregister_service))
        .route("/v1/agent/service/maintenance/{id}", put(maintenance))
        .route("/v1/agent/service/{id}", get(agent_service))
        .route("/v1/agent/check/register", put(register_check))
        .route("/v1/agent/check/deregister/{id}", put(deregister_check))
        .route("/v1/agent/check/pass/{id}", put(check_pass))
        .route("/v1/agent/check/warn/{id}", put(check_warn))
        .route("/v1/agent/check/fail/{id}", put(check_fail))
        .route("/v1/agent/check/update/{id}", put(check_update))
        .route("/v1/agent/services", get(agent_services))
        .route("/v1/agent/checks", get(agent_checks))
        .route("/v1/agent/self", get(agent_self))
        .route("/v1/agent/members", get(agent_members))
        .route("/v1/catalog/services", get(catalog_services))
        .route("/v1/catalog/service/{name}", get(catalog_service))
        .route("/v1/catalog/nodes", get(catalog_nodes))
        .route("/v1/catalog/datacenters", get(catalog_datacenters))
        .route("/v1/health/service/{name}", get(health_service))
        .route("/v1/health/checks/{name}", get(health_checks))
        .route("/v1/health/state/{state}", get(health_state))
        .route("/v1/health/node/{node}", get(health_node))
        .route("/v1/status/leader", get(status_leader))
        .route("/v1/status/peers", get(status_peers))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(ctx.clone(), acl_and_headers))
        .with_state(ctx)
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

async fn not_found() -> Response {
    text(StatusCode::NOT_FOUND, "404 page not found")
}

fn error_response(err: &Error) -> Response {
    let status = match err {
        Error::Invalid(_) => StatusCode::BAD_REQUEST,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::NotTtlCheck(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Error::PlatformOwned(_) => StatusCode::CONFLICT,
        Error::PermissionDenied(_) => StatusCode::FORBIDDEN,
        Error::Bind { .. } | Error::Serve(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    text(status, err.to_string())
}

/// A JSON body with the index header set.
fn json_with_index(index: u64, body: Value) -> Response {
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    set_index(&mut response, index);
    response
}

fn set_index(response: &mut Response, index: u64) {
    if let Ok(v) = HeaderValue::from_str(&index.max(1).to_string()) {
        response.headers_mut().insert("x-consul-index", v);
    }
}

/// The request's token, in Consul's order: `?token=`, `X-Consul-Token`, `Authorization:
/// Bearer`.
fn request_token(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let pairs = query_pairs(uri.query());
    if let Some(t) = query_get(&pairs, "token").filter(|t| !t.is_empty()) {
        return Some(t.to_owned());
    }
    if let Some(t) = headers
        .get("x-consul-token")
        .and_then(|v| v.to_str().ok())
        .filter(|t| !t.is_empty())
    {
        return Some(t.to_owned());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_owned())
        .filter(|t| !t.is_empty())
}

async fn acl_and_headers(State(ctx): State<Ctx>, request: Request, next: Next) -> Response {
    if let Some(expected) = &ctx.registry.config().consul_acl_token {
        let write = request.method() != Method::GET && request.method() != Method::HEAD;
        match request_token(request.uri(), request.headers()) {
            Some(token) if &token != expected => {
                return finish(
                    error_response(&Error::PermissionDenied("ACL not found".into())),
                    &ctx,
                );
            }
            None if write => {
                return finish(
                    error_response(&Error::PermissionDenied(
                        "Permission denied: anonymous token lacks permission for this write".into(),
                    )),
                    &ctx,
                );
            }
            _ => {}
        }
    }
    let response = next.run(request).await;
    finish(response, &ctx)
}

fn finish(mut response: Response, ctx: &Ctx) -> Response {
    if !response.headers().contains_key("x-consul-index") {
        set_index(&mut response, ctx.registry.index());
    }
    let headers = response.headers_mut();
    headers.insert("x-consul-knownleader", HeaderValue::from_static("true"));
    headers.insert("x-consul-lastcontact", HeaderValue::from_static("0"));
    response
}

/// Waits, if the request asks to block, until `current()` exceeds the request's index.
/// Returns the index to report, or a 400 for a malformed `index` or `wait`.
async fn block(ctx: &Ctx, uri: &Uri, current: impl Fn(&Registry) -> u64) -> Result<u64, Reject> {
    let pairs = query_pairs(uri.query());
    let Some(index) = query_get(&pairs, "index") else {
        return Ok(current(&ctx.registry));
    };
    let Ok(min_index) = index.trim().parse::<u64>() else {
        return Err(Reject::bad("Invalid index"));
    };
    let wait = match query_get(&pairs, "wait") {
        None => DEFAULT_WAIT,
        Some(w) => match parse_go_duration(w) {
            Some(d) => d.min(MAX_WAIT),
            None => return Err(Reject::bad("Invalid wait time")),
        },
    };
    let mut changes = ctx.registry.subscribe();
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        changes.borrow_and_update();
        let now_index = current(&ctx.registry);
        if min_index == 0 || now_index > min_index {
            return Ok(now_index);
        }
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(now_index);
                }
            }
            () = tokio::time::sleep_until(deadline) => return Ok(current(&ctx.registry)),
            () = ctx.shutdown.cancelled() => return Ok(current(&ctx.registry)),
        }
    }
}

fn parse_json(body: &Bytes) -> Result<Value, Reject> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Reject::bad("Request decode failed: EOF"));
    }
    serde_json::from_slice(body).map_err(|e| Reject::bad(format!("Request decode failed: {e}")))
}

/// A request refused before it reached the registry (bad parameters or body).
struct Reject(StatusCode, String);

impl Reject {
    fn bad(message: impl Into<String>) -> Self {
        Self(StatusCode::BAD_REQUEST, message.into())
    }
}

impl IntoResponse for Reject {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

fn ok_empty() -> Response {
    StatusCode::OK.into_response()
}

fn result_response(result: Result<(), Error>) -> Response {
    match result {
        Ok(()) => ok_empty(),
        Err(e) => error_response(&e),
    }
}

fn bool_param(pairs: &[(String, String)], key: &str) -> Result<bool, Reject> {
    match query_get(pairs, key) {
        None => Ok(false),
        Some("") => Ok(true),
        Some(v) => match v {
            "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
            "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
            _ => Err(Reject::bad(format!("Invalid value for ?{key}"))),
        },
    }
}

async fn register_service(State(ctx): State<Ctx>, uri: Uri, body: Bytes) -> Response {
    let doc = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    let def = match codec::decode_service(&doc) {
        Ok(d) => d,
        Err(e) => {
            let message = if e.starts_with("Invalid check") {
                e
            } else {
                format!("Request decode failed: {e}")
            };
            return text(StatusCode::BAD_REQUEST, message);
        }
    };
    let pairs = query_pairs(uri.query());
    let replace = match bool_param(&pairs, "replace-existing-checks") {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    result_response(ctx.registry.consul_register(def, replace))
}

async fn deregister_service(State(ctx): State<Ctx>, Path(id): Path<String>) -> Response {
    result_response(ctx.registry.consul_deregister(&id))
}

async fn maintenance(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> Response {
    let pairs = query_pairs(uri.query());
    let enable = match query_get(&pairs, "enable") {
        None => return text(StatusCode::BAD_REQUEST, "Missing value for enable"),
        Some(v) => match v {
            "true" | "1" | "t" | "T" | "TRUE" | "True" => true,
            "false" | "0" | "f" | "F" | "FALSE" | "False" => false,
            _ => return text(StatusCode::BAD_REQUEST, "Invalid value for enable"),
        },
    };
    let reason = query_get(&pairs, "reason").map(str::to_owned);
    result_response(ctx.registry.consul_maintenance(&id, enable, reason))
}

async fn register_check(State(ctx): State<Ctx>, body: Bytes) -> Response {
    let doc = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    match codec::decode_check(&doc) {
        Ok(def) => result_response(ctx.registry.consul_check_register(def)),
        Err(e) => text(StatusCode::BAD_REQUEST, e),
    }
}

async fn deregister_check(State(ctx): State<Ctx>, Path(id): Path<String>) -> Response {
    result_response(ctx.registry.consul_check_deregister(&id))
}

fn ttl_update(ctx: &Ctx, id: &str, uri: &Uri, status: CheckStatus) -> Response {
    let pairs = query_pairs(uri.query());
    let note = query_get(&pairs, "note").unwrap_or("").to_owned();
    result_response(ctx.registry.consul_ttl_update(id, status, note))
}

async fn check_pass(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> Response {
    ttl_update(&ctx, &id, &uri, CheckStatus::Passing)
}

async fn check_warn(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> Response {
    ttl_update(&ctx, &id, &uri, CheckStatus::Warning)
}

async fn check_fail(State(ctx): State<Ctx>, Path(id): Path<String>, uri: Uri) -> Response {
    ttl_update(&ctx, &id, &uri, CheckStatus::Critical)
}

async fn check_update(State(ctx): State<Ctx>, Path(id): Path<String>, body: Bytes) -> Response {
    let doc = match parse_json(&body) {
        Ok(v) => v,
        Err(r) => return r.into_response(),
    };
    match codec::decode_check_update(&doc) {
        Ok((status, output)) => {
            result_response(ctx.registry.consul_ttl_update(&id, status, output))
        }
        Err(e) => text(StatusCode::BAD_REQUEST, e),
    }
}

async fn agent_services(State(ctx): State<Ctx>) -> Response {
    let config = ctx.registry.config();
    let services: serde_json::Map<String, Value> = ctx
        .registry
        .consul_agent_services()
        .iter()
        .map(|s| (s.id.clone(), codec::agent_service_json(s, config)))
        .collect();
    json_with_index(ctx.registry.index(), Value::Object(services))
}

async fn agent_service(State(ctx): State<Ctx>, Path(id): Path<String>) -> Response {
    match ctx.registry.consul_agent_service(&id) {
        Some(s) => json_with_index(
            s.modify_index,
            codec::agent_service_json(&s, ctx.registry.config()),
        ),
        None => text(StatusCode::NOT_FOUND, format!("unknown service ID: {id}")),
    }
}

async fn agent_checks(State(ctx): State<Ctx>) -> Response {
    let config = ctx.registry.config();
    let checks: serde_json::Map<String, Value> = ctx
        .registry
        .consul_agent_checks()
        .iter()
        .map(|c| (c.check_id.clone(), codec::check_json(c, config)))
        .collect();
    json_with_index(ctx.registry.index(), Value::Object(checks))
}

fn member_json(ctx: &Ctx) -> Value {
    let config = ctx.registry.config();
    json!({
        "Name": config.node_name,
        "Addr": config.node_address,
        "Port": 8301,
        "Tags": { "dc": config.datacenter, "role": "consul", "build": CONSUL_VERSION, "id": codec::node_id(config) },
        "Status": 1,
        "ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2,
        "DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4,
    })
}

async fn agent_self(State(ctx): State<Ctx>) -> Response {
    let config = ctx.registry.config();
    let body = json!({
        "Config": {
            "Datacenter": config.datacenter,
            "PrimaryDatacenter": config.datacenter,
            "NodeName": config.node_name,
            "NodeID": codec::node_id(config),
            "Revision": "tideway",
            "Server": true,
            "Version": CONSUL_VERSION,
        },
        "Member": member_json(&ctx),
        "Meta": { "consul-network-segment": "" },
        "xDS": null,
    });
    json_with_index(ctx.registry.index(), body)
}

async fn agent_members(State(ctx): State<Ctx>) -> Response {
    json_with_index(ctx.registry.index(), json!([member_json(&ctx)]))
}

async fn catalog_services(State(ctx): State<Ctx>, uri: Uri) -> Response {
    let index = match block(&ctx, &uri, Registry::consul_catalog_index).await {
        Ok(i) => i,
        Err(r) => return r.into_response(),
    };
    let (current, services) = ctx.registry.consul_catalog_services();
    let body: serde_json::Map<String, Value> = services
        .into_iter()
        .map(|(name, tags)| (name, json!(tags)))
        .collect();
    json_with_index(index.max(current), Value::Object(body))
}

/// Filters shared by the catalog and health service endpoints: `?tag=` (all must match)
/// and `?filter=` (see [`filter`]).
struct ServiceQuery {
    tags: Vec<String>,
    filter: Option<filter::Expr>,
    passing: bool,
}

fn service_query(uri: &Uri) -> Result<ServiceQuery, Reject> {
    let pairs = query_pairs(uri.query());
    let filter = match query_get(&pairs, "filter").filter(|f| !f.trim().is_empty()) {
        None => None,
        Some(f) => Some(filter::parse(f).map_err(|e| {
            Reject::bad(format!(
                "Failed to create boolean expression evaluator: {e}"
            ))
        })?),
    };
    Ok(ServiceQuery {
        tags: pairs
            .iter()
            .filter(|(k, _)| k == "tag")
            .map(|(_, v)| v.clone())
            .collect(),
        filter,
        passing: bool_param(&pairs, "passing")?,
    })
}

async fn service_entries(
    ctx: &Ctx,
    name: &str,
    uri: &Uri,
) -> Result<(u64, ServiceQuery, Vec<crate::model::ConsulEntry>), Reject> {
    let query = service_query(uri)?;
    let key = name.to_owned();
    let index = block(ctx, uri, move |r: &Registry| r.consul_service_index(&key)).await?;
    let (current, entries) = ctx.registry.consul_service_entries(name);
    let entries = entries
        .into_iter()
        .filter(|e| query.tags.iter().all(|t| e.service.tags.contains(t)))
        .filter(|e| !query.passing || e.checks.iter().all(|c| c.status == CheckStatus::Passing))
        .filter(|e| {
            query
                .filter
                .as_ref()
                .is_none_or(|f| f.matches(&filter::Subject::new(e)))
        })
        .collect();
    Ok((index.max(current), query, entries))
}

async fn catalog_service(State(ctx): State<Ctx>, Path(name): Path<String>, uri: Uri) -> Response {
    // The catalog does not filter on health.
    let uri = strip_param(&uri, "passing");
    match service_entries(&ctx, &name, &uri).await {
        Ok((index, _, entries)) => {
            let config = ctx.registry.config();
            let body: Vec<Value> = entries
                .iter()
                .map(|e| codec::catalog_entry_json(&e.service, config))
                .collect();
            json_with_index(index, json!(body))
        }
        Err(r) => r.into_response(),
    }
}

fn strip_param(uri: &Uri, key: &str) -> Uri {
    let pairs: Vec<(String, String)> = query_pairs(uri.query())
        .into_iter()
        .filter(|(k, _)| k != key)
        .collect();
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let path_and_query = if query.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{query}", uri.path())
    };
    path_and_query.parse().unwrap_or_else(|_| uri.clone())
}

async fn health_service(State(ctx): State<Ctx>, Path(name): Path<String>, uri: Uri) -> Response {
    match service_entries(&ctx, &name, &uri).await {
        Ok((index, _, entries)) => {
            let config = ctx.registry.config();
            let serf = codec::serf_check(1);
            let body: Vec<Value> = entries
                .iter()
                .map(|e| codec::health_entry_json(e, &serf, config))
                .collect();
            json_with_index(index, json!(body))
        }
        Err(r) => r.into_response(),
    }
}

async fn health_checks(State(ctx): State<Ctx>, Path(name): Path<String>, uri: Uri) -> Response {
    let uri = strip_param(&uri, "passing");
    match service_entries(&ctx, &name, &uri).await {
        Ok((index, _, entries)) => {
            let config = ctx.registry.config();
            let body: Vec<Value> = entries
                .iter()
                .flat_map(|e| e.checks.iter())
                .map(|c| codec::check_json(c, config))
                .collect();
            json_with_index(index, json!(body))
        }
        Err(r) => r.into_response(),
    }
}

fn all_checks(ctx: &Ctx) -> Vec<CheckView> {
    std::iter::once(codec::serf_check(1))
        .chain(ctx.registry.consul_agent_checks())
        .collect()
}

async fn health_state(State(ctx): State<Ctx>, Path(state): Path<String>) -> Response {
    let wanted = match state.as_str() {
        "any" => None,
        s => match CheckStatus::parse(s) {
            Some(status) => Some(status),
            None => return text(StatusCode::BAD_REQUEST, "Invalid state"),
        },
    };
    let config = ctx.registry.config();
    let body: Vec<Value> = all_checks(&ctx)
        .iter()
        .filter(|c| wanted.is_none_or(|w| c.status == w))
        .map(|c| codec::check_json(c, config))
        .collect();
    json_with_index(ctx.registry.index(), json!(body))
}

async fn health_node(State(ctx): State<Ctx>, Path(node): Path<String>) -> Response {
    let config = ctx.registry.config();
    let body: Vec<Value> = if node == config.node_name {
        all_checks(&ctx)
            .iter()
            .map(|c| codec::check_json(c, config))
            .collect()
    } else {
        Vec::new()
    };
    json_with_index(ctx.registry.index(), json!(body))
}

async fn catalog_nodes(State(ctx): State<Ctx>) -> Response {
    json_with_index(1, json!([codec::node_json(ctx.registry.config())]))
}

async fn catalog_datacenters(State(ctx): State<Ctx>) -> Response {
    json_with_index(1, json!([ctx.registry.config().datacenter]))
}

async fn status_leader(State(ctx): State<Ctx>) -> Response {
    let leader = format!("{}:8300", ctx.registry.config().node_address);
    json_with_index(ctx.registry.index(), json!(leader))
}

async fn status_peers(State(ctx): State<Ctx>) -> Response {
    let leader = format!("{}:8300", ctx.registry.config().node_address);
    json_with_index(ctx.registry.index(), json!([leader]))
}

/// A subset of Consul's filter language (`?filter=`) for service entries: selectors
/// `Service.ID`, `Service.Service`, `Service.Address`, `Service.Port`, `Service.Tags`,
/// `Service.Meta.<key>` (and the catalog spellings `ServiceID`, `ServiceName`,
/// `ServiceAddress`, `ServicePort`, `ServiceTags`, `ServiceMeta.<key>`), operators `==`,
/// `!=`, `contains`, `not contains`, `in`, `not in`, `is empty`, `is not empty`, joined by
/// `and` / `or` / `not` and parentheses. Anything else is a 400.
mod filter {
    use crate::model::ConsulEntry;

    use super::BTreeMap;

    /// The values a selector can reach in one entry.
    pub(super) struct Subject {
        scalars: BTreeMap<String, String>,
        tags: Vec<String>,
        meta: BTreeMap<String, String>,
    }

    impl Subject {
        pub(super) fn new(e: &ConsulEntry) -> Self {
            let s = &e.service;
            let scalars = BTreeMap::from([
                ("id".to_owned(), s.id.clone()),
                ("service".to_owned(), s.service.clone()),
                ("address".to_owned(), s.address.clone()),
                ("port".to_owned(), s.port.to_string()),
                ("kind".to_owned(), s.kind.clone()),
            ]);
            Self {
                scalars,
                tags: s.tags.clone(),
                meta: s.meta.clone(),
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) enum Selector {
        Scalar(String),
        Tags,
        Meta(Option<String>),
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub(super) enum Expr {
        Eq(Selector, String, bool),
        Contains(Selector, String, bool),
        Empty(Selector, bool),
        And(Box<Expr>, Box<Expr>),
        Or(Box<Expr>, Box<Expr>),
        Not(Box<Expr>),
    }

    impl Expr {
        pub(super) fn matches(&self, s: &Subject) -> bool {
            match self {
                Self::Eq(sel, v, negate) => {
                    let eq = match sel {
                        Selector::Scalar(name) => s.scalars.get(name) == Some(v),
                        Selector::Meta(Some(k)) => s.meta.get(k) == Some(v),
                        Selector::Tags | Selector::Meta(None) => false,
                    };
                    eq != *negate
                }
                Self::Contains(sel, v, negate) => {
                    let found = match sel {
                        Selector::Tags => s.tags.contains(v),
                        Selector::Meta(None) => s.meta.contains_key(v),
                        Selector::Meta(Some(k)) => {
                            s.meta.get(k).is_some_and(|m| m.contains(v.as_str()))
                        }
                        Selector::Scalar(name) => {
                            s.scalars.get(name).is_some_and(|x| x.contains(v.as_str()))
                        }
                    };
                    found != *negate
                }
                Self::Empty(sel, negate) => {
                    let empty = match sel {
                        Selector::Tags => s.tags.is_empty(),
                        Selector::Meta(None) => s.meta.is_empty(),
                        Selector::Meta(Some(k)) => s.meta.get(k).is_none_or(String::is_empty),
                        Selector::Scalar(name) => s.scalars.get(name).is_none_or(String::is_empty),
                    };
                    empty != *negate
                }
                Self::And(a, b) => a.matches(s) && b.matches(s),
                Self::Or(a, b) => a.matches(s) || b.matches(s),
                Self::Not(e) => !e.matches(s),
            }
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Token {
        Word(String),
        Str(String),
        Op(&'static str),
        Open,
        Close,
    }

    fn tokens(input: &str) -> Result<Vec<Token>, String> {
        let mut out = Vec::new();
        let mut chars = input.chars().peekable();
        while let Some(&c) = chars.peek() {
            if c.is_whitespace() {
                chars.next();
            } else if c == '(' {
                chars.next();
                out.push(Token::Open);
            } else if c == ')' {
                chars.next();
                out.push(Token::Close);
            } else if c == '=' || c == '!' {
                chars.next();
                if chars.next() != Some('=') {
                    return Err(format!("unexpected {c:?}"));
                }
                out.push(Token::Op(if c == '=' { "==" } else { "!=" }));
            } else if c == '"' || c == '`' {
                let quote = c;
                chars.next();
                let mut s = String::new();
                loop {
                    match chars.next() {
                        None => return Err("unterminated string".into()),
                        Some('\\') if quote == '"' => {
                            if let Some(n) = chars.next() {
                                s.push(n);
                            }
                        }
                        Some(ch) if ch == quote => break,
                        Some(ch) => s.push(ch),
                    }
                }
                out.push(Token::Str(s));
            } else {
                let mut w = String::new();
                while let Some(&ch) = chars.peek() {
                    if ch.is_whitespace() || matches!(ch, '(' | ')' | '=' | '!' | '"' | '`') {
                        break;
                    }
                    w.push(ch);
                    chars.next();
                }
                out.push(Token::Word(w));
            }
        }
        Ok(out)
    }

    struct Parser {
        tokens: Vec<Token>,
        pos: usize,
    }

    impl Parser {
        fn peek_word(&self, w: &str) -> bool {
            matches!(self.tokens.get(self.pos), Some(Token::Word(x)) if x == w)
        }

        fn next(&mut self) -> Option<Token> {
            let t = self.tokens.get(self.pos).cloned();
            self.pos += 1;
            t
        }

        fn or(&mut self) -> Result<Expr, String> {
            let mut left = self.and()?;
            while self.peek_word("or") {
                self.pos += 1;
                left = Expr::Or(Box::new(left), Box::new(self.and()?));
            }
            Ok(left)
        }

        fn and(&mut self) -> Result<Expr, String> {
            let mut left = self.unary()?;
            while self.peek_word("and") {
                self.pos += 1;
                left = Expr::And(Box::new(left), Box::new(self.unary()?));
            }
            Ok(left)
        }

        fn unary(&mut self) -> Result<Expr, String> {
            if self.peek_word("not") {
                self.pos += 1;
                return Ok(Expr::Not(Box::new(self.unary()?)));
            }
            if self.tokens.get(self.pos) == Some(&Token::Open) {
                self.pos += 1;
                let e = self.or()?;
                if self.next() != Some(Token::Close) {
                    return Err("missing )".into());
                }
                return Ok(e);
            }
            self.comparison()
        }

        fn value(&mut self) -> Result<String, String> {
            match self.next() {
                Some(Token::Str(s) | Token::Word(s)) => Ok(s),
                other => Err(format!("expected a value, found {other:?}")),
            }
        }

        fn comparison(&mut self) -> Result<Expr, String> {
            match self.next() {
                Some(Token::Str(v)) => {
                    let negate = self.peek_word("not");
                    if negate {
                        self.pos += 1;
                    }
                    if !self.peek_word("in") {
                        return Err("expected in".into());
                    }
                    self.pos += 1;
                    let sel = selector(&self.value()?)?;
                    Ok(Expr::Contains(sel, v, negate))
                }
                Some(Token::Word(w)) => {
                    let sel = selector(&w)?;
                    match self.next() {
                        Some(Token::Op("==")) => Ok(Expr::Eq(sel, self.value()?, false)),
                        Some(Token::Op("!=")) => Ok(Expr::Eq(sel, self.value()?, true)),
                        Some(Token::Word(op)) if op == "contains" => {
                            Ok(Expr::Contains(sel, self.value()?, false))
                        }
                        Some(Token::Word(op)) if op == "is" => {
                            let negate = self.peek_word("not");
                            if negate {
                                self.pos += 1;
                            }
                            match self.next() {
                                Some(Token::Word(e)) if e == "empty" => {
                                    Ok(Expr::Empty(sel, negate))
                                }
                                _ => Err("expected empty".into()),
                            }
                        }
                        Some(Token::Word(op)) if op == "not" => match self.next() {
                            Some(Token::Word(c)) if c == "contains" => {
                                Ok(Expr::Contains(sel, self.value()?, true))
                            }
                            _ => Err("expected contains".into()),
                        },
                        other => Err(format!("unsupported operator {other:?}")),
                    }
                }
                other => Err(format!("unexpected {other:?}")),
            }
        }
    }

    fn selector(s: &str) -> Result<Selector, String> {
        let rest = s
            .strip_prefix("Service.")
            .map(|r| (r, true))
            .unwrap_or((s, false));
        let (name, dotted) = rest;
        let name = if dotted {
            name.to_owned()
        } else {
            match name.strip_prefix("Service") {
                Some("") | None => return Err(format!("unsupported selector {s}")),
                Some(n) => n.to_owned(),
            }
        };
        let name = if name == "Name" && !dotted {
            "Service".to_owned()
        } else {
            name
        };
        if name == "Tags" {
            return Ok(Selector::Tags);
        }
        if name == "Meta" {
            return Ok(Selector::Meta(None));
        }
        if let Some(key) = name.strip_prefix("Meta.") {
            return Ok(Selector::Meta(Some(key.to_owned())));
        }
        match name.as_str() {
            "ID" | "Service" | "Address" | "Port" | "Kind" => {
                Ok(Selector::Scalar(name.to_lowercase()))
            }
            _ => Err(format!("unsupported selector {s}")),
        }
    }

    pub(super) fn parse(input: &str) -> Result<Expr, String> {
        let mut p = Parser {
            tokens: tokens(input)?,
            pos: 0,
        };
        let e = p.or()?;
        if p.pos != p.tokens.len() {
            return Err("unexpected trailing input".into());
        }
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{ConsulEntry, ConsulServiceView, Weights};

    fn entry() -> ConsulEntry {
        ConsulEntry {
            service: ConsulServiceView {
                id: "web-1".into(),
                service: "web".into(),
                tags: vec!["primary".into()],
                address: "10.0.0.1".into(),
                port: 80,
                meta: BTreeMap::from([("lane".into(), "canary".into())]),
                weights: Weights::default(),
                enable_tag_override: false,
                tagged_addresses: BTreeMap::new(),
                kind: String::new(),
                create_index: 1,
                modify_index: 1,
            },
            checks: Vec::new(),
        }
    }

    #[test]
    fn filter_subset() {
        let s = filter::Subject::new(&entry());
        let check = |f: &str| filter::parse(f).unwrap().matches(&s);
        assert!(check(r#"Service.Meta.lane == "canary""#));
        assert!(!check(r#"Service.Meta.lane != "canary""#));
        assert!(check(r#""primary" in Service.Tags"#));
        assert!(check(
            r#"ServiceTags contains "primary" and ServiceName == web"#
        ));
        assert!(check(
            r#"Service.Meta.version is empty or Service.Port == "81""#
        ));
        assert!(check(r#"not (Service.ID == "web-2")"#));
        assert!(filter::parse("Node.Node == x").is_err());
        assert!(filter::parse("Service.ID ~ x").is_err());
    }

    #[test]
    fn token_order() {
        let uri: Uri = "/v1/agent/services?token=q".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-consul-token", HeaderValue::from_static("h"));
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer b"));
        assert_eq!(request_token(&uri, &headers).as_deref(), Some("q"));
        let uri: Uri = "/v1/agent/services".parse().unwrap();
        assert_eq!(request_token(&uri, &headers).as_deref(), Some("h"));
        headers.remove("x-consul-token");
        assert_eq!(request_token(&uri, &headers).as_deref(), Some("b"));
        headers.remove(header::AUTHORIZATION);
        assert_eq!(request_token(&uri, &headers), None);
    }
}
