//! `/api/v1/namespaces/{ns}/apps/...`: apps and everything that hangs off one — versions,
//! releases, instances, scale and the autoscaling policy.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::json;
use tideway_api_types::{
    App, AppCreate, AppPatch, AutoscalingPolicy, AutoscalingPolicyState, Instance, Page, Release,
    ReleaseCreate, Scale, Strategy, Version, VersionCreate, VersionState,
};

use super::error::ApiError;
use super::extract::{etag, ApiJson, ApiQuery, AppPath, IfMatch, NsPath, NumberPath};
use super::params::ListParams;
use super::{AppState, CommonErrors};
use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::policy::validate_policy;
use crate::domain::spec::{
    validate_description, validate_labels, validate_replicas, validate_version,
};
use crate::domain::token::{Action, Principal};
use crate::domain::Invalid;
use crate::store::{Page as StorePage, StoreError};

fn wire<T>(page: StorePage<T>) -> Json<Page<T>> {
    Json(Page {
        items: page.items,
        next_cursor: page.next_cursor,
    })
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps", tag = "apps",
    params(("ns" = String, Path, description = "Namespace"), ListParams),
    responses((status = 200, description = "Apps in the namespace", body = Page<App>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<App>>, ApiError> {
    p.authorize(Action::Read, Some(ns.as_str()))?;
    Ok(wire(s.store.list_apps(&ns, &params.page()?).await?))
}

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/apps", tag = "apps", request_body = AppCreate,
    params(("ns" = String, Path, description = "Namespace")),
    responses((status = 201, description = "Created", body = App), CommonErrors),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
    ApiJson(body): ApiJson<AppCreate>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Deploy, Some(ns.as_str()))?;
    let name = Name::parse(&body.name)?;
    validate_description(&body.description)?;
    validate_labels(&body.labels)?;
    validate_replicas(body.replicas.unwrap_or(1))?;
    let event = NewEvent::new("AppCreated", &p.name, "created through the API")
        .app(ns.as_str(), name.as_str())
        .details(json!({"replicas": body.replicas.unwrap_or(1), "labels": body.labels}));
    let app = s.store.create_app(&ns, &body, event).await?;
    Ok((StatusCode::CREATED, etag(app.generation), Json(app)))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}", tag = "apps",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App")),
    responses((status = 200, description = "The app; ETag is its generation", body = App), CommonErrors),
    security(("bearer" = [])))]
pub async fn get(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    let rec = s.store.get_app(&path.ns, &path.app).await?;
    Ok((etag(rec.app.generation), Json(rec.app)))
}

#[utoipa::path(patch, path = "/api/v1/namespaces/{ns}/apps/{app}", tag = "apps", request_body = AppPatch,
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
           ("If-Match" = Option<String>, Header, description = "ETag from a previous GET")),
    responses((status = 200, description = "Updated", body = App), CommonErrors),
    security(("bearer" = [])))]
pub async fn patch(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    IfMatch(expected): IfMatch,
    ApiJson(body): ApiJson<AppPatch>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    if let Some(d) = &body.description {
        validate_description(d)?;
    }
    if let Some(l) = &body.labels {
        validate_labels(l)?;
    }
    let (ns, actor) = (path.ns.to_string(), p.name.clone());
    let change = move |app: &mut App| -> Result<NewEvent, Invalid> {
        if let Some(d) = &body.description {
            app.description = d.clone();
        }
        if let Some(l) = &body.labels {
            app.labels = l.clone();
        }
        Ok(
            NewEvent::new("AppUpdated", &actor, "updated through the API")
                .app(&ns, &app.name)
                .details(json!({"description": body.description, "labels": body.labels})),
        )
    };
    let app = s
        .store
        .update_app(&path.ns, &path.app, expected, &change)
        .await?;
    Ok((etag(app.generation), Json(app)))
}

