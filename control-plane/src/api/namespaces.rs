//! `/api/v1/namespaces`: environments that group apps.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde_json::json;
use tideway_api_types::{Namespace, NamespaceCreate, NamespacePatch, Page};

use super::error::ApiError;
use super::extract::{etag, ApiJson, ApiQuery, IfMatch, NsPath};
use super::params::ListParams;
use super::{AppState, CommonErrors};
use crate::domain::event::NewEvent;
use crate::domain::name::Name;
use crate::domain::spec::validate_labels;
use crate::domain::token::{Action, Principal};

#[utoipa::path(get, path = "/api/v1/namespaces", tag = "namespaces", params(ListParams),
    responses((status = 200, description = "Namespaces this token can see", body = Page<Namespace>), CommonErrors),
    security(("bearer" = [])))]
pub async fn list(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<Page<Namespace>>, ApiError> {
    p.authorize(Action::Read, None)?;
    let page = s
        .store
        .list_namespaces(&params.page()?, p.namespaces.as_deref())
        .await?;
    Ok(Json(Page {
        items: page.items,
        next_cursor: page.next_cursor,
    }))
}

#[utoipa::path(post, path = "/api/v1/namespaces", tag = "namespaces", request_body = NamespaceCreate,
    responses((status = 201, description = "Created", body = Namespace), CommonErrors),
    security(("bearer" = [])))]
pub async fn create(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    ApiJson(body): ApiJson<NamespaceCreate>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Administer, None)?;
    let name = Name::parse(&body.name)?;
    validate_labels(&body.labels)?;
    let event = NewEvent::new("NamespaceCreated", &p.name, "created through the API")
        .namespace(name.as_str())
        .details(json!({"labels": body.labels}));
    let ns = s.store.create_namespace(&name, &body.labels, event).await?;
    Ok((StatusCode::CREATED, etag(ns.generation), Json(ns)))
}

#[utoipa::path(get, path = "/api/v1/namespaces/{ns}", tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace name")),
    responses((status = 200, description = "The namespace", body = Namespace), CommonErrors),
    security(("bearer" = [])))]
pub async fn get(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Read, Some(ns.as_str()))?;
    let ns = s.store.get_namespace(&ns).await?;
    Ok((etag(ns.generation), Json(ns)))
}

#[utoipa::path(patch, path = "/api/v1/namespaces/{ns}", tag = "namespaces", request_body = NamespacePatch,
    params(("ns" = String, Path, description = "Namespace name"),
           ("If-Match" = Option<String>, Header, description = "ETag from a previous GET")),
    responses((status = 200, description = "Updated", body = Namespace), CommonErrors),
    security(("bearer" = [])))]
pub async fn patch(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
    IfMatch(expected): IfMatch,
    ApiJson(body): ApiJson<NamespacePatch>,
) -> Result<impl IntoResponse, ApiError> {
    p.authorize(Action::Administer, Some(ns.as_str()))?;
    let current = s.store.get_namespace(&ns).await?;
    let labels = body.labels.unwrap_or(current.labels);
    validate_labels(&labels)?;
    let event = NewEvent::new("NamespaceUpdated", &p.name, "updated through the API")
        .namespace(ns.as_str())
        .details(json!({"labels": labels}));
    let updated = s
        .store
        .update_namespace(&ns, expected, &labels, event)
        .await?;
    Ok((etag(updated.generation), Json(updated)))
}

#[utoipa::path(delete, path = "/api/v1/namespaces/{ns}", tag = "namespaces",
    params(("ns" = String, Path, description = "Namespace name"),
           ("If-Match" = Option<String>, Header, description = "ETag from a previous GET")),
    responses((status = 204, description = "Deleted"), CommonErrors),
    security(("bearer" = [])))]
pub async fn delete(
    State(s): State<Arc<AppState>>,
    Extension(p): Extension<Principal>,
    NsPath(ns): NsPath,
    IfMatch(expected): IfMatch,
) -> Result<StatusCode, ApiError> {
    p.authorize(Action::Administer, Some(ns.as_str()))?;
    if ns == Name::default_namespace() {
        return Err(ApiError::Conflict {
            code: "namespace_protected",
            message: "the default namespace cannot be deleted".into(),
        });
    }
    let event = NewEvent::new("NamespaceDeleted", &p.name, "deleted through the API")
        .namespace(ns.as_str());
    s.store.delete_namespace(&ns, expected, event).await?;
    Ok(StatusCode::NO_CONTENT)
}
