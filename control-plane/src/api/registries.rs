//! `/api/v1/namespaces/{ns}/registries...`: the namespace's service registry connections
//! (the built-in one always exists), what each holds, and the sync jobs between them.
//! Credentials are write-only: stored, used by the bridge, never answered.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::json;
use tideway_api_types::{
    RegistryConnection, RegistryConnectionCreate, RegistryEntry, RegistryKind, RegistrySync,
    RegistrySyncCreate,
};

use super::error::ApiError;
use super::extract::{ApiJson, NsPath};
use super::{AppState, CommonErrors};
use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::registry::{validate_connection, validate_sync, BUILTIN};
use crate::domain::token::{Action, Principal};
use crate::domain::Invalid;
use crate::store::{RegistryObject, RegistryObjectKind, StoreError};

fn builtin(ns: &str, s: &AppState) -> RegistryConnection {
    RegistryConnection {
        namespace: ns.to_string(),
        name: BUILTIN.into(),
        kind: RegistryKind::Builtin,
        addresses: s.bridge.builtin_addresses(),
        datacenter: None,
        zone: None,
        has_token: false,
        has_credentials: false,
        created_at: None,
        status: s.bridge.connection_status(ns, BUILTIN),
    }
}

/// The API view of a stored connection: its spec without secrets, with the bridge's status.
fn connection_view(s: &AppState, o: &RegistryObject) -> Result<RegistryConnection, ApiError> {
    let spec: RegistryConnectionCreate = serde_json::from_value(o.spec.clone())
        .map_err(|e| StoreError::Corrupt(format!("registry connection {}: {e}", o.name)))?;
    Ok(RegistryConnection {
        namespace: o.namespace.clone(),
        name: o.name.clone(),
        kind: spec.kind,
        addresses: spec.addresses,
        datacenter: spec.datacenter,
        zone: spec.zone,
        has_token: spec.token.is_some(),
        has_credentials: spec.username.is_some() || spec.password.is_some(),
        created_at: Some(o.created_at),
        status: s.bridge.connection_status(&o.namespace, &o.name),
    })
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/registries", tag = "registries",
    params(("ns" = String, Path, description = "Namespace")),
    responses((status = 200, description = "The built-in registry and the namespace's connections, with the bridge's status", body = Vec<RegistryConnection>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
) -> Result<Json<Vec<RegistryConnection>>, ApiError> {
    p.authorize(Action::Read, Some(ns.as_str()))?;
    s.store.get_namespace(&ns).await?;
    let mut out = vec![builtin(ns.as_str(), &s)];
    for o in s
        .store
        .list_registry_objects(Some(&ns), RegistryObjectKind::Connection)
        .await?
    {
        out.push(connection_view(&s, &o)?);
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/registries", tag = "registries",
    request_body = RegistryConnectionCreate,
    params(("ns" = String, Path, description = "Namespace")),
    responses((status = 201, description = "Created; apps bind to it by name", body = RegistryConnection), CommonErrors),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
    ApiJson(body): ApiJson<RegistryConnectionCreate>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Administer, Some(ns.as_str()))?;
    let name = validate_connection(&body)?;
    let event = NewEvent::new(
        "RegistryConnectionCreated",
        &p.name,
        "created through the API",
    )
    .namespace(ns.as_str())
    .details(json!({"name": body.name, "kind": body.kind, "addresses": body.addresses}));
    let spec = serde_json::to_value(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let o = s
        .store
        .create_registry_object(&ns, RegistryObjectKind::Connection, &name, &spec, event)
        .await?;
    s.bridge.wake();
    Ok((StatusCode::CREATED, Json(connection_view(&s, &o)?)))
}

fn second_segment(segments: &HashMap<String, String>, key: &str) -> Result<Name, ApiError> {
    Ok(Name::parse(
        segments.get(key).map(String::as_str).unwrap_or_default(),
    )?)
}

async fn find(
    s: &AppState,
    ns: &Name,
    kind: RegistryObjectKind,
    name: &str,
) -> Result<RegistryObject, ApiError> {
    s.store
        .list_registry_objects(Some(ns), kind)
        .await?
        .into_iter()
        .find(|o| o.name == name)
        .ok_or_else(|| {
            StoreError::NotFound {
                kind: match kind {
                    RegistryObjectKind::Connection => "registry connection",
                    RegistryObjectKind::Sync => "registry sync job",
                },
                name: format!("{ns}/{name}"),
            }
            .into()
        })
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/registries/{name}", tag = "registries",
    params(("ns" = String, Path, description = "Namespace"), ("name" = String, Path, description = "Connection, or `builtin`")),
    responses((status = 200, description = "The connection (no secrets) and the bridge's status", body = RegistryConnection), CommonErrors),
    security(("bearer" = [])))]
pub async fn get(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
    Path(segments): Path<HashMap<String, String>>,
) -> Result<Json<RegistryConnection>, ApiError> {
    p.authorize(Action::Read, Some(ns.as_str()))?;
    let name = second_segment(&segments, "name")?;
    if name.as_str() == BUILTIN {
        s.store.get_namespace(&ns).await?;
        return Ok(Json(builtin(ns.as_str(), &s)));
    }
    let o = find(&s, &ns, RegistryObjectKind::Connection, name.as_str()).await?;
    Ok(Json(connection_view(&s, &o)?))
}

#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}/registries/{name}", tag = "registries",
    params(("ns" = String, Path, description = "Namespace"), ("name" = String, Path, description = "Connection")),
    responses((status = 204, description = "Deleted; the bridge deregisters what it registered there"), CommonErrors),
    security(("bearer" = [])))]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
    Path(segments): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    p.authorize(Action::Administer, Some(ns.as_str()))?;
    let name = second_segment(&segments, "name")?;
    if name.as_str() == BUILTIN {
        return Err(ApiError::Conflict {
            code: "builtin_registry",
            message: "the built-in registry always exists".into(),
        });
    }
    let event = NewEvent::new(
        "RegistryConnectionDeleted",
        &p.name,
        "deleted through the API",
    )
    .namespace(ns.as_str())
    .details(json!({"name": name.as_str()}));
    s.store
        .delete_registry_object(&ns, RegistryObjectKind::Connection, &name, event)
        .await?;
    s.bridge.wake();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/registries/{name}/instances", tag = "registries",
    params(("ns" = String, Path, description = "Namespace"), ("name" = String, Path, description = "Connection, or `builtin`")),
    responses((status = 200, description = "What the registry holds: for `builtin` every entry; for a connection, what the bridge registered there", body = Vec<RegistryEntry>), CommonErrors),
    security(("bearer" = [])))]
