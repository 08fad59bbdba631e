//! `/api/v1/namespaces/{ns}/apps/...`: apps and everything that hangs off one — versions,
//! releases, instances, scale and the autoscaling policy.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use futures_util::StreamExt;
use serde_json::json;
use tideway_api_types::{
    App, AppCreate, AppMetrics, AppPatch, AutoscalingPolicy, AutoscalingPolicyState,
    AutoscalingStatus, Instance, LogLine, Page, Scale, TrafficPolicy, TrafficPolicyState, Version,
    VersionState,
};

use super::error::ApiError;
use super::extract::{etag, ApiJson, ApiQuery, AppPath, IfMatch, NsPath, NumberPath};
use super::params::ListParams;
use super::{AppState, CommonErrors};
use crate::domain::event::NewEvent;
use crate::domain::policy::validate_policy;
use crate::domain::spec::{
    validate_description, validate_domains, validate_labels, validate_path_prefixes,
    validate_replicas,
};
use crate::domain::token::{Action, Principal};
use crate::domain::traffic::validate_traffic;
use crate::domain::Invalid;
use crate::reconcile::autoscale;
use crate::service::{self, apps::LogRequest};
use crate::store::{EventFilter, Page as StorePage};

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
    let app = service::apps::create_app(&s, &p, &ns, &body).await?;
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
    if let Some(d) = &body.domains {
        validate_domains(d)?;
    }
    if let Some(prefixes) = &body.path_prefixes {
        validate_path_prefixes(prefixes)?;
    }
    if let Some(bindings) = &body.registries {
        service::apps::ensure_registries_exist(&s, &path.ns, bindings).await?;
    }
    if body.domains.is_some() || body.path_prefixes.is_some() {
        let me = (path.ns.to_string(), path.app.to_string());
        service::apps::ensure_routes_free(
            &s,
            Some(&me),
            body.domains.as_deref().unwrap_or_default(),
            body.path_prefixes.as_deref().unwrap_or_default(),
        )
        .await?;
    }
    let (ns, actor) = (path.ns.to_string(), p.name.clone());
    let change = move |app: &mut App| -> Result<NewEvent, Invalid> {
        if let Some(d) = &body.description {
            app.description = d.clone();
        }
        if let Some(l) = &body.labels {
            app.labels = l.clone();
        }
        if let Some(d) = &body.domains {
            app.domains = d.clone();
        }
        if let Some(prefixes) = &body.path_prefixes {
            app.path_prefixes = prefixes.clone();
        }
        if let Some(bindings) = &body.registries {
            app.registries = bindings.clone();
        }
        Ok(
            NewEvent::new("AppUpdated", &actor, "updated through the API")
                .app(&ns, &app.name)
                .details(json!({
                    "description": body.description,
                    "labels": body.labels,
                    "domains": body.domains,
                    "path_prefixes": body.path_prefixes,
                    "registries": body.registries,
                })),
        )
    };
    let app = s
        .store
        .update_app(&path.ns, &path.app, expected, &change)
        .await?;
    s.routes_wake.notify_one();
    s.bridge.wake();
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
    let record = s.store.get_app(&path.ns, &path.app).await?;
    let event = NewEvent::new("AppDeleted", &p.name, "deleted through the API")
        .app(path.ns.as_str(), path.app.as_str());
    s.store
        .delete_app(&path.ns, &path.app, expected, event)
        .await?;
    // Its instances are drained by the runtime reconciler; its files and any artifact no
    // other version uses go now (running processes keep their open directory).
    s.runtime_wake.notify_one();
    if let Err(e) = tokio::fs::remove_dir_all(s.layout.app_dir(record.id)).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(error = %e, "AppFilesRemoveError");
        }
    }
    s.intake.collect_garbage().await?;
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
    request_body(description = "The artifact: a tar.gz or zip of a directory with tideway.toml at its root, as the raw body or the `artifact` field of a multipart form",
        content((Vec<u8> = "application/gzip"), (Vec<u8> = "application/zip"), (Vec<u8> = "application/octet-stream"), (Vec<u8> = "multipart/form-data"))),
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App")),
    responses((status = 201, description = "Created; `building` until its build step has run", body = Version), CommonErrors),
    security(("bearer" = [])))]
