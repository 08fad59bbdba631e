//! `/api/v1/namespaces/{ns}/apps/{app}/releases...` and `.../rollback`: starting releases
//! (or planning them with `?dry_run=true`), reading them, and the user's controls over an
//! active one. The release reconciler walks them; this module only records intent.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::json;
use tideway_api_types::{
    Page, PromoteRequest, Release, ReleaseCreate, ReleasePlan, ReleaseState, RollbackRequest,
    Strategy,
};
use tideway_rollout::Control;
use utoipa::IntoParams;

use super::error::ApiError;
use super::extract::{etag, ApiJson, ApiQuery, AppPath, OptionalJson};
use super::params::ListParams;
use super::{AppState, CommonErrors};
use crate::domain::event::NewEvent;
use crate::domain::placement::context_of;
use crate::domain::token::{Action, Principal};
use crate::domain::Invalid;
use crate::store::{PageRequest, StoreError};

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
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    let strategy = body.strategy.unwrap_or(Strategy::Immediate);
    tideway_rollout::validate(&strategy)
        .map_err(|e| ApiError::Validation(Invalid::new(e.field, e.message)))?;
    let record = s.store.get_app(&path.ns, &path.app).await?;
    let no_version = || {
        ApiError::Validation(Invalid::new(
            "target_version",
            format!("the app has no version {}", body.target_version),
        ))
    };
    if params.dry_run.unwrap_or(false) {
        match s
            .store
            .get_version(&path.ns, &path.app, body.target_version)
            .await
        {
            Ok(_) => {}
            Err(StoreError::NotFound { .. }) => return Err(no_version()),
            Err(e) => return Err(e.into()),
        }
        let ctx = tideway_rollout::Context {
            replicas: record.app.replicas.max(1),
            stable_version: record.app.current_version,
        };
        let plan = tideway_rollout::plan(&strategy, body.target_version, &ctx);
        return Ok(Json(plan).into_response());
    }
    let event = NewEvent::new("ReleaseCreated", &p.name, "started through the API")
        .app(path.ns.as_str(), path.app.as_str())
        .details(json!({"target_version": body.target_version, "strategy": strategy}));
    let result = if body.supersede {
        let superseded = NewEvent::new(
            "ReleaseSuperseded",
            &p.name,
            format!("superseded by a release of v{}", body.target_version),
        )
        .app(path.ns.as_str(), path.app.as_str());
        s.store
            .replace_release(
                &path.ns,
                &path.app,
                body.target_version,
                &strategy,
                event,
                superseded,
            )
            .await
    } else {
        s.store
            .create_release(&path.ns, &path.app, body.target_version, &strategy, event)
            .await
    };
    let release = result.map_err(|e| match e {
        // The app exists but the body names a version it does not have.
        StoreError::NotFound {
            kind: "version", ..
        } => no_version(),
        other => other.into(),
    })?;
    wake_all(&s);
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
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    let id = release_id(segments)?;
    // The reconciler may move the release between our read and our write; the control then
    // applies to the release as it is now, a few times before giving up.
    let mut attempts = 0;
    loop {
        let release = s.store.get_release(&path.ns, &path.app, id).await?;
        let record = s.store.get_app(&path.ns, &path.app).await?;
        let ctx = context_of(&record.app, &release);
        let transition =
            tideway_rollout::control(&release, &ctx, control, s.clock.now()).map_err(|e| {
                ApiError::Conflict {
                    code: e.code,
                    message: e.message,
                }
            })?;
        let event = NewEvent::new(transition.kind, &p.name, transition.reason.clone())
            .app(path.ns.as_str(), path.app.as_str())
            .details(json!({"release": id, "inputs": transition.details}));
        match s
            .store
            .transition_release(id, release.generation, &transition, event)
            .await
        {
            Ok(updated) => {
                wake_all(s);
                return Ok(Json(updated));
            }
            Err(StoreError::PreconditionFailed { .. }) if attempts < 5 => attempts += 1,
            Err(e) => return Err(e.into()),
        }
    }
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
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    let record = s.store.get_app(&path.ns, &path.app).await?;
    let asked = body.version;
    let version = match asked {
        Some(v) => v,
        None => previous_version(&s, &path, record.app.current_version).await?,
    };
    if Some(version) == record.app.current_version {
        let active = s
            .store
            .list_releases(&path.ns, &path.app, &first_page())
            .await?
            .items
            .into_iter()
            .any(|r| r.state.is_active());
        if !active {
            return Err(ApiError::Conflict {
                code: "already_serving",
                message: format!("v{version} is already the serving version"),
            });
        }
    }
    let strategy = Strategy::Immediate;
    let reason = format!("rollback to v{version}");
    let event = NewEvent::new("RollbackStarted", &p.name, reason.clone())
        .app(path.ns.as_str(), path.app.as_str())
        .details(json!({"target_version": version, "strategy": strategy, "rollback": true}));
    let superseded = NewEvent::new("ReleaseSuperseded", &p.name, reason)
        .app(path.ns.as_str(), path.app.as_str());
    let release = s
        .store
        .replace_release(&path.ns, &path.app, version, &strategy, event, superseded)
        .await
        .map_err(|e| match e {
            StoreError::NotFound {
                kind: "version", ..
            } => ApiError::Validation(Invalid::new(
                "version",
                format!("the app has no version {version}"),
            )),
            other => other.into(),
        })?;
    wake_all(&s);
    Ok((StatusCode::CREATED, Json(release)))
}

fn first_page() -> PageRequest {
    PageRequest {
        limit: 50,
        cursor: None,
    }
}

/// The version to roll back to by default: the active release's stable version, or the one
/// the release that made the current version serve replaced.
async fn previous_version(
    s: &AppState,
    path: &AppPath,
    current: Option<u32>,
) -> Result<u32, ApiError> {
    let releases = s
        .store
        .list_releases(&path.ns, &path.app, &first_page())
        .await?
        .items;
    if let Some(active) = releases.iter().find(|r| r.state.is_active()) {
        if let Some(stable) = active.progress.stable_version.or(current) {
            return Ok(stable);
        }
    }
    releases
        .iter()
        .filter(|r| r.state == ReleaseState::Succeeded && Some(r.target_version) == current)
        .find_map(|r| {
            r.progress
                .stable_version
                .or_else(|| r.from_versions.last().copied())
        })
        .ok_or_else(|| {
            ApiError::Validation(Invalid::new(
                "version",
                "the app has no earlier serving version; name one",
            ))
        })
}

fn wake_all(s: &AppState) {
    s.release_wake.notify_one();
    s.runtime_wake.notify_one();
    s.routes_wake.notify_one();
}