pub async fn instances(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
    Path(segments): Path<HashMap<String, String>>,
) -> Result<Json<Vec<RegistryEntry>>, ApiError> {
    p.authorize(Action::Read, Some(ns.as_str()))?;
    let name = second_segment(&segments, "name")?;
    if name.as_str() != BUILTIN {
        find(&s, &ns, RegistryObjectKind::Connection, name.as_str()).await?;
    }
    Ok(Json(s.bridge.entries(ns.as_str(), name.as_str())))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}/registries/sync", tag = "registries",
    params(("ns" = String, Path, description = "Namespace")),
    responses((status = 200, description = "Sync jobs with their state, lag and last error", body = Vec<RegistrySync>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list_sync(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
) -> Result<Json<Vec<RegistrySync>>, ApiError> {
    p.authorize(Action::Read, Some(ns.as_str()))?;
    let mut out = Vec::new();
    for o in s
        .store
        .list_registry_objects(Some(&ns), RegistryObjectKind::Sync)
        .await?
    {
        let spec: RegistrySyncCreate = serde_json::from_value(o.spec.clone())
            .map_err(|e| StoreError::Corrupt(format!("registry sync {}: {e}", o.name)))?;
        out.push(RegistrySync {
            namespace: o.namespace.clone(),
            name: o.name.clone(),
            from: spec.from,
            to: spec.to,
            services: spec.services,
            status: s.bridge.sync_status(&o.namespace, &o.name),
        });
    }
    Ok(Json(out))
}

#[utoipa::path(post, path = "/api/v1/namespaces/{ns}/registries/sync", tag = "registries",
    request_body = RegistrySyncCreate,
    params(("ns" = String, Path, description = "Namespace")),
    responses((status = 201, description = "Created; it runs every second", body = RegistrySync), CommonErrors),
    security(("bearer" = [])))]
pub async fn create_sync(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
    ApiJson(body): ApiJson<RegistrySyncCreate>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Administer, Some(ns.as_str()))?;
    let name = validate_sync(&body)?;
    for end in [&body.from, &body.to] {
        if end != BUILTIN {
            find(&s, &ns, RegistryObjectKind::Connection, end)
                .await
                .map_err(|_| {
                    ApiError::Validation(Invalid::new(
                        if *end == body.from { "from" } else { "to" },
                        format!("the namespace has no registry connection '{end}'"),
                    ))
                })?;
        }
    }
    let event = NewEvent::new("RegistrySyncCreated", &p.name, "created through the API")
        .namespace(ns.as_str())
        .details(
            json!({"name": body.name, "from": body.from, "to": body.to, "services": body.services}),
        );
    let spec = serde_json::to_value(&body).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let o = s
        .store
        .create_registry_object(&ns, RegistryObjectKind::Sync, &name, &spec, event)
        .await?;
    s.bridge.wake();
    Ok((
        StatusCode::CREATED,
        Json(RegistrySync {
            namespace: o.namespace,
            name: o.name,
            from: body.from,
            to: body.to,
            services: body.services,
            status: None,
        }),
    ))
}

#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}/registries/sync/{name}", tag = "registries",
    params(("ns" = String, Path, description = "Namespace"), ("name" = String, Path, description = "Sync job")),
    responses((status = 204, description = "Deleted; its copies are removed"), CommonErrors),
    security(("bearer" = [])))]
pub async fn delete_sync(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
    Path(segments): Path<HashMap<String, String>>,
) -> Result<StatusCode, ApiError> {
    p.authorize(Action::Administer, Some(ns.as_str()))?;
    let name = second_segment(&segments, "name")?;
    let event = NewEvent::new("RegistrySyncDeleted", &p.name, "deleted through the API")
        .namespace(ns.as_str())
        .details(json!({"name": name.as_str()}));
    s.store
        .delete_registry_object(&ns, RegistryObjectKind::Sync, &name, event)
        .await?;
    s.bridge.wake();
    Ok(StatusCode::NO_CONTENT)
}
