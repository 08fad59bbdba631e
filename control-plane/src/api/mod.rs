//! The REST API under `/api/v1`, plus `/healthz`, `/readyz`, `/metrics` and the OpenAPI
//! document. Handlers parse (extractors), authorize, call the store or domain, and map the
//! result; they hold no business rules of their own.

pub mod apps;
pub mod auth;
pub mod error;
pub mod events;
pub mod extract;
pub mod namespaces;
pub mod params;
pub mod registries;
pub mod releases;
pub mod tokens;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use tideway_api_types::{ErrorBody, HealthStatus};
use tokio::sync::Notify;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, OpenApi};

use self::auth::TokenCache;
use self::error::ApiError;
use crate::clock::Clock;
use crate::intake::Intake;
use crate::layout::Layout;
use crate::runtime::RuntimeDriver;
use crate::store::Store;
use crate::telemetry::{self, HttpMetrics};

/// Everything a handler may use, built once at start.
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub runtime: Arc<dyn RuntimeDriver>,
    pub intake: Arc<Intake>,
    pub layout: Layout,
    pub clock: Arc<dyn Clock>,
    pub tokens: TokenCache,
    pub metrics: Arc<HttpMetrics>,
    /// Wakes the release reconciler when a release is created.
    pub release_wake: Arc<Notify>,
    /// Wakes the runtime reconciler when desired instances change.
    pub runtime_wake: Arc<Notify>,
    /// Wakes the build reconciler (and its garbage collection).
    pub build_wake: Arc<Notify>,
    /// Wakes the route builder: the gateway's table must follow within 100 ms.
    pub routes_wake: Arc<Notify>,
    /// The gateway's per-second request metrics.
    pub gateway_metrics: Arc<tideway_gateway::GatewayMetrics>,
    /// The autoscaler's live view, for the status endpoint.
    pub scaling: Arc<crate::reconcile::autoscale::ScalingStatus>,
    /// The registry bridge's view (connections' status, what registries hold).
    pub bridge: Arc<crate::reconcile::registry::BridgeView>,
}

/// Largest JSON body accepted by `/api/v1`.
pub const JSON_BODY_LIMIT: usize = 1024 * 1024;