#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}/apps/{app}", tag = "apps",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
           ("If-Match" = Option<String>, Header, description = "ETag from a previous GET")),
    responses((status = 204, description = "Deleted, with its versions, releases and policy"), CommonErrors),
    security(("bearer" = [])))]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    IfMatch(expected): IfMatch,
) -> Result<StatusCode, ApiError> {
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    let event = NewEvent::new("AppDeleted", &p.name, "deleted through the API")
        .app(path.ns.as_str(), path.app.as_str());
    s.store
        .delete_app(&path.ns, &path.app, expected, event)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/versions", tag = "versions",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"), ListParams),
    responses((status = 200, description = "Versions, newest first", body = Page<Version>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list_versions(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Version>>, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    Ok(wire(
        s.store
            .list_versions(&path.ns, &path.app, &params.page()?)
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/apps/{app}/versions", tag = "versions",
    request_body = VersionCreate,
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App")),
    responses((status = 201, description = "Created", body = Version), CommonErrors),
    security(("bearer" = [])))]
pub async fn create_version(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    ApiJson(body): ApiJson<VersionCreate>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    validate_version(&body)?;
    let event = NewEvent::new("VersionCreated", &p.name, "created through the API")
        .app(path.ns.as_str(), path.app.as_str())
        .details(json!({"artifact_digest": body.artifact_digest}));
    let version = s
        .store
        .create_version(&path.ns, &path.app, &body, VersionState::Ready, event)
        .await?;
    Ok((StatusCode::CREATED, Json(version)))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/versions/{version}", tag = "versions",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
           ("version" = String, Path, description = "Version number, e.g. 3 or v3")),
    responses((status = 200, description = "The version", body = Version), CommonErrors),
    security(("bearer" = [])))]
pub async fn get_version(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    NumberPath(number): NumberPath,
) -> Result<Json<Version>, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    let number = u32::try_from(number)
        .map_err(|_| ApiError::not_found(format!("version {number} not found")))?;
    Ok(Json(
        s.store.get_version(&path.ns, &path.app, number).await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/releases", tag = "releases",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"), ListParams),
    responses((status = 200, description = "Releases, newest first", body = Page<Release>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list_releases(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Release>>, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    Ok(wire(
        s.store
            .list_releases(&path.ns, &path.app, &params.page()?)
            .await?,
    ))
}

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/apps/{app}/releases", tag = "releases",
    request_body = ReleaseCreate,
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App")),
    responses((status = 201, description = "Started; follow it with GET .../releases/{id}", body = Release), CommonErrors),
    security(("bearer" = [])))]
pub async fn create_release(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    ApiJson(body): ApiJson<ReleaseCreate>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    let strategy = body.strategy.unwrap_or(Strategy::Immediate);
    let event = NewEvent::new("ReleaseCreated", &p.name, "started through the API")
        .app(path.ns.as_str(), path.app.as_str())
        .details(json!({"target_version": body.target_version, "strategy": strategy}));
    let release = s
        .store
        .create_release(&path.ns, &path.app, body.target_version, &strategy, event)
        .await
        .map_err(|e| match e {
            // The app exists but the body names a version it does not have.
            StoreError::NotFound {
                kind: "version", ..
            } => ApiError::Validation(Invalid::new(
                "target_version",
                format!("the app has no version {}", body.target_version),
            )),
            other => other.into(),
        })?;
    s.release_wake.notify_one();
    Ok((StatusCode::CREATED, Json(release)))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/releases/{id}", tag = "releases",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
           ("id" = i64, Path, description = "Release id")),
    responses((status = 200, description = "The release", body = Release), CommonErrors),
    security(("bearer" = [])))]
pub async fn get_release(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    NumberPath(id): NumberPath,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    let release = s.store.get_release(&path.ns, &path.app, id).await?;
    Ok((etag(release.generation), Json(release)))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/instances", tag = "instances",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"), ListParams),
    responses((status = 200, description = "Instances of every version", body = Page<Instance>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list_instances(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Instance>>, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    Ok(wire(
        s.store
            .list_instances(&path.ns, &path.app, &params.page()?)
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/scale", tag = "scale",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App")),
    responses((status = 200, description = "Desired instances; ETag is the app's generation", body = Scale), CommonErrors),
    security(("bearer" = [])))]
pub async fn get_scale(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    let rec = s.store.get_app(&path.ns, &path.app).await?;
    Ok((
        etag(rec.app.generation),
        Json(Scale {
            replicas: rec.app.replicas,
        }),
    ))
}

#[utoipa::path(put, path = "/api/v1/namespaces/{ns}/apps/{app}/scale", tag = "scale", request_body = Scale,
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
           ("If-Match" = Option<String>, Header, description = "ETag of the app")),
    responses((status = 200, description = "Scaled", body = Scale), CommonErrors),
    security(("bearer" = [])))]
pub async fn put_scale(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    IfMatch(expected): IfMatch,
    ApiJson(body): ApiJson<Scale>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    validate_replicas(body.replicas)?;
    let (ns, actor, replicas) = (path.ns.to_string(), p.name.clone(), body.replicas);
    let change = move |app: &mut App| -> Result<NewEvent, Invalid> {
        let from = app.replicas;
        app.replicas = replicas;
        Ok(NewEvent::new(
            "AppScaled",
            &actor,
            format!("manual scale from {from} to {replicas}"),
        )
        .app(&ns, &app.name)
        .details(json!({"from": from, "to": replicas})))
    };
    let app = s
        .store
        .update_app(&path.ns, &path.app, expected, &change)
        .await?;
    Ok((
        etag(app.generation),
        Json(Scale {
            replicas: app.replicas,
        }),
    ))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/autoscaling", tag = "autoscaling",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App")),
    responses((status = 200, description = "The policy; ETag is its generation", body = AutoscalingPolicyState), CommonErrors),
    security(("bearer" = [])))]
pub async fn get_autoscaling(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    match s.store.get_policy(&path.ns, &path.app).await? {
        Some(state) => Ok((etag(state.generation), Json(state))),
        None => Err(ApiError::NotFound {
            message: format!("app '{}/{}' has no autoscaling policy", path.ns, path.app),
            details: json!({"kind": "autoscaling_policy", "name": format!("{}/{}", path.ns, path.app)}),
        }),
    }
}

#[utoipa::path(put, path = "/api/v1/namespaces/{ns}/apps/{app}/autoscaling", tag = "autoscaling",
    request_body = AutoscalingPolicy,
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
           ("If-Match" = Option<String>, Header, description = "ETag of the policy (\"0\" when none is set)")),
    responses((status = 200, description = "Stored", body = AutoscalingPolicyState), CommonErrors),
    security(("bearer" = [])))]
pub async fn put_autoscaling(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    IfMatch(expected): IfMatch,
    ApiJson(policy): ApiJson<AutoscalingPolicy>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    validate_policy(&policy)?;
    let event = NewEvent::new(
        "AutoscalingPolicyUpdated",
        &p.name,
        "updated through the API",
    )
    .app(path.ns.as_str(), path.app.as_str())
    .details(json!({"policy": policy}));
    let state = s
        .store
        .put_policy(&path.ns, &path.app, &policy, expected, event)
        .await?;
    Ok((etag(state.generation), Json(state)))
}