pub async fn create_version(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    let limit = s.intake.limits.max_artifact_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        // Read (and discard) a bounded part of the body first: closing on a client still
        // sending makes it see a broken pipe instead of this answer.
        discard_body(request.into_body()).await;
        return Err(ApiError::PayloadTooLarge {
            code: "artifact_too_large",
            message: format!("the artifact is larger than the limit of {limit} bytes"),
        });
    }
    let media = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let version =
        match media.as_str() {
            "application/json" => return Err(ApiError::bad_request(
                "artifact_required",
                "upload the artifact itself: a tar.gz or zip with Content-Type application/gzip, \
                 application/zip, application/octet-stream or multipart/form-data",
            )),
            "multipart/form-data" => {
                let multipart = Multipart::from_request(request, &())
                    .await
                    .map_err(|e| ApiError::bad_request("invalid_multipart", e.body_text()))?;
                upload_multipart(&s, &path, &p.name, multipart).await?
            }
            _ => {
                let body = request.into_body().into_data_stream();
                service::apps::create_version(&s, &path.ns, &path.app, &p.name, body).await?
            }
        };
    Ok((StatusCode::CREATED, Json(version)))
}

/// Reads up to 64 MiB or 5 s of a body we are refusing, so the client reads our answer.
async fn discard_body(body: Body) {
    const CAP: usize = 64 << 20;
    let mut stream = body.into_data_stream();
    let drain = async {
        let mut seen = 0;
        while let Some(Ok(chunk)) = stream.next().await {
            seen += chunk.len();
            if seen > CAP {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drain).await;
}

/// Streams the `artifact` field (or the first file field) of a form into the intake.
async fn upload_multipart(
    s: &AppState,
    path: &AppPath,
    actor: &str,
    mut multipart: Multipart,
) -> Result<Version, ApiError> {
    let mut field = loop {
        match multipart.next_field().await {
            Ok(Some(f)) if f.name() == Some("artifact") || f.file_name().is_some() => break f,
            Ok(Some(_)) => continue,
            Ok(None) => {
                return Err(ApiError::bad_request(
                    "artifact_required",
                    "the form has no `artifact` file field",
                ))
            }
            Err(e) => return Err(ApiError::bad_request("invalid_multipart", e.body_text())),
        }
    };
    // The field borrows the form, so it is pumped through a channel into the intake, which
    // needs an owned stream to hash and store it off the async threads.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(8);
    let pump = async move {
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    let _ = tx.send(Err(std::io::Error::other(e.body_text()))).await;
                    return;
                }
            }
        }
    };
    let intake = service::apps::create_version(
        s,
        &path.ns,
        &path.app,
        actor,
        tokio_stream::wrappers::ReceiverStream::new(rx),
    );
    let ((), version) = tokio::join!(pump, intake);
    version
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/versions/{version}/build-log", tag = "versions",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
           ("version" = String, Path, description = "Version number, e.g. 3 or v3")),
    responses((status = 200, description = "Output of the build step", content_type = "text/plain", body = String), CommonErrors),
    security(("bearer" = [])))]