/// The error answers every endpoint may give, for the OpenAPI document.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum CommonErrors {
    /// Malformed body, path or query (`invalid_body`, `malformed_json`, `invalid_name`, …).
    #[response(status = 400)]
    BadRequest(#[to_schema] ErrorBody),
    /// Missing or unknown bearer token.
    #[response(status = 401)]
    Unauthenticated(ErrorBody),
    /// The token's role or namespaces do not allow this.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// Already exists, or the current state forbids it.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// `If-Match` does not match the current generation.
    #[response(status = 412)]
    PreconditionFailed(ErrorBody),
    #[response(status = 413)]
    PayloadTooLarge(ErrorBody),
    #[response(status = 415)]
    UnsupportedMediaType(ErrorBody),
    /// Well-formed but invalid (`validation_failed`, with the field).
    #[response(status = 422)]
    Unprocessable(ErrorBody),
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Tideway API", description = "Control plane of the Tideway elastic microservice platform."),
    paths(
        namespaces::list, namespaces::create, namespaces::get, namespaces::patch, namespaces::delete,
        apps::list, apps::create, apps::get, apps::patch, apps::delete,
        apps::list_versions, apps::create_version, apps::get_version, apps::get_build_log,
        releases::list, releases::create, releases::get, releases::promote, releases::pause,
        releases::resume, releases::abort, releases::rollback,
        apps::list_instances, apps::logs, apps::get_scale, apps::put_scale,
        apps::get_autoscaling, apps::put_autoscaling, apps::autoscaling_status, apps::get_traffic, apps::put_traffic, apps::metrics,
        registries::list, registries::create, registries::get, registries::delete,
        registries::instances, registries::list_sync, registries::create_sync,
        registries::delete_sync,
        tokens::list, tokens::create, tokens::revoke, tokens::whoami,
        events::list,
        healthz, readyz, metrics,
    ),
    components(schemas(ErrorBody, HealthStatus)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The whole HTTP surface of the control plane.
pub fn router(state: Arc<AppState>) -> Router {
    router_with(state, Router::new())
}

/// [`router`] with `pages` (the web console) merged at `/`, under the API's fallback and
/// layers; the console's routes never overlap `/api/v1`, `/healthz`, `/readyz` or `/metrics`.
pub fn router_with(state: Arc<AppState>, pages: Router<Arc<AppState>>) -> Router {
    let app = "/namespaces/{ns}/apps/{app}";
    let v1 = Router::new()
        .route(
            "/namespaces",
            get(namespaces::list).post(namespaces::create),
        )
        .route(
            "/namespaces/{ns}",
            get(namespaces::get)
                .patch(namespaces::patch)
                .delete(namespaces::delete),
        )
        .route(
            "/namespaces/{ns}/registries",
            get(registries::list).post(registries::create),
        )
        .route(
            "/namespaces/{ns}/registries/sync",
            get(registries::list_sync).post(registries::create_sync),
        )
        .route(
            "/namespaces/{ns}/registries/sync/{name}",
            delete(registries::delete_sync),
        )
        .route(
            "/namespaces/{ns}/registries/{name}",
            get(registries::get).delete(registries::delete),
        )
        .route(
            "/namespaces/{ns}/registries/{name}/instances",
            get(registries::instances),
        )
        .route("/namespaces/{ns}/apps", get(apps::list).post(apps::create))
        .route(app, get(apps::get).patch(apps::patch).delete(apps::delete))
        .route(
            &format!("{app}/versions"),
            get(apps::list_versions).post(apps::create_version),
        )
        .route(
            &format!("{app}/versions/{{version}}"),
            get(apps::get_version),
        )
        .route(
            &format!("{app}/versions/{{version}}/build-log"),
            get(apps::get_build_log),
        )
        .route(
            &format!("{app}/releases"),
            get(releases::list).post(releases::create),
        )
        .route(&format!("{app}/releases/{{id}}"), get(releases::get))
        .route(
            &format!("{app}/releases/{{id}}/promote"),
            post(releases::promote),
        )
        .route(
            &format!("{app}/releases/{{id}}/pause"),
            post(releases::pause),
        )
        .route(
            &format!("{app}/releases/{{id}}/resume"),
            post(releases::resume),
        )
        .route(
            &format!("{app}/releases/{{id}}/abort"),
            post(releases::abort),
        )
        .route(&format!("{app}/rollback"), post(releases::rollback))
        .route(&format!("{app}/instances"), get(apps::list_instances))
        .route(&format!("{app}/logs"), get(apps::logs))
        .route(
            &format!("{app}/scale"),
            get(apps::get_scale).put(apps::put_scale),
        )
        .route(
            &format!("{app}/autoscaling"),
            get(apps::get_autoscaling).put(apps::put_autoscaling),
        )
        .route(
            &format!("{app}/autoscaling/status"),
            get(apps::autoscaling_status),
        )
        .route(
            &format!("{app}/traffic"),
            get(apps::get_traffic).put(apps::put_traffic),
        )
        .route(&format!("{app}/metrics"), get(apps::metrics))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}", delete(tokens::revoke))
        .route("/whoami", get(tokens::whoami))
        .route("/events", get(events::list))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .nest("/api/v1", v1)
        .merge(pages)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.metrics.clone(),
            telemetry::track,
        ))
        .with_state(state)
}

#[utoipa::path(get, path = "/healthz", tag = "system",
    responses((status = 200, description = "The process is alive", body = HealthStatus)))]
async fn healthz() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok".into(),
        detail: None,
    })
}

#[utoipa::path(get, path = "/readyz", tag = "system",
    responses((status = 200, description = "Ready to serve", body = HealthStatus),
              (status = 503, description = "The database does not answer", body = HealthStatus)))]
async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    match s.store.ping().await {
        Ok(()) => (
            StatusCode::OK,
            Json(HealthStatus {
                status: "ready".into(),
                detail: None,
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(HealthStatus {
                status: "unavailable".into(),
                detail: Some(e.to_string()),
            }),
        ),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        ApiDoc::openapi().to_pretty_json().unwrap_or_default(),
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
