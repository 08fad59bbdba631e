//! `/api/v1/namespaces/{ns}/apps/{app}/releases...` and `.../rollback`: starting releases
//! (or planning them with `?dry_run=true`), reading them, and the user's controls over an
//! active one. The rules live in [`crate::service::releases`], shared with the gRPC API; the
//! handlers here only read the request and shape the answer.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use tideway_api_types::{
    Page, PromoteRequest, Release, ReleaseCreate, ReleasePlan, RollbackRequest,
};
use tideway_rollout::Control;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{etag, ApiJson, ApiQuery, AppPath, OptionalJson};
use super::params::ListParams;
use super::{AppState, CommonErrors};
use crate::domain::token::{Action, Principal};
use crate::service::releases;

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/releases", tag = "releases",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"), ListParams),
    responses((status = 200, description = "Releases, newest first", body = Page<Release>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Release>>, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    let page = s
        .store
        .list_releases(&path.ns, &path.app, &params.page()?)
        .await?;
    Ok(Json(Page {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

/// `?dry_run=true` of release creation.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// Answer the plan (steps, instance counts, weights, routes) and change nothing.
    pub dry_run: Option<bool>,
}

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/apps/{app}/releases", tag = "releases",
    request_body = ReleaseCreate,
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"), CreateParams),
    responses((status = 201, description = "Started; follow it with GET .../releases/{id}", body = Release),
              (status = 200, description = "With `dry_run=true`: the plan, nothing changed", body = ReleasePlan), CommonErrors),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    ApiQuery(params): ApiQuery<CreateParams>,
    ApiJson(body): ApiJson<ReleaseCreate>,
) -> Result<Response, ApiError> {
    if params.dry_run.unwrap_or(false) {
        let plan = releases::plan(&s, &p, &path.ns, &path.app, &body).await?;
        return Ok(Json(plan).into_response());
    }
    let release = releases::start(&s, &p, &path.ns, &path.app, &body).await?;
    Ok((StatusCode::CREATED, Json(release)).into_response())
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/releases/{id}", tag = "releases",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
           ("id" = i64, Path, description = "Release id")),
    responses((status = 200, description = "The release: state, current step, analysis results so far", body = Release), CommonErrors),
    security(("bearer" = [])))]
pub async fn get(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    Path(segments): Path<HashMap<String, String>>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    let id = release_id(&segments)?;
    let release = s.store.get_release(&path.ns, &path.app, id).await?;
    Ok((etag(release.generation), Json(release)))
}

fn release_id(segments: &HashMap<String, String>) -> Result<i64, ApiError> {
    let raw = segments.get("id").map(String::as_str).unwrap_or_default();
    raw.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
        ApiError::bad_request("invalid_path", format!("'{raw}' is not a release id"))
    })
}

macro_rules! control_endpoint {
    ($name:ident, $path:literal, $doc:literal) => {
        #[utoipa::path(post, path = $path, tag = "releases",
            params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
                   ("id" = i64, Path, description = "Release id")),
            responses((status = 200, description = $doc, body = Release), CommonErrors),
            security(("bearer" = [])))]
        pub async fn $name(
            State(s): State<Arc<AppState>>,
            Extension(p): Extension<Principal>,
            path: AppPath,
            Path(segments): Path<HashMap<String, String>>,
        ) -> Result<Json<Release>, ApiError> {
            let control = control_of(stringify!($name), false);
            apply_control(&s, &p, &path, &segments, control).await
        }
    };
}

control_endpoint!(
    pause,
    "/api/v1/namespaces/{ns}/apps/{app}/releases/{id}/pause",
    "Paused; a running timed pause keeps its remaining time"
);
control_endpoint!(
    resume,
    "/api/v1/namespaces/{ns}/apps/{app}/releases/{id}/resume",
    "Resumed"
);
control_endpoint!(
    abort,
    "/api/v1/namespaces/{ns}/apps/{app}/releases/{id}/abort",
    "Aborted: all traffic back on the stable version at once"
);

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/apps/{app}/releases/{id}/promote", tag = "releases",
    request_body(content = Option<PromoteRequest>, description = "`{\"full\": true}` skips every remaining step"),
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
           ("id" = i64, Path, description = "Release id")),
    responses((status = 200, description = "Promoted to the next step (or to the end)", body = Release), CommonErrors),
    security(("bearer" = [])))]
pub async fn promote(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    Path(segments): Path<HashMap<String, String>>,
    OptionalJson(body): OptionalJson<PromoteRequest>,
) -> Result<Json<Release>, ApiError> {
    let full = body.full;
    apply_control(&s, &p, &path, &segments, control_of("promote", full)).await
}

fn control_of(name: &str, full: bool) -> Control {
    match name {
        "pause" => Control::Pause,
        "resume" => Control::Resume,
        "abort" => Control::Abort,
        _ => Control::Promote { full },
    }
}

async fn apply_control(
    s: &AppState,
    p: &Principal,
    path: &AppPath,
    segments: &HashMap<String, String>,
    control: Control,
) -> Result<Json<Release>, ApiError> {
    // Authorized before the id is parsed: a refused caller gets 403 whatever the path holds.
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    let id = release_id(segments)?;
    let release = releases::control(s, p, &path.ns, &path.app, id, control).await?;
    Ok(Json(release))
}

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/apps/{app}/rollback", tag = "releases",
    request_body(content = Option<RollbackRequest>, description = "The version to go back to; defaults to the one that served before"),
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App")),
    responses((status = 201, description = "An immediate release of the earlier version, superseding any active release", body = Release), CommonErrors),
    security(("bearer" = [])))]
pub async fn rollback(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    OptionalJson(body): OptionalJson<RollbackRequest>,
) -> Result<impl IntoResponse, ApiError> {
    let release = releases::rollback(&s, &p, &path.ns, &path.app, body.version).await?;
    Ok((StatusCode::CREATED, Json(release)))
}