pub async fn get_build_log(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    NumberPath(number): NumberPath,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    let number = u32::try_from(number)
        .map_err(|_| ApiError::not_found(format!("version {number} not found")))?;
    let record = s.store.get_app(&path.ns, &path.app).await?;
    let version = s.store.get_version(&path.ns, &path.app, number).await?;
    if version.build_command.is_none() {
        return Err(ApiError::not_found(format!("v{number} has no build step")));
    }
    let log = tokio::fs::read(s.layout.build_log(record.id, number))
        .await
        .unwrap_or_default();
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], log))
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

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/instances", tag = "instances",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"), ListParams),
    responses((status = 200, description = "Instances of every version, as the runtime observes them now", body = Page<Instance>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list_instances(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Instance>>, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    s.store.get_app(&path.ns, &path.app).await?;
    let page = params.page()?;
    let mut items: Vec<Instance> = s
        .runtime
        .instances()
        .into_iter()
        .filter(|i| i.namespace == path.ns.as_str() && i.app == path.app.as_str())
        .filter(|i| {
            page.cursor
                .as_ref()
                .is_none_or(|c| i.id.as_str() > c.as_str())
        })
        .collect();
    items.sort_by(|a, b| a.id.cmp(&b.id));
    let limit = page.limit as usize;
    let next_cursor = (items.len() > limit).then(|| items[limit - 1].id.clone());
    items.truncate(limit);
    Ok(Json(Page { items, next_cursor }))
}

/// `?follow=&instance=&since=&tail=` of the log endpoint.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogParams {
    /// Keep the response open and stream new lines.
    pub follow: Option<bool>,
    /// Only this instance.
    pub instance: Option<String>,
    /// Only lines at or after this RFC 3339 time.
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only the last N lines of each instance's captured output (at most 10000).
    pub tail: Option<usize>,
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/logs", tag = "instances",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"), LogParams),
    responses((status = 200, description = "Newline-delimited JSON log lines, or Server-Sent Events with `Accept: text/event-stream`", content_type = "application/x-ndjson", body = LogLine), CommonErrors),
    security(("bearer" = [])))]
pub async fn logs(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    headers: HeaderMap,
    ApiQuery(params): ApiQuery<LogParams>,
) -> Result<Response, ApiError> {
    let request = LogRequest {
        instance: params.instance,
        since: params.since,
        tail: params.tail,
        follow: params.follow.unwrap_or(false),
    };
    let feed = service::apps::logs(&s, &p, &path.ns, &path.app, request).await?;
    let wants_sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if wants_sse {
        let events = feed.map(|line| {
            Ok::<_, std::convert::Infallible>(
                SseEvent::default()
                    .json_data(&line)
                    .unwrap_or_else(|_| SseEvent::default().comment("unencodable line")),
            )
        });
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let lines = feed.map(|line| {
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        Ok::<_, std::convert::Infallible>(Bytes::from(bytes))
    });
    Ok((
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response())
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
    s.runtime_wake.notify_one();
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

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/autoscaling/status", tag = "autoscaling",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App")),
    responses((status = 200, description = "The autoscaler's current view of each version and its latest decisions with their reasons", body = AutoscalingStatus), CommonErrors),
    security(("bearer" = [])))]
pub async fn autoscaling_status(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
) -> Result<Json<AutoscalingStatus>, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    let record = s.store.get_app(&path.ns, &path.app).await?;
    let policy = s.store.get_policy(&path.ns, &path.app).await?;
    let events = s
        .store
        .list_events(&EventFilter {
            namespace: Some(path.ns.to_string()),
            app: Some(path.app.to_string()),
            kind: Some(autoscale::EVENT_KIND.into()),
            after: None,
            limit: 20,
            visible_namespaces: None,
            newest_first: true,
        })
        .await?;
    let decisions = events
        .items
        .into_iter()
        .filter_map(|e| serde_json::from_value(e.details.get("decision")?.clone()).ok())
        .collect();
    Ok(Json(autoscale::status(
        policy.as_ref().map(|p| &p.policy),
        s.scaling.versions(record.id),
        decisions,
    )))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/traffic", tag = "traffic",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App")),
    responses((status = 200, description = "The traffic policy; ETag is its generation (0 and an empty policy when none is set)", body = TrafficPolicyState), CommonErrors),
    security(("bearer" = [])))]
pub async fn get_traffic(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    let state = match s.store.get_traffic(&path.ns, &path.app).await? {
        Some(state) => state,
        None => {
            let record = s.store.get_app(&path.ns, &path.app).await?;
            TrafficPolicyState {
                policy: TrafficPolicy::default(),
                generation: 0,
                updated_at: record.app.updated_at,
            }
        }
    };
    Ok((etag(state.generation), Json(state)))
}

#[utoipa::path(put, path = "/api/v1/namespaces/{ns}/apps/{app}/traffic", tag = "traffic",
    request_body = TrafficPolicy,
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"),
           ("If-Match" = Option<String>, Header, description = "ETag of the policy (\"0\" when none is set)")),
    responses((status = 200, description = "Stored; live in the gateway within 100 ms", body = TrafficPolicyState), CommonErrors),
    security(("bearer" = [])))]
pub async fn put_traffic(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    IfMatch(expected): IfMatch,
    ApiJson(policy): ApiJson<TrafficPolicy>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Deploy, Some(path.ns.as_str()))?;
    let mut existing = std::collections::BTreeSet::new();
    let mut page = crate::store::PageRequest {
        limit: 500,
        cursor: None,
    };
    loop {
        let versions = s.store.list_versions(&path.ns, &path.app, &page).await?;
        existing.extend(
            versions
                .items
                .iter()
                .filter(|v| v.state != VersionState::BuildFailed)
                .map(|v| v.number),
        );
        match versions.next_cursor {
            Some(c) => page.cursor = Some(c),
            None => break,
        }
    }
    validate_traffic(&policy, &existing)?;
    let event = NewEvent::new("TrafficPolicyUpdated", &p.name, "updated through the API")
        .app(path.ns.as_str(), path.app.as_str())
        .details(json!({"policy": policy}));
    let state = s
        .store
        .put_traffic(&path.ns, &path.app, &policy, expected, event)
        .await?;
    // Versions the policy names must run, and the gateway must see the split.
    s.runtime_wake.notify_one();
    s.routes_wake.notify_one();
    Ok((etag(state.generation), Json(state)))
}

/// `?from=&to=&step=` of the metrics endpoint.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct MetricsParams {
    /// RFC 3339; default 5 minutes before `to`.
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// RFC 3339; default now.
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// Seconds per point: 1 s resolution for the last hour, whole minutes before that.
    pub step: Option<u32>,
}

const MAX_POINTS: i64 = 10_000;

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/apps/{app}/metrics", tag = "metrics",
    params(("ns" = String, Path, description = "Namespace"), ("app" = String, Path, description = "App"), MetricsParams),
    responses((status = 200, description = "Request metrics per version: per second for the last hour, per minute for 14 days", body = AppMetrics), CommonErrors),
    security(("bearer" = [])))]
pub async fn metrics(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    path: AppPath,
    ApiQuery(params): ApiQuery<MetricsParams>,
) -> Result<Json<AppMetrics>, ApiError> {
    use chrono::TimeDelta;
    p.authorize(Action::Read, Some(path.ns.as_str()))?;
    let record = s.store.get_app(&path.ns, &path.app).await?;
    let now = s.clock.now();
    let to = params.to.unwrap_or(now);
    let from = params.from.unwrap_or(to - TimeDelta::minutes(5));
    let span = (to - from).num_seconds();
    if span <= 0 || span > crate::reconcile::metrics::RETENTION.num_seconds() {
        return Err(ApiError::bad_request(
            "invalid_query",
            "from must be before to, at most 14 days apart",
        ));
    }
    let recent = from >= now - TimeDelta::hours(1);
    let default_step = if recent { 1 } else { 60 };
    let step = params
        .step
        .unwrap_or(default_step.max((span / MAX_POINTS + 1) as u32));
    if step == 0 || step > 86_400 || span / i64::from(step) > MAX_POINTS {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("step must be 1–86400 s and give at most {MAX_POINTS} points"),
        ));
    }
    let series = if recent {
        s.gateway_metrics
            .window(path.ns.as_str(), path.app.as_str(), from, to, step)
    } else {
        if step % 60 != 0 {
            return Err(ApiError::bad_request(
                "invalid_query",
                "beyond the last hour, metrics are kept per minute: step must be a multiple of 60",
            ));
        }
        let rows = s.store.metrics_rollups(record.id, from, to).await?;
        let mut by_version: std::collections::BTreeMap<u32, Vec<tideway_api_types::MetricPoint>> =
            Default::default();
        for row in rows {
            by_version.entry(row.version).or_default().push(row.point);
        }
        by_version
            .into_iter()
            .map(|(version, points)| tideway_api_types::MetricSeries {
                version,
                points: crate::reconcile::metrics::merge_minutes(&points, from, step),
            })
            .collect()
    };
    Ok(Json(AppMetrics {
        step_secs: step,
        series,
    }))
}
